//! Where vggcache finds ONNX Runtime and its trunk models: one lookup order, never the source tree.
//!
//! Nothing is found relative to the source tree or the running executable; a binary copied anywhere
//! finds the same files.
//!
//! **ONNX Runtime library** ([`ort_library`]), first match wins:
//! 1. `--ort-lib PATH` (the `explicit` argument);
//! 2. `ORT_DYLIB_PATH`;
//! 3. the `onnxruntime` package of the Python environment the command runs in: the active virtual
//!    environment (`VIRTUAL_ENV/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`),
//!    then the `python3` on `PATH` (asked where `onnxruntime` lives, bounded to
//!    [`PYTHON_PROBE_TIMEOUT`]).
//!
//! A file named by step 1 or 2 that does not exist is an error, not a reason to look further.
//! A miss lists every place tried and the fix: `pip install onnxruntime==1.31.1`.
//!
//! **Trunk model** ([`model`]), first match wins:
//! 1. `--model PATH` (the `explicit` argument);
//! 2. `--trunk NAME` (default `vgg16`) in the model store: `STORE/models/NAME.onnx`, where the store
//!    ([`home`]) is `VGGCACHE_HOME`, else `$XDG_CACHE_HOME/vggcache`, else `~/.cache/vggcache`.
//!
//! A miss names the file looked for and the command that installs it (`vggcache models install
//! NAME`, see [`install()`]).

pub mod install;

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use install::{
    install, installed, InstallOptions, Installed, Provenance, Recipe, RECIPES, TOOLS_DIR,
};

/// The trunk `--trunk` means when neither `--model` nor `--trunk` is given.
pub const DEFAULT_TRUNK: &str = "vgg16";

/// The ONNX Runtime version `models install` and the fix of a runtime miss name.
pub const ORT_VERSION: &str = "1.31.1";

/// How long the `python3` on `PATH` may take to say where its `onnxruntime` package is.
pub const PYTHON_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the lookup and of the model store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No ONNX Runtime library in any place of the lookup order.
    #[error(
        "ONNX Runtime library not found; tried, in order: {}. Fix: `pip install \
         onnxruntime=={ORT_VERSION}` in the Python environment you run vggcache from (or pass \
         --ort-lib PATH / set ORT_DYLIB_PATH to a libonnxruntime.so)",
        tried.join("; ")
    )]
    RuntimeNotFound {
        /// Each place looked in, with what was found there.
        tried: Vec<String>,
    },
    /// `--ort-lib` or `ORT_DYLIB_PATH` names a file that does not exist.
    #[error(
        "cannot load ONNX Runtime: {from} names {path}, which does not exist; point it at a \
         libonnxruntime.so file (`pip install onnxruntime=={ORT_VERSION}` installs one), or, for \
         ORT_DYLIB_PATH, unset it to use the onnxruntime package of your Python environment"
    )]
    RuntimeFileMissing {
        /// The flag or variable that named it.
        from: &'static str,
        /// The file named.
        path: PathBuf,
    },
    /// No folder for the model store: neither `VGGCACHE_HOME`, `XDG_CACHE_HOME` nor `HOME` is set.
    #[error(
        "no model store folder: VGGCACHE_HOME, XDG_CACHE_HOME and HOME are all unset; set \
         VGGCACHE_HOME=/path/to/a/folder"
    )]
    NoHome,
    /// A trunk name that is not a plain file name.
    #[error(
        "--trunk {name:?} is not a trunk name (letters, digits, `-`, `_` and `.`, not starting \
         with `.`); pass a model file with --model PATH instead"
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// The named trunk is not installed in the store.
    #[error(
        "trunk {name:?} is not installed; tried, in order: --model (not given); {} ({home_from}). \
         Fix: `{fix}`",
        path.display()
    )]
    ModelNotInstalled {
        /// The trunk name.
        name: String,
        /// The file looked for.
        path: PathBuf,
        /// Where the store folder came from (`VGGCACHE_HOME`, ...).
        home_from: String,
        /// The command that installs it.
        fix: String,
    },
    /// `models install` of a name it has no recipe for, without `--from`.
    #[error(
        "no recipe to build trunk {name:?}: `vggcache models install` builds {}; install your \
         own model file with `vggcache models install {name} --from FILE.onnx`",
        install::recipe_names()
    )]
    UnknownTrunk {
        /// The name given.
        name: String,
    },
    /// A recipe needs a flag that was not given (`vgg16-int8` needs `--calib DIR`).
    #[error("{what}")]
    Usage {
        /// What is missing and how to give it.
        what: String,
    },
    /// No Python to build with.
    #[error(
        "no Python found to build trunk models (tried {tried}); install Python 3 with its venv \
         module (e.g. `apt-get install python3-venv`) or pass --python PATH"
    )]
    NoPython {
        /// The interpreters tried.
        tried: String,
    },
    /// The Python a recipe runs with lacks packages it needs and vggcache does not install.
    #[error(
        "trunk {name:?} needs the Python packages {missing} in {python}, which `models install` \
         does not install itself (they are large). Fix: `{fix}`, then run `vggcache models \
         install {name} --python {python}` again"
    )]
    ToolsMissing {
        /// The trunk name.
        name: String,
        /// The interpreter checked.
        python: PathBuf,
        /// The import names that failed.
        missing: String,
        /// The command that installs them.
        fix: String,
    },
    /// A step of a build (venv creation, pip, the builder script) failed.
    #[error("{step} failed ({status}): `{command}`\n{output}")]
    Step {
        /// What was being done.
        step: String,
        /// The command line.
        command: String,
        /// Its exit status, or why it did not run.
        status: String,
        /// The tail of its output.
        output: String,
    },
    /// A built or given model file is not a usable trunk.
    #[error("{path} is not a usable trunk model: {cause}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: String,
    },
    /// A file of the store could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// An `Io` error adapter for `map_err`.
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| StoreError::Io { what, path, source }
    }
}

