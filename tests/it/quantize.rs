//! Quantized trunks (`models/quantize_trunk.py`, `make model QUANT=int8`) on the tiny fixture: the int8
//! copy is made here with the project's python, runs through vggcache's Trunk with features close to
//! fp32's, says what it is in its metadata, and has its own fingerprint (an fp32 cache refuses it).

use std::path::{Path, PathBuf};
use std::process::Command;

use vggcache::trunk::{CpuFeatures, Device, Trunk, TrunkError, TrunkOptions};

use crate::common;

use common::{root, text, tiny_trunk as tiny};

fn cpu() -> TrunkOptions {
    TrunkOptions {
        device: Device::Cpu,
        threads: 1,
        ..Default::default()
    }
}

/// Python modules the script needs (all from `make setup`: requirements/runtime.txt + onnxruntime).
const MODULES: &[&str] = &["onnx", "numpy", "PIL", "onnxruntime.quantization"];

/// Runs `models/quantize_trunk.py` on the tiny trunk into `dir`; `None` (a skip) without the tooling.
fn quantized(test: &str, dir: &Path, args: &[&str]) -> Option<PathBuf> {
    common::ort(test)?;
    let py = common::python_with(test, MODULES)?;
    let out = dir.join("tiny_q.onnx");
    let o = Command::new(py)
        .arg(root().join("models/quantize_trunk.py"))
        .arg(tiny())
        .arg(&out)
        .args(args)
        .output()
        .expect("run models/quantize_trunk.py");
    assert!(o.status.success(), "quantize_trunk.py failed: {}", text(&o));
    Some(out)
}

/// The int8 calibration arguments: the committed real images of tests/fixtures/dataset.
fn calib() -> Vec<String> {
    let dir = common::fixture("dataset");
    vec![
        "--calib".into(),
        dir.display().to_string(),
        "--count".into(),
        "6".into(),
    ]
}

/// [`quantized`] as int8 calibrated by [`calib`], with `extra` arguments after those.
fn quantized_int8(test: &str, dir: &Path, extra: &[&str]) -> Option<PathBuf> {
    let mut args = calib();
    args.extend(extra.iter().map(|s| s.to_string()));
    quantized(
        test,
        dir,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// Per-row cosine similarity of two `(n, d)` feature matrices.
fn cosines(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> Vec<f64> {
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let n = |v: &ndarray::ArrayView1<f32>| {
                v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt()
            };
            dot / (n(&x) * n(&y))
        })
        .collect()
}

/// fp32 and quantized features of the fixture images (decoded and preprocessed by vggcache).
fn features_of(q: &Path) -> (ndarray::Array2<f32>, ndarray::Array2<f32>) {
    let mut f = Trunk::load(&tiny(), &cpu()).unwrap();
    let mut t = Trunk::load(q, &cpu()).unwrap();
    assert_eq!(
        t.info().preprocess,
        f.info().preprocess,
        "same preprocessing"
    );
    assert_eq!((t.info().input_hw, t.info().dim), ((16, 16), 128));
    let files: Vec<PathBuf> = common::first_images(&common::fixture("dataset"), 8)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("_pil"))
        .collect();
    let x = common::preprocessed_batch(&files, &f.info().preprocess);
    let n = files.len();
    (f.run(&x, n).unwrap(), t.run(&x, n).unwrap())
}

#[test]
fn int8_tiny_trunk_runs_close_to_fp32_and_says_what_it_is() {
    let test = "int8_tiny_trunk_runs_close_to_fp32_and_says_what_it_is";
    let d = tempfile::tempdir().unwrap();
    let Some(q) = quantized_int8(test, d.path(), &[]) else {
        return;
    };
    let bytes = std::fs::read(&q).unwrap();
    assert!(
        bytes.windows(16).any(|w| w == b"DequantizeLinear"),
        "a QDQ graph (DequantizeLinear nodes)"
    );
    let (fp32, int8) = features_of(&q);
    let cos = cosines(&fp32, &int8);
    assert!(
        cos.iter().all(|c| *c > 0.98),
        "int8 vs fp32 cosines {cos:?}"
    );
    assert!(fp32 != int8, "int8 features are not bit-equal to fp32 ones");

    let t = Trunk::load(&q, &cpu()).unwrap();
    let i = t.info();
    let fp32_fp = vggcache::trunk::fingerprint_file(&tiny()).unwrap();
    assert_ne!(
        i.fingerprint, fp32_fp,
        "the int8 trunk has its own fingerprint"
    );
    let meta: serde_json::Value = serde_json::from_str(
        i.metadata
            .get("vggcache.quantization")
            .expect("quantization key"),
    )
    .unwrap();
    assert_eq!(meta["format"], "int8");
    assert_eq!(
        format!("sha256:{}", meta["from_sha256"].as_str().unwrap()),
        fp32_fp,
        "names the fp32 model it came from"
    );
    assert_eq!(meta["calibration"]["count"], 6);
    assert_eq!(meta["calibration"]["method"], "minmax");
    assert_eq!(
        meta["reduce_range"],
        !CpuFeatures::detect().has_vnni(),
        "auto: 7-bit weights exactly when this CPU has no VNNI"
    );
    assert!(i.provenance.starts_with("int8") && i.provenance.contains("make_tiny_trunk.py"));
    assert_eq!(i.source, "tests", "the fp32 model's keys are kept");
}

