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
                "{}: int8 trunks (make model QUANT=int8) run on VNNI dot products",
                found.join(", ")
            )
        } else {
            "no VNNI (avx512_vnni / avx_vnni not detected): an int8 trunk runs without 8-bit dot \
             products and may be no faster than fp32; keep the fp32 trunk or measure first"
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CpuFeatures;

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
