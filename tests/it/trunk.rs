//! Trunk tests on the real ONNX Runtime: tiny fixture vs numpy, metadata, errors, and the full VGG16
//! trunk on real images vs onnxruntime-python.

use std::path::Path;
use std::process::Command;

use vggcache::spec::ChannelOrder;
use vggcache::trunk::{Device, Provider, Trunk, TrunkError, TrunkOptions};

use crate::common;

use common::{root, tiny_trunk as tiny};

fn cpu() -> TrunkOptions {
    TrunkOptions {
        device: Device::Cpu,
        threads: 2,
        ..Default::default()
    }
}

/// The fixture's input and expected output, computed by scripts/fixtures/make_tiny_trunk.py with numpy loops.
fn tiny_io() -> (Vec<f32>, Vec<usize>, Vec<f32>) {
    let raw = std::fs::read_to_string(root().join("tests/fixtures/tiny_trunk_io.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let floats = |k: &str| -> Vec<f32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let oshape = v["output_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize);
    (floats("input"), oshape.collect(), floats("output"))
}

#[test]
fn tiny_trunk_matches_numpy_reference() {
    if common::ort("tiny_trunk_matches_numpy_reference").is_none() {
        return;
    }
    let mut t = Trunk::load(&tiny(), &cpu()).unwrap();
    assert_eq!(t.provider(), Provider::Cpu);
    let (x, oshape, expected) = tiny_io();
    let y = t.run(&x, oshape[0]).unwrap();
    assert_eq!(y.dim(), (oshape[0], oshape[1]));
    for (a, b) in y.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{a} vs {b}");
    }
    // Batch of one gives the same first row (dynamic batch axis).
    let y1 = t.run(&x[..3 * 16 * 16], 1).unwrap();
    assert_eq!(y1.row(0), y.row(0));
}

#[test]
fn metadata_round_trip() {
    if common::ort("metadata_round_trip").is_none() {
        return;
    }
    let t = Trunk::load(&tiny(), &cpu()).unwrap();
    let i = t.info();
    assert_eq!(
        (i.input_name.as_str(), i.output_name.as_str()),
        ("input", "features")
    );
    assert_eq!((i.input_hw, i.dim), ((16, 16), 128));
    assert_eq!(i.preprocess.channel_order, ChannelOrder::Rgb);
    assert_eq!(i.preprocess.mean, [0.5, 0.5, 0.5]);
    assert_eq!(i.preprocess.std, [0.25, 0.25, 0.25]);
    assert!((i.preprocess.scale - 1.0 / 255.0).abs() < 1e-9);
    assert_eq!(i.source, "tests");
    assert!(i.provenance.contains("make_tiny_trunk.py"));
    assert!(i.fingerprint.starts_with("sha256:") && i.fingerprint.len() == 7 + 64);
    assert_eq!(
        i.fingerprint,
        vggcache::trunk::fingerprint_file(&tiny()).unwrap()
    );
}

