//! Loads ONNX Runtime's shared library; lists providers and the CUDA libraries it needs.
//!
//! Which library is loaded is the model store's lookup ([`crate::store::ort_library`]: `--ort-lib`,
//! `ORT_DYLIB_PATH`, then the `onnxruntime` package of the Python environment).

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::TrunkError;

/// Where the library was found: the step of [`crate::store::ort_library`] that gave it.
pub type LibrarySource = crate::store::Source;

/// The loaded runtime.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// The library file.
    pub path: PathBuf,
    /// Where it was found.
    pub source: LibrarySource,
    /// ONNX Runtime's version string.
    pub version: String,
}

/// Locates the runtime library without loading it ([`crate::store::ort_library`]).
pub fn find_library(explicit: Option<&Path>) -> Result<crate::store::Resolved, TrunkError> {
    Ok(crate::store::ort_library(explicit)?)
}

static RUNTIME: OnceLock<(RuntimeInfo, ort::environment::Environment)> = OnceLock::new();

/// Loads the runtime once per process (later calls return the first result; ONNX Runtime allows one
/// library and one environment per process).
pub fn init_runtime(explicit: Option<&Path>) -> Result<&'static RuntimeInfo, TrunkError> {
    if let Some((info, _)) = RUNTIME.get() {
        return Ok(info);
    }
    let crate::store::Resolved { path, source } = find_library(explicit)?;
    let builder = ort::init_from(&path).map_err(|e| TrunkError::RuntimeLoad {
        path: path.clone(),
        cause: e.to_string(),
    })?;
    let env = builder
        .with_name("vggcache")
        .build()
        .map_err(|e| TrunkError::Runtime(e.to_string()))?;
    let version = version_string(&path);
    let info = RuntimeInfo {
        path,
        source,
        version,
    };
    let _ = RUNTIME.set((info, env));
    Ok(&RUNTIME.get().expect("runtime just set").0)
}

/// The process's ONNX Runtime environment, loading the runtime first if needed (same search as
/// [`init_runtime`]); for code that builds its own sessions, such as the export tests.
pub fn shared_environment(
    explicit: Option<&Path>,
) -> Result<&'static ort::environment::Environment, TrunkError> {
    init_runtime(explicit)?;
    Ok(environment())
}

/// The environment sessions are built in; `init_runtime` must have succeeded.
pub(super) fn environment() -> &'static ort::environment::Environment {
    &RUNTIME
        .get()
        .expect("init_runtime must run before sessions are built")
        .1
}

/// The version string of the already loaded library at `path` (via its `OrtGetApiBase`).
fn version_string(path: &Path) -> String {
    let unknown = || "unknown".to_string();
    let Ok(c) = CString::new(path.as_os_str().to_string_lossy().as_bytes()) else {
        return unknown();
    };
    // SAFETY: RTLD_NOLOAD only returns the handle of the library ort already loaded; OrtGetApiBase is
    // exported by every ONNX Runtime and returns a static struct.
    unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if h.is_null() {
            return unknown();
        }
        let sym = libc::dlsym(h, c"OrtGetApiBase".as_ptr());
        libc::dlclose(h);
        if sym.is_null() {
            return unknown();
        }
        let get: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(sym);
        let base = get();
        if base.is_null() {
            return unknown();
        }
        CStr::from_ptr(((*base).GetVersionString)())
            .to_string_lossy()
            .into_owned()
    }
}

/// Names of the execution providers this runtime build offers (e.g. `CUDAExecutionProvider`).
pub fn available_providers() -> Result<Vec<String>, TrunkError> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut n: c_int = 0;
    // SAFETY: the ORT C API fills `list` with `n` C strings that we release below.
    let status = unsafe { (api.GetAvailableProviders)(&mut list, &mut n) };
    if !status.0.is_null() {
        return Err(TrunkError::Runtime("GetAvailableProviders failed".into()));
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: `i < n`, and the API filled `list[..n]` with valid NUL-terminated strings that
        // live until the release below.
        let s = unsafe { CStr::from_ptr(*list.add(i)) };
        out.push(s.to_string_lossy().into_owned());
    }
    // The status of a release is not actionable.
    // SAFETY: `list` and `n` are exactly what GetAvailableProviders returned, released once.
    let _ = unsafe { (api.ReleaseAvailableProviders)(list, n) };
    Ok(out)
}

/// One CUDA/cuDNN library the CUDA provider of the `onnxruntime-gpu` wheel loads.
#[derive(Debug, Clone)]
pub struct CudaLib {
    /// File name of the library (`libcudnn.so.9`, …).
    pub name: &'static str,
    /// Where it resolved: an absolute path (pip's nvidia packages), `system` (the loader's search path),
    /// or None when it cannot be loaded.
    pub resolved: Option<String>,
}

/// CUDA 13 + cuDNN 9 libraries (ort's list for ONNX Runtime 1.31).
const CUDA_LIBS: &[&str] = &[
    "libcudart.so.13",
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libcurand.so.10",
    "libcufft.so.12",
    "libcudnn.so.9",
    "libcudnn_graph.so.9",
    "libcudnn_ops.so.9",
    "libcudnn_heuristic.so.9",
    "libcudnn_adv.so.9",
    "libcudnn_cnn.so.9",
    "libcudnn_engines_precompiled.so.9",
    "libcudnn_engines_runtime_compiled.so.9",
];

/// Folders of pip's `nvidia-*` packages (site-packages/nvidia/*/lib and nvidia/cu13/lib) beside the
/// loaded runtime's `onnxruntime` package, and in `VGGCACHE_CUDA_LIBS` (colon-separated extra folders).
fn nvidia_lib_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("VGGCACHE_CUDA_LIBS")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if let Some(site) = runtime_site_packages() {
        for pkg in std::fs::read_dir(site.join("nvidia"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let lib = pkg.path().join("lib");
            if lib.is_dir() {
                dirs.push(lib);
            }
        }
    }
    dirs
}

/// The `site-packages` holding the loaded runtime (`SITE/onnxruntime/capi/libonnxruntime.so*`).
fn runtime_site_packages() -> Option<PathBuf> {
    let (info, _) = RUNTIME.get()?;
    let capi = info.path.parent()?;
    let package = capi.parent()?;
    (capi.file_name()? == "capi" && package.file_name()? == "onnxruntime")
        .then(|| package.parent().map(Path::to_path_buf))
        .flatten()
}

/// Resolves (and, with `load`, preloads by absolute path with RTLD_GLOBAL) each CUDA/cuDNN library, so
/// the CUDA provider finds them although they are not on the loader's path.
pub fn cuda_library_report(load: bool) -> Vec<CudaLib> {
    let dirs = nvidia_lib_dirs();
    CUDA_LIBS
        .iter()
        .map(|&name| {
            let local = dirs.iter().map(|d| d.join(name)).find(|p| p.exists());
            let resolved = match local {
                Some(p) => dlopen(&p.to_string_lossy(), load).then(|| p.display().to_string()),
                None => dlopen(name, load).then(|| "system".to_string()),
            };
            CudaLib { name, resolved }
        })
        .collect()
}

/// `dlopen`s a library; without `keep`, closes it again (a probe).
fn dlopen(name: &str, keep: bool) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: dlopen/dlclose with a valid C string; a kept handle stays loaded for the process.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        return false;
    }
    if !keep {
        // SAFETY: `h` is the non-null handle dlopen returned just above, closed once.
        unsafe { libc::dlclose(h) };
    }
    true
}