/// 8-bit int8 weights saturate ONNX Runtime's U8S8 convs on a CPU without VNNI: such a trunk is
/// refused there (with the fix in the message) and runs where VNNI is; 7-bit weights run everywhere.
#[test]
fn eight_bit_int8_is_refused_without_vnni_and_seven_bit_runs() {
    let test = "eight_bit_int8_is_refused_without_vnni_and_seven_bit_runs";
    let vnni = CpuFeatures::detect().has_vnni();
    for (range, seven_bit) in [("off", false), ("on", true)] {
        let d = tempfile::tempdir().unwrap();
        let Some(q) = quantized_int8(test, d.path(), &["--reduce-range", range]) else {
            return;
        };
        match Trunk::load(&q, &cpu()) {
            Err(TrunkError::Int8WithoutVnni { cause, .. }) => {
                assert!(
                    !vnni && !seven_bit,
                    "refused with VNNI or 7-bit weights: {cause}"
                );
                assert!(cause.contains("REDUCE_RANGE=on"), "says the fix: {cause}");
            }
            Err(e) => panic!("--reduce-range {range}: {e}"),
            Ok(t) => {
                assert!(vnni || seven_bit, "8-bit int8 ran on a CPU without VNNI");
                let meta: serde_json::Value =
                    serde_json::from_str(&t.info().metadata["vggcache.quantization"]).unwrap();
                assert_eq!(meta["reduce_range"], seven_bit);
                let (fp32, int8) = features_of(&q);
                let cos = cosines(&fp32, &int8);
                assert!(
                    cos.iter().all(|c| *c > 0.98),
                    "--reduce-range {range}: {cos:?}"
                );
            }
        }
    }
}

#[test]
fn calibration_methods_and_fp32_convs_give_working_trunks() {
    let test = "calibration_methods_and_fp32_convs_give_working_trunks";
    for extra in [
        &["--method", "entropy"][..],
        &["--method", "percentile"][..],
        &["--keep-fp32", "first,last"][..],
    ] {
        let d = tempfile::tempdir().unwrap();
        let Some(q) = quantized_int8(test, d.path(), extra) else {
            return;
        };
        let (fp32, int8) = features_of(&q);
        let cos = cosines(&fp32, &int8);
        assert!(cos.iter().all(|c| *c > 0.95), "{extra:?}: cosines {cos:?}");
        if extra[0] == "--keep-fp32" {
            // Both of the tiny trunk's convs kept: nothing left to quantize but the model still loads.
            assert!(
                cos.iter().all(|c| *c > 0.9999),
                "{extra:?}: cosines {cos:?}"
            );
        }
    }
}

#[test]
fn fp16_tiny_trunk_matches_fp32() {
    let test = "fp16_tiny_trunk_matches_fp32";
    let d = tempfile::tempdir().unwrap();
    let Some(q) = quantized(test, d.path(), &["--format", "fp16"]) else {
        return;
    };
    let (fp32, fp16) = features_of(&q);
    let cos = cosines(&fp32, &fp16);
    assert!(
        cos.iter().all(|c| *c > 0.9999),
        "fp16 vs fp32 cosines {cos:?}"
    );
}

#[test]
fn int8_trunk_is_refused_by_an_fp32_cache() {
    let test = "int8_trunk_is_refused_by_an_fp32_cache";
    let d = tempfile::tempdir().unwrap();
    let Some(q) = quantized_int8(test, d.path(), &[]) else {
        return;
    };
    // A class-folder layout of the fixture images (extract wants split/class folders or class folders).
    let imgs = d.path().join("imgs");
    for (i, f) in common::first_images(&common::fixture("dataset"), 6)
        .iter()
        .enumerate()
    {
        let class = if i % 2 == 0 { "a" } else { "b" };
        std::fs::create_dir_all(imgs.join(class)).unwrap();
        std::fs::copy(f, imgs.join(class).join(f.file_name().unwrap())).unwrap();
    }
    let cache = d.path().join("cache");
    let o = common::extract(&tiny(), &imgs, &cache, &[]);
    assert!(o.status.success(), "fp32 extract: {}", text(&o));
    let o = common::extract(&q, &imgs, &cache, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "int8 into the fp32 cache: {}",
        text(&o)
    );
    assert!(text(&o).to_lowercase().contains("force"), "{}", text(&o));
    let o = common::extract(&q, &imgs, &d.path().join("cache-int8"), &[]);
    assert!(o.status.success(), "int8 extract: {}", text(&o));
    let fingerprint = |c: &Path| {
        vggcache::cache::FeatureCache::open(c)
            .unwrap()
            .manifest()
            .identity()
            .model
            .fingerprint
    };
    assert_ne!(
        fingerprint(&cache),
        fingerprint(&d.path().join("cache-int8"))
    );
    assert_eq!(
        fingerprint(&d.path().join("cache-int8")),
        vggcache::trunk::fingerprint_file(&q).unwrap()
    );
}

#[test]
fn doctor_says_what_the_cpu_offers_and_what_the_trunk_is() {
    let test = "doctor_says_what_the_cpu_offers_and_what_the_trunk_is";
    let d = tempfile::tempdir().unwrap();
    let Some(q) = quantized_int8(test, d.path(), &[]) else {
        return;
    };
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["doctor", "--model"])
        .arg(&q)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    let cpu = vggcache::trunk::CpuFeatures::detect();
    let line = out
        .lines()
        .find(|l| l.starts_with("CPU int8 / bf16:"))
        .unwrap_or_else(|| panic!("no CPU line in {out}"));
    assert_eq!(line.contains("no VNNI"), !cpu.has_vnni(), "{line}");
    assert!(
        out.contains("quantization:") && out.contains("\"format\": \"int8\""),
        "{out}"
    );
}