#[test]
fn wrong_batch_length_is_an_error_naming_the_model() {
    if common::ort("wrong_batch_length_is_an_error_naming_the_model").is_none() {
        return;
    }
    let mut t = Trunk::load(&tiny(), &cpu()).unwrap();
    let e = t.run(&[0.0; 10], 1).unwrap_err();
    assert!(
        matches!(
            e,
            TrunkError::BatchShape {
                expected: 768,
                got: 10,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("tiny_trunk.onnx"));
}

#[test]
fn missing_and_corrupt_models_are_clear_errors() {
    if common::ort("missing_and_corrupt_models_are_clear_errors").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    let e = Trunk::load(&missing, &cpu()).err().unwrap();
    assert!(
        matches!(e, TrunkError::ModelMissing { .. })
            && e.to_string().contains("vggcache models install vgg16"),
        "{e}"
    );
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a protobuf model").unwrap();
    let e = Trunk::load(&corrupt, &cpu()).err().unwrap();
    assert!(
        matches!(e, TrunkError::ModelLoad { .. }) && e.to_string().contains("corrupt.onnx"),
        "{e}"
    );
}

#[test]
fn model_without_vggcache_metadata_is_refused() {
    // Strip metadata_props by rebuilding the fixture with the project's python.
    let test = "model_without_vggcache_metadata_is_refused";
    let Some(py) = common::python_with(test, &["onnx"]) else {
        return;
    };
    if common::ort(test).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bare.onnx");
    let code = format!(
        "import onnx; m=onnx.load({:?}); del m.metadata_props[:]; onnx.save(m, {:?})",
        tiny().display().to_string(),
        out.display().to_string()
    );
    assert!(Command::new(py)
        .args(["-c", &code])
        .status()
        .unwrap()
        .success());
    let e = Trunk::load(&out, &cpu()).err().unwrap();
    assert!(matches!(e, TrunkError::Metadata { .. }), "{e}");
    assert!(e.to_string().contains("vggcache.preprocess"));
}

#[test]
fn cuda_request_without_cuda_is_an_error_not_a_silent_cpu_run() {
    if common::ort("cuda_request_without_cuda_is_an_error_not_a_silent_cpu_run").is_none() {
        return;
    }
    let opts = TrunkOptions {
        device: Device::Cuda,
        ..cpu()
    };
    match Trunk::load(&tiny(), &opts) {
        Err(e) => assert!(matches!(e, TrunkError::CudaUnavailable(_)), "{e}"),
        // Only on a machine with a working CUDA provider.
        Ok(t) => assert_eq!(t.provider(), Provider::Cuda),
    }
}

/// A few real images as a caffe-BGR `(n,3,224,224)` tensor (plain `image` resize: the point here is
/// the runner vs onnxruntime-python on identical input, not preprocessing fidelity).
fn real_batch(dir: &Path, n: usize) -> Vec<f32> {
    let files = common::first_images(dir, n);
    let mean = [104.00699f32, 116.66877, 122.67892];
    let mut out = Vec::with_capacity(n * 3 * 224 * 224);
    for f in &files {
        let img = image::open(f).unwrap().to_rgb8();
        let img = image::imageops::resize(&img, 224, 224, image::imageops::FilterType::Triangle);
        for (c, src) in [2usize, 1, 0].into_iter().enumerate() {
            out.extend(img.pixels().map(|p| p[src] as f32 - mean[c]));
        }
    }
    out
}

#[test]
fn vgg16_trunk_on_real_images_matches_onnxruntime_python() {
    let test = "vgg16_trunk_on_real_images_matches_onnxruntime_python";
    let Some(data) = common::test_data(test, "catsdogs/val/cat") else {
        return;
    };
    let Some(model) = common::default_model(test, "vgg16") else {
        return;
    };
    let Some(py) = common::python_with(test, &["onnxruntime", "numpy"]) else {
        return;
    };
    if common::ort(test).is_none() {
        return;
    }
    let n = 3;
    let x = real_batch(&data, n);
    let mut t = Trunk::load(&model, &cpu()).unwrap();
    assert_eq!(t.info().dim, 25088);
    let y = t.run(&x, n).unwrap();
    let r = common::reference_features(&py, "ort_reference.py", &[model.as_os_str()], &x, n);
    common::assert_features_close(y.as_slice().unwrap(), &r, 1e-4);
}

/// Each shipped VGG16 conversion against a numpy forward pass on its *source* weights
/// (`scripts/reference/numpy_vgg16.py`: no ONNX, no ONNX Runtime; the hed kernels used in their HWIO layout,
/// so the converter's transpose is checked, not shared). Two real images each, through the model's own
/// preprocessing. Measured max |diff| ~3e-7 of the largest feature (float32 vs float64 sums);
/// bound 1e-5 of it.
#[test]
fn shipped_vgg16_trunks_match_a_numpy_forward_on_their_source_weights() {
    let test = "shipped_vgg16_trunks_match_a_numpy_forward_on_their_source_weights";
    let Some(data) = common::test_data(test, "catsdogs/val/cat") else {
        return;
    };
    let Some(py) = common::python_with(test, &["numpy", "onnx", "h5py"]) else {
        return;
    };
    if common::ort(test).is_none() {
        return;
    }
    let files = common::first_images(&data, 2);
    for (source, file) in [("wheel", "vgg16"), ("hed", "vgg16-hed")] {
        let Some(model) = common::default_model(test, file) else {
            return;
        };
        let mut t = Trunk::load(&model, &cpu()).unwrap();
        let x = common::preprocessed_batch(&files, &t.info().preprocess);
        let y = t.run(&x, files.len()).unwrap();
        let r =
            common::reference_features(&py, "numpy_vgg16.py", &[source.as_ref()], &x, files.len());
        eprintln!("{file} vs numpy on {source}'s weights:");
        common::assert_features_close(y.as_slice().unwrap(), &r, 1e-5);
    }
}
