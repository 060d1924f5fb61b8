//! What this CPU offers the int8 and bf16 kernels of ONNX Runtime (detected at run time, not assumed).

/// Instruction-set extensions that decide whether a quantized trunk pays off on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// AVX-512 VNNI: 8-bit dot products, what makes ONNX Runtime's U8S8 int8 convs fast.
    pub avx512_vnni: bool,
    /// AVX-VNNI (the VEX-encoded 256-bit form, e.g. on cores without AVX-512).
    pub avx_vnni: bool,
    /// AVX-512 BF16.
    pub avx512_bf16: bool,
}

impl CpuFeatures {
    /// The features of the CPU this process runs on; all false off x86-64.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx512_vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
                avx_vnni: std::arch::is_x86_feature_detected!("avxvnni"),
                avx512_bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::default()
        }
    }

    /// Either form of VNNI.
    pub fn has_vnni(&self) -> bool {
        self.avx512_vnni || self.avx_vnni
    }

    /// One line for `doctor`: what was found and what it means for an int8 trunk.
    pub fn int8_summary(&self) -> String {
        let mut found = Vec::new();
        for (on, name) in [
            (self.avx512_vnni, "avx512_vnni"),
            (self.avx_vnni, "avx_vnni"),
            (self.avx512_bf16, "avx512_bf16"),
        ] {
            if on {
                found.push(name);
            }
        }
        if self.has_vnni() {
            format!(
                "{}: int8 trunks (vggcache models install vgg16-int8) run on VNNI dot products",
                found.join(", ")
            )
        } else {
            "no VNNI (avx512_vnni / avx_vnni not detected): an int8 trunk needs 7-bit weights here \
             (`vggcache models install vgg16-int8 --calib DIR` builds them on such a CPU; 8-bit ones \
             are refused) and gains \
             less than with VNNI"
                .to_string()
        }
    }
}

/// Why an int8 trunk must not run on this CPU, or `None` when it may.
///
/// `quantization` is the model's `vggcache.quantization` metadata (JSON, written by
/// `models/quantize_trunk.py`). Without VNNI, ONNX Runtime's U8S8 conv kernels add pairs of
/// uint8 x int8 products in 16 bits, which saturates with 8-bit weights and gives wrong features
/// (docs/BENCHMARKS.md section 10); 7-bit weights (`"reduce_range": true`) cannot saturate. A model
/// without the key (built before it existed) has 8-bit weights. Not int8, or not parseable: `None`.
pub fn int8_refusal(cpu: CpuFeatures, quantization: &str) -> Option<String> {
    let q: serde_json::Value = serde_json::from_str(quantization).ok()?;
    let eight_bit = q["format"] == "int8" && q["reduce_range"] != true;
    (eight_bit && !cpu.has_vnni()).then(|| {
        "it is an int8 trunk with 8-bit weights and this CPU has no VNNI (avx512_vnni / avx_vnni): \
         ONNX Runtime's int8 convs saturate here and the features come out wrong. Rebuild it on this \
         machine with 7-bit weights (`vggcache models install vgg16-int8 --calib FOLDER --force` picks \
         them on a CPU without VNNI; in a checkout, `make model QUANT=int8 CALIB=FOLDER \
         REDUCE_RANGE=on`), run it on a CPU with VNNI, or use the fp32 trunk"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::{int8_refusal, CpuFeatures};

    #[test]
    fn eight_bit_int8_is_refused_only_without_vnni() {
        let none = CpuFeatures::default();
        let vnni = CpuFeatures {
            avx512_vnni: true,
            ..Default::default()
        };
        let old = r#"{"format": "int8", "calibration": {}}"#;
        let eight = r#"{"format": "int8", "reduce_range": false}"#;
        let seven = r#"{"format": "int8", "reduce_range": true}"#;
        let fp16 = r#"{"format": "fp16"}"#;
        assert!(int8_refusal(none, old).is_some_and(|w| w.contains("REDUCE_RANGE=on")));
        assert!(int8_refusal(none, eight).is_some());
        assert_eq!(int8_refusal(none, seven), None);
        assert_eq!(int8_refusal(none, fp16), None);
        assert_eq!(int8_refusal(none, "not json"), None);
        for q in [old, eight, seven, fp16] {
            assert_eq!(int8_refusal(vnni, q), None, "{q}");
        }
    }

    #[test]
    fn summary_names_what_was_found_and_warns_without_vnni() {
        let none = CpuFeatures::default();
        assert!(!none.has_vnni());
        assert!(none.int8_summary().starts_with("no VNNI"));
        let avx = CpuFeatures {
            avx_vnni: true,
            ..Default::default()
        };
        assert!(avx.has_vnni());
        assert!(avx.int8_summary().starts_with("avx_vnni:"));
        let all = CpuFeatures {
            avx512_vnni: true,
            avx_vnni: true,
            avx512_bf16: true,
        };
        assert!(all
            .int8_summary()
            .starts_with("avx512_vnni, avx_vnni, avx512_bf16:"));
    }

    #[test]
    fn detection_agrees_with_proc_cpuinfo() {
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return; // not Linux: nothing independent to compare with
        };
        let flags: Vec<&str> = info
            .lines()
            .find(|l| l.starts_with("flags"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        let f = CpuFeatures::detect();
        assert_eq!(f.avx512_vnni, flags.contains(&"avx512_vnni"), "{flags:?}");
        assert_eq!(f.avx_vnni, flags.contains(&"avx_vnni"), "{flags:?}");
    }
}