impl From<crate::fsutil::FsError> for StoreError {
    fn from(e: crate::fsutil::FsError) -> Self {
        StoreError::Io {
            what: "writing",
            path: e.path,
            source: e.source,
        }
    }
}

/// Where a file was found: the step of the lookup order that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag (`--ort-lib`, `--model`).
    Flag(&'static str),
    /// An environment variable (`ORT_DYLIB_PATH`).
    Env(&'static str),
    /// The `onnxruntime` package of the active virtual environment (`VIRTUAL_ENV`).
    VirtualEnv(PathBuf),
    /// The `onnxruntime` package of this `python3` (found on `PATH`).
    Python(PathBuf),
    /// The model store, by trunk name.
    Store {
        /// The trunk name.
        name: String,
        /// Where the store folder came from.
        home_from: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "{flag}"),
            Source::Env(var) => write!(f, "{var}"),
            Source::VirtualEnv(v) => {
                write!(f, "the onnxruntime package of VIRTUAL_ENV {}", v.display())
            }
            Source::Python(p) => write!(f, "the onnxruntime package of {}", p.display()),
            Source::Store { name, home_from } => {
                write!(f, "--trunk {name} in the model store ({home_from})")
            }
        }
    }
}

/// A file the lookup found and the step that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The file.
    pub path: PathBuf,
    /// Where it came from.
    pub source: Source,
}

/// The model store folder and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The folder (it need not exist yet).
    pub path: PathBuf,
    /// `VGGCACHE_HOME`, `$XDG_CACHE_HOME/vggcache` or `~/.cache/vggcache`.
    pub from: String,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The model store folder: `VGGCACHE_HOME`, else `$XDG_CACHE_HOME/vggcache` (when absolute), else
/// `$HOME/.cache/vggcache`.
pub fn home() -> Result<Home, StoreError> {
    if let Some(p) = env_path("VGGCACHE_HOME") {
        return Ok(Home {
            path: p,
            from: "VGGCACHE_HOME".into(),
        });
    }
    if let Some(p) = env_path("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(Home {
            path: p.join("vggcache"),
            from: "$XDG_CACHE_HOME/vggcache; VGGCACHE_HOME unset".into(),
        });
    }
    match env_path("HOME") {
        Some(h) => Ok(Home {
            path: h.join(".cache").join("vggcache"),
            from: "~/.cache/vggcache; VGGCACHE_HOME unset".into(),
        }),
        None => Err(StoreError::NoHome),
    }
}

/// The model store folder ([`home`]'s path).
pub fn store_dir() -> Result<PathBuf, StoreError> {
    Ok(home()?.path)
}

/// `STORE/models`: where installed trunks live as `NAME.onnx` beside `NAME.json`.
pub fn models_dir() -> Result<PathBuf, StoreError> {
    Ok(store_dir()?.join("models"))
}

/// Refuses a trunk name that is not a plain file name (no `/`, no leading `.`, nothing odd).
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName { name: name.into() })
    }
}

/// The command that installs trunk `name` into the store.
pub fn install_command(name: &str) -> String {
    match install::recipe(name) {
        Some(r) if r.needs_calib => format!("vggcache models install {name} --calib IMAGE_FOLDER"),
        Some(_) => format!("vggcache models install {name}"),
        None => format!("vggcache models install {name} --from FILE.onnx"),
    }
}

