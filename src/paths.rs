//! Finds the project-local install (ONNX Runtime library, default model) whatever the current directory.
//!
//! The project root is the first ancestor of the running executable that holds `Cargo.toml` and
//! `models/` (a `target/{debug,release}/vggcache` binary finds its checkout), else the checkout this
//! binary was compiled from.

use std::path::{Path, PathBuf};

/// The project root, if one can be found (see the module doc).
pub fn project_root() -> Option<PathBuf> {
    let is_root = |p: &Path| p.join("Cargo.toml").is_file() && p.join("models").is_dir();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(found) = exe.ancestors().skip(1).find(|p| is_root(p)) {
            return Some(found.to_path_buf());
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    is_root(built).then(|| built.to_path_buf())
}

/// The project-local Python environment made by `make setup`.
pub fn venv_dir() -> Option<PathBuf> {
    project_root()
        .map(|r| r.join(".venv"))
        .filter(|p| p.is_dir())
}

/// `site-packages` folders of the project venv (one per Python version found).
pub fn site_packages() -> Vec<PathBuf> {
    let Some(venv) = venv_dir() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// The default trunk model: `models/vgg16_trunk.onnx` under the project root.
pub fn default_model() -> Option<PathBuf> {
    project_root().map(|r| r.join("models").join("vgg16_trunk.onnx"))
}

/// The model file of trunk `name` under `root`: `models/NAME.onnx`, or, when that file does not
/// exist, the same name with `-` read as `_` (`efficientnet-lite0` → `models/efficientnet_lite0.onnx`,
/// `vgg16-hed` → `models/vgg16_hed.onnx`, as `make model TRUNK=…` writes them). `vgg16`, the name
/// `make model` gives the default trunk, is `models/vgg16_trunk.onnx`.
pub fn trunk_model(root: &Path, name: &str) -> PathBuf {
    let models = root.join("models");
    if name == "vgg16" {
        return models.join("vgg16_trunk.onnx");
    }
    let exact = models.join(format!("{name}.onnx"));
    if exact.is_file() || !name.contains('-') {
        return exact;
    }
    models.join(format!("{}.onnx", name.replace('-', "_")))
}