/// The trunk model (see the module doc for the order): `explicit` (`--model`) as given, else
/// trunk `trunk` installed in the store.
pub fn model(explicit: Option<&Path>, trunk: &str) -> Result<Resolved, StoreError> {
    if let Some(p) = explicit {
        return Ok(Resolved {
            path: p.to_path_buf(),
            source: Source::Flag("--model"),
        });
    }
    check_name(trunk)?;
    let home = home()?;
    let path = home.path.join("models").join(format!("{trunk}.onnx"));
    if path.is_file() {
        return Ok(Resolved {
            path,
            source: Source::Store {
                name: trunk.into(),
                home_from: home.from,
            },
        });
    }
    Err(StoreError::ModelNotInstalled {
        name: trunk.into(),
        path,
        home_from: home.from,
        fix: install_command(trunk),
    })
}

/// [`model`]'s file.
pub fn model_path(explicit: Option<&Path>, trunk: &str) -> Result<PathBuf, StoreError> {
    Ok(model(explicit, trunk)?.path)
}

/// The ONNX Runtime library (see the module doc for the order). Does not load it.
pub fn ort_library(explicit: Option<&Path>) -> Result<Resolved, StoreError> {
    let given = |path: PathBuf, source: Source, from: &'static str| {
        if path.exists() {
            Ok(Resolved { path, source })
        } else {
            Err(StoreError::RuntimeFileMissing { from, path })
        }
    };
    if let Some(p) = explicit {
        return given(p.to_path_buf(), Source::Flag("--ort-lib"), "--ort-lib");
    }
    let mut tried = vec!["--ort-lib (not given)".to_string()];
    if let Some(p) = env_path("ORT_DYLIB_PATH") {
        return given(p, Source::Env("ORT_DYLIB_PATH"), "ORT_DYLIB_PATH");
    }
    tried.push("ORT_DYLIB_PATH (unset)".into());
    match env_path("VIRTUAL_ENV") {
        Some(venv) => {
            let sites = site_packages(&venv);
            for site in &sites {
                if let Some(lib) = library_in(&site.join("onnxruntime")) {
                    return Ok(Resolved {
                        path: lib,
                        source: Source::VirtualEnv(venv),
                    });
                }
            }
            tried.push(format!(
                "VIRTUAL_ENV {}: no onnxruntime/capi/libonnxruntime.so* in {}",
                venv.display(),
                if sites.is_empty() {
                    "its lib/python3*/site-packages (none found)".to_string()
                } else {
                    sites
                        .iter()
                        .map(|s| s.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        None => tried.push("VIRTUAL_ENV (unset)".into()),
    }
    let python = PathBuf::from("python3");
    match python_package_dir(&python, "onnxruntime", PYTHON_PROBE_TIMEOUT) {
        Ok(dir) => match library_in(&dir) {
            Some(lib) => {
                return Ok(Resolved {
                    path: lib,
                    source: Source::Python(which(&python).unwrap_or(python)),
                })
            }
            None => tried.push(format!(
                "python3 on PATH: onnxruntime at {} has no capi/libonnxruntime.so*",
                dir.display()
            )),
        },
        Err(why) => tried.push(format!("python3 on PATH: {why}")),
    }
    Err(StoreError::RuntimeNotFound { tried })
}

/// `VENV/lib/python3*/site-packages` folders, sorted.
fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// The `libonnxruntime.so*` in `PACKAGE/capi` (the highest name when there are several).
fn library_in(package: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(package.join("capi"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                && p.is_file()
        })
        .collect();
    libs.sort();
    libs.pop()
}

/// `program` as found on `PATH` (for messages), when it is a bare name.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Runs `program` with `args`, killing it after `timeout`; `(success, stdout, stderr)`.
pub(crate) fn run_bounded(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<(bool, String, String), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    // Read both pipes while the child runs, so a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{} did not answer within {} s",
                    program.display(),
                    timeout.as_secs()
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("waiting for {}: {e}", program.display()));
            }
        }
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    Ok((status?.success(), out, err))
}

/// The folder of Python package `package` as `python` imports it (bounded by `timeout`).
fn python_package_dir(python: &Path, package: &str, timeout: Duration) -> Result<PathBuf, String> {
    let code = format!("import {package}, os; print(os.path.dirname({package}.__file__))");
    let (ok, out, err) = run_bounded(python, &["-c", &code], timeout)?;
    if !ok {
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(format!("cannot import {package} ({last})"));
    }
    let dir = PathBuf::from(out.trim());
    if dir.as_os_str().is_empty() {
        return Err(format!("printed no folder for {package}"));
    }
    Ok(dir)
}
