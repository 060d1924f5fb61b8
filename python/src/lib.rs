//! `vggcache._core`: the Python package's native module. Thin: Python values → the library's job
//! configs, results → Python objects (features moved into numpy, not copied), library errors →
//! the `VggcacheError` hierarchy, job events → a Python callable, and the `vggcache` command line.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;
use pyo3::types::PyDict;

// The command layer names the library's modules as `crate::…`, as it does in the binary.
#[allow(unused_imports)]
use vggcache::*;

/// The `vggcache` binary's command layer, compiled in for [`run_cli`] (one CLI, two front ends).
#[path = "../../src/commands/mod.rs"]
#[allow(dead_code, unused_imports)]
mod commands;

use vggcache::cache::FeatureCache;
use vggcache::events::{Event, Events};
use vggcache::jobs::JobError;

create_exception!(
    _core,
    VggcacheError,
    PyException,
    "Base class of vggcache's errors; the message is the library's."
);
create_exception!(
    _core,
    CacheError,
    VggcacheError,
    "A feature cache that cannot be opened, read or written."
);
create_exception!(
    _core,
    ModelError,
    VggcacheError,
    "A trunk model, ONNX Runtime or a trained head that cannot be found, loaded or used."
);
create_exception!(
    _core,
    InputError,
    VggcacheError,
    "Inputs that do not fit together or cannot be read (images, splits, shapes, run folders)."
);
create_exception!(
    _core,
    UsageError,
    VggcacheError,
    "A setting no run can use (the CLI's exit code 2)."
);

/// Which Python exception an error becomes.
#[derive(Clone, Copy)]
enum Kind {
    Cache,
    Model,
    Input,
    Usage,
    Other,
}

impl Kind {
    fn err(self, msg: String) -> PyErr {
        match self {
            Kind::Cache => CacheError::new_err(msg),
            Kind::Model => ModelError::new_err(msg),
            Kind::Input => InputError::new_err(msg),
            Kind::Usage => UsageError::new_err(msg),
            Kind::Other => VggcacheError::new_err(msg),
        }
    }
}

fn extract_kind(e: &vggcache::extract::ExtractError) -> Kind {
    use vggcache::extract::ExtractError as E;
    match e {
        E::Config { .. } | E::Unreconciled { .. } => Kind::Usage,
        E::Cache(_) => Kind::Cache,
        E::Trunk(_) | E::PlanModel { .. } => Kind::Model,
        E::Dataset(_) | E::NothingUsable { .. } => Kind::Input,
        _ => Kind::Other,
    }
}

fn job_kind(e: &JobError) -> Kind {
    if e.is_usage() {
        return Kind::Usage;
    }
    match e {
        JobError::Cache(_) => Kind::Cache,
        JobError::Trunk(_)
        | JobError::Head(_)
        | JobError::NotARun { .. }
        | JobError::OtherTrunk { .. } => Kind::Model,
        JobError::Extract(e) => extract_kind(e),
        JobError::Io { .. } => Kind::Other,
        _ => Kind::Input,
    }
}

/// A library error as its Python exception, with the library's message.
fn py_err(e: impl Into<JobError>) -> PyErr {
    let e = e.into();
    if e.is_interrupted() {
        return PyKeyboardInterrupt::new_err(e.to_string());
    }
    job_kind(&e).err(e.to_string())
}

/// A command-layer error (model lookup) as its Python exception.
fn cmd_err(e: commands::CommandError) -> PyErr {
    use commands::CommandError as C;
    let kind = match &e {
        C::Usage(_) => Kind::Usage,
        C::Input(_) => Kind::Input,
        _ if e.exit_code() == commands::exit::USAGE => Kind::Usage,
        // The model store's lookups: a trunk not installed, no ONNX Runtime, no store folder.
        C::Trunk(_) | C::Store(_) => Kind::Model,
        C::Cache(_) => Kind::Cache,
        _ => Kind::Other,
    };
    kind.err(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C and events

/// Set by [`on_sigint`] while a [`SigintGuard`] is installed.
static SIGINT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINT.store(true, Ordering::SeqCst);
}

/// While a job runs without the GIL, SIGINT (Ctrl-C, `signal.raise_signal`) sets [`SIGINT`]
/// instead of Python's handler, so that the job's cancel hook ([`Events::cancelled`]) sees it
/// whichever thread the signal lands on; the previous handler comes back on drop.
/// (`_thread.interrupt_main` sends no signal: [`PyEvents::poll`] sees it through
/// `check_signals` on the main thread.)
struct SigintGuard {
    old: Option<libc::sigaction>,
}

impl SigintGuard {
    fn install() -> Self {
        SIGINT.store(false, Ordering::SeqCst);
        // SAFETY: plain sigaction calls with zero-initialised structs; the handler only stores
        // into an atomic, which is async-signal-safe.
        let old = unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigint as *const () as usize;
            libc::sigemptyset(&mut new.sa_mask);
            new.sa_flags = libc::SA_RESTART;
            let mut old: libc::sigaction = std::mem::zeroed();
            (libc::sigaction(libc::SIGINT, &new, &mut old) == 0).then_some(old)
        };
        SigintGuard { old }
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            // SAFETY: restores the action saved by `install`.
            unsafe {
                libc::sigaction(libc::SIGINT, old, std::ptr::null_mut());
            }
        }
    }
}

/// The job events sink of a Python call: each event as a dict to `callback` (the package's
/// progress display or the user's function), Ctrl-C noted between events.
struct PyEvents {
    callback: Option<Py<PyAny>>,
    stop: AtomicBool,
    /// The first error to raise when the job returns: KeyboardInterrupt or the callback's.
    error: Mutex<Option<PyErr>>,
    main_thread: std::thread::ThreadId,
}

impl PyEvents {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        PyEvents {
            callback,
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            main_thread: std::thread::current().id(),
        }
    }

    fn fail(&self, e: PyErr) {
        self.stop.store(true, Ordering::SeqCst);
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Notes a pending Ctrl-C: a SIGINT seen by the guard, or (on the main thread) a signal
    /// Python has tripped.
    fn poll(&self, py: Python<'_>) {
        if SIGINT.load(Ordering::SeqCst) {
            self.fail(PyKeyboardInterrupt::new_err(()));
        } else if std::thread::current().id() == self.main_thread {
            if let Err(e) = py.check_signals() {
                self.fail(e);
            }
        }
    }

    /// Whether the job should stop: Ctrl-C or a failing callback.
    fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || SIGINT.load(Ordering::SeqCst)
    }

    fn send(&self, make: impl FnOnce(Python<'_>) -> PyResult<Bound<'_, PyDict>>) {
        Python::attach(|py| {
            self.poll(py);
            let Some(cb) = &self.callback else { return };
            if let Err(e) = make(py).and_then(|d| cb.call1(py, (d,))) {
                self.fail(e);
            }
        });
    }

    /// The call's result: the error noted while it ran first (KeyboardInterrupt, a callback's
    /// exception), then the job's own.
    fn finish<T>(&self, r: PyResult<T>) -> PyResult<T> {
        let noted = self.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match noted {
            Some(e) => Err(e),
            None if SIGINT.load(Ordering::SeqCst) => Err(PyKeyboardInterrupt::new_err(())),
            None => r,
        }
    }
}

impl Events for PyEvents {
    fn event(&self, e: &Event) {
        self.send(|py| {
            let d = PyDict::new(py);
            match e {
                Event::Provider {
                    name,
                    cuda_fallback,
                } => {
                    d.set_item("kind", "provider")?;
                    d.set_item("name", name)?;
                    d.set_item("cuda_fallback", cuda_fallback)?;
                }
                Event::Scanned {
                    images,
                    root,
                    layout,
                    classes,
                    skipped,
                } => {
                    d.set_item("kind", "scanned")?;
                    d.set_item("images", images)?;
                    d.set_item("root", root)?;
                    d.set_item("layout", layout)?;
                    d.set_item("classes", classes)?;
                    d.set_item("skipped", skipped)?;
                }
                Event::Planned {
                    images,
                    reused,
                    removed,
                    moved,
                } => {
                    d.set_item("kind", "planned")?;
                    d.set_item("images", images)?;
                    d.set_item("reused", reused)?;
                    d.set_item("removed", removed)?;
                    d.set_item("moved", moved)?;
                }
                Event::Batch {
                    done,
                    total,
                    images,
                } => {
                    d.set_item("kind", "batch")?;
                    d.set_item("done", done)?;
                    d.set_item("total", total)?;
                    d.set_item("images", images)?;
                }
                Event::Skipped { path, reason } => {
                    d.set_item("kind", "skipped")?;
                    d.set_item("path", path)?;
                    d.set_item("reason", reason)?;
                }
                Event::Finished { extracted, skipped } => {
                    d.set_item("kind", "finished")?;
                    d.set_item("extracted", extracted)?;
                    d.set_item("skipped", skipped)?;
                }
                Event::Notice(text) => {
                    d.set_item("kind", "notice")?;
                    d.set_item("text", text)?;
                }
                Event::Training { epochs } => {
                    d.set_item("kind", "training")?;
                    d.set_item("epochs", epochs)?;
                }
                Event::Epoch(m) => {
                    d.set_item("kind", "epoch")?;
                    d.set_item("metrics", json_to_py(py, &to_json(m))?)?;
                }
                Event::Trained { run_dir, .. } => {
                    d.set_item("kind", "trained")?;
                    d.set_item("run", run_dir)?;
                }
                other => {
                    // Repairs and deletions: one line of text, as the CLI shows them.
                    d.set_item("kind", "notice")?;
                    d.set_item("text", format!("{other:?}"))?;
                }
            }
            Ok(d)
        })
    }

    /// Polled by the job on the calling thread (Python's main thread, the GIL released):
    /// `check_signals` there runs Python's signal handlers, so Ctrl-C stops the job.
    fn cancelled(&self) -> bool {
        if self.is_cancelled() {
            return true;
        }
        Python::attach(|py| self.poll(py));
        self.is_cancelled()
    }
}

/// JSON text (a serde value of the library) as Python objects; `None` for `None`.
fn json_to_py<'py>(py: Python<'py>, text: &Option<String>) -> PyResult<Bound<'py, PyAny>> {
    match text {
        Some(t) => py.import("json")?.call_method1("loads", (t,)),
        None => Ok(py.None().into_bound(py)),
    }
}

fn to_json(v: &impl serde::Serialize) -> Option<String> {
    serde_json::to_string(v).ok()
}

// ---------------------------------------------------------------------------------------------
// Options

/// The keyword options of a call, taken one by one; [`Options::done`] refuses any left over.
struct Options<'py> {
    what: &'static str,
    dict: Option<Bound<'py, PyDict>>,
}

impl<'py> Options<'py> {
    fn new(what: &'static str, dict: Option<Bound<'py, PyDict>>) -> Self {
        Options { what, dict }
    }

    /// Removes option `key` and converts it; absent or `None` gives `None`.
    fn take<T: FromPyObjectOwned<'py>>(&mut self, key: &str) -> PyResult<Option<T>> {
        let Some(d) = &self.dict else { return Ok(None) };
        let Some(v) = d.get_item(key)? else {
            return Ok(None);
        };
        d.del_item(key)?;
        if v.is_none() {
            return Ok(None);
        }
        v.extract::<T>().map(Some).map_err(|e| {
            let e: PyErr = e.into();
            UsageError::new_err(format!("{}(): option {key}: {e}", self.what))
        })
    }

    /// Sets `*slot` to option `key` when given.
    fn set<T: FromPyObjectOwned<'py>>(&mut self, key: &str, slot: &mut T) -> PyResult<()> {
        if let Some(v) = self.take(key)? {
            *slot = v;
        }
        Ok(())
    }

    /// Fails on options no one took.
    fn done(self) -> PyResult<()> {
        match self.dict {
            Some(d) if !d.is_empty() => {
                let keys: Vec<String> = d.keys().iter().map(|k| k.to_string()).collect();
                Err(UsageError::new_err(format!(
                    "{}() got unexpected option(s): {}",
                    self.what,
                    keys.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// The trunk's options (`model`, `trunk`, `device`, `threads`, `ort_lib`), resolved as the
    /// CLI's `--model/--trunk/--device/--threads/--ort-lib` flags are (one lookup order).
    fn trunk(&mut self) -> PyResult<commands::TrunkArgs> {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct Flags {
            #[command(flatten)]
            trunk: commands::TrunkArgs,
        }
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(m) = self.take::<PathBuf>("model")? {
            argv.extend(["--model".into(), m.into_os_string()]);
        }
        for key in ["trunk", "device"] {
            if let Some(v) = self.take::<String>(key)? {
                argv.extend([format!("--{key}").into(), v.into()]);
            }
        }
        if let Some(t) = self.take::<usize>("threads")? {
            argv.extend(["--threads".into(), t.to_string().into()]);
        }
        if let Some(p) = self.take::<PathBuf>("ort_lib")? {
            argv.extend(["--ort-lib".into(), p.into_os_string()]);
        }
        <Flags as clap::Parser>::try_parse_from(argv)
            .map(|f| f.trunk)
            .map_err(|e| {
                UsageError::new_err(format!(
                    "{}(): {}",
                    self.what,
                    e.render().to_string().trim()
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Functions and classes

/// Runs the `vggcache` command line (`argv[0]` is the program name) and returns its exit code.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<OsString>) -> i32 {
    py.detach(|| commands::cli::run(argv))
}

/// Extracts features of `images` into the cache `out`; returns the summary as a dict.
#[pyfunction]
#[pyo3(name = "extract", signature = (images, out, options=None, progress=None))]
fn extract_images<'py>(
    py: Python<'py>,
    images: PathBuf,
    out: PathBuf,
    options: Option<Bound<'py, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut o = Options::new("extract", options);
    let trunk = o.trunk()?;
    let mut cfg = vggcache::extract::ExtractConfig {
        images,
        out,
        model: trunk.model_path().map_err(cmd_err)?,
        trunk: trunk.options(),
        ..Default::default()
    };
    o.set("batch_size", &mut cfg.batch_size)?;
    cfg.workers = o.take("workers")?;
    cfg.sessions = o.take("sessions")?;
    o.set("shard_rows", &mut cfg.shard_rows)?;
    o.set("val_fraction", &mut cfg.val_fraction)?;
    o.set("force", &mut cfg.force)?;
    if let Some(dtype) = o.take::<String>("feature_dtype")? {
        cfg.feature_dtype = dtype
            .parse()
            .map_err(|e| UsageError::new_err(format!("extract(): feature_dtype: {e}")))?;
    }
    o.set("views", &mut cfg.views.train_views)?;
    o.set("tta_views", &mut cfg.views.tta)?;
    o.set("view_seed", &mut cfg.views.seed)?;
    o.done()?;
    let events = PyEvents::new(progress);
    let guard = SigintGuard::install();
    let r = py.detach(|| vggcache::extract::run(&cfg, &events));
    drop(guard);
    let s = events.finish(r.map_err(py_err))?;
    let d = PyDict::new(py);
    d.set_item("cache", &cfg.out)?;
    d.set_item("extracted", s.extracted)?;
    d.set_item("reused", s.reused)?;
    d.set_item("removed", s.removed)?;
    d.set_item("skipped", s.skipped)?;
    d.set_item("seconds", s.seconds)?;
    d.set_item("provider", &s.provider)?;
    d.set_item("cache_rows", s.cache_rows)?;
    d.set_item("cache_bytes", s.cache_bytes)?;
    d.set_item("skipped_csv", cfg.out.join(vggcache::cache::SKIPPED_FILE))?;
    Ok(d)
}

/// An opened, verified feature cache (holds the cache's shared lock while open).
#[pyclass(name = "Cache", module = "vggcache._core", frozen)]
struct PyCache {
    inner: FeatureCache,
}

#[pymethods]
impl PyCache {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| FeatureCache::open(&path)).map_err(py_err)?;
        Ok(PyCache { inner })
    }

    /// The cache folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }

    /// Class names, index = label.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inner.classes().to_vec()
    }

    /// Splits present, sorted (train, val, test).
    #[getter]
    fn splits(&self) -> Vec<&'static str> {
        self.inner
            .split_names()
            .iter()
            .map(|s| s.as_str())
            .collect()
    }

    /// Feature width D.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// Fingerprint of the trunk that made the features.
    #[getter]
    fn trunk_fingerprint(&self) -> String {
        self.inner.trunk_fingerprint().to_string()
    }

    /// The Parquet files of the cache, in row order.
    #[getter]
    fn shard_files(&self) -> Vec<PathBuf> {
        let dir = self.inner.dir();
        self.inner
            .manifest()
            .shards
            .iter()
            .map(|s| dir.join(&s.file))
            .collect()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// `(X (n, D) float32, y (n,) int64 with -1 for unlabelled, paths, address of X's data)`
    /// of split `split` (`None`: every row). X is the library's own array, moved into numpy.
    #[pyo3(signature = (split=None))]
    #[allow(clippy::type_complexity)]
    fn _features<'py>(
        &self,
        py: Python<'py>,
        split: Option<&str>,
    ) -> PyResult<(
        Bound<'py, PyArray2<f32>>,
        Bound<'py, PyArray1<i64>>,
        Vec<String>,
        usize,
    )> {
        let cache = &self.inner;
        let data = match split {
            None => py.detach(|| cache.all()),
            Some(name) => {
                let s = vggcache::dataset::Split::parse(name).ok_or_else(|| {
                    UsageError::new_err(format!(
                        "split must be train, val or test, got {name:?} (this cache has: {})",
                        self.splits().join(", ")
                    ))
                })?;
                py.detach(|| cache.split(s))
            }
        }
        .map_err(py_err)?;
        let y: Vec<i64> = data
            .labels
            .iter()
            .map(|l| l.map_or(-1, i64::from))
            .collect();
        let address = data.features.as_ptr() as usize;
        Ok((
            data.features.into_pyarray(py),
            y.into_pyarray(py),
            data.paths,
            address,
        ))
    }
}

/// A string option parsed with the command line's names for it (its `clap::ValueEnum`).
fn value_enum<T: clap::ValueEnum>(func: &str, key: &str, value: &str) -> PyResult<T> {
    T::from_str(value, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| format!("{:?}", p.get_name()))
            .collect();
        UsageError::new_err(format!(
            "{func}: {key} must be one of {}, got {value:?}",
            names.join(", ")
        ))
    })
}

/// Trains a head on the cache `features`; returns the run as a dict.
#[pyfunction]
#[pyo3(signature = (features, options=None, progress=None))]
fn train_head<'py>(
    py: Python<'py>,
    features: PathBuf,
    options: Option<Bound<'py, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut cfg = vggcache::jobs::TrainConfig {
        features,
        ..Default::default()
    };
    let mut o = Options::new("train_head", options);
    cfg.name = o.take("name")?;
    o.set("runs_dir", &mut cfg.runs_dir)?;
    cfg.images = o.take("images")?;
    let h = &mut cfg.head;
    o.set("hidden", &mut h.hidden)?;
    o.set("dropout", &mut h.dropout)?;
    o.set("epochs", &mut h.epochs)?;
    o.set("batch_size", &mut h.batch_size)?;
    o.set("lr", &mut h.lr)?;
    o.set("weight_decay", &mut h.weight_decay)?;
    o.set("seed", &mut h.seed)?;
    h.patience = o.take("patience")?;
    o.set("select_fraction", &mut h.select_fraction)?;
    o.set("standardize", &mut h.standardize)?;
    o.set("val_fraction", &mut h.val_fraction)?;
    o.set("stream", &mut cfg.stream)?;
    cfg.memory_budget = o.take("memory_budget")?;
    o.set(
        "shuffle_buffer_rows",
        &mut cfg.stream_cfg.shuffle_buffer_rows,
    )?;
    o.set("prefetch_batches", &mut cfg.stream_cfg.prefetch_batches)?;
    if let Some(views) = o.take::<String>("views")? {
        cfg.views =
            value_enum::<commands::train_head::ViewsFlag>("train_head", "views", &views)?.into();
    }
    o.set("tta", &mut cfg.tta)?;
    o.set("extra_features", &mut cfg.extra_features)?;
    o.set("drop_unmatched", &mut cfg.drop_unmatched)?;
    o.done()?;
    let events = PyEvents::new(progress);
    let guard = SigintGuard::install();
    let r = py.detach(|| vggcache::jobs::train(&cfg, &events));
    drop(guard);
    let r = events.finish(r.map_err(py_err))?;
    run_dict(py, &r)
}

/// A train-head run as a dict: `path`, `best_epoch`, `metrics` (one dict per epoch), ...
fn run_dict<'py>(
    py: Python<'py>,
    r: &vggcache::jobs::TrainRunOutcome,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("path", &r.run_dir)?;
    d.set_item("best_epoch", r.outcome.best_epoch)?;
    d.set_item("select_rows", r.outcome.select_rows)?;
    d.set_item("metrics", json_to_py(py, &to_json(&r.outcome.history))?)?;
    d.set_item("classes", r.outcome.head.classes().to_vec())?;
    d.set_item("summary", &r.summary)?;
    d.set_item("page", &r.page)?;
    Ok(d)
}

/// The head beside linfa-logistic and the majority class on the cache `features`; returns the
/// report (its `rows`, `notes`, ...) and the files written.
#[pyfunction]
#[pyo3(signature = (features, options=None, progress=None))]
fn compare_baselines<'py>(
    py: Python<'py>,
    features: PathBuf,
    options: Option<Bound<'py, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut cfg = vggcache::jobs::CompareConfig {
        features,
        ..Default::default()
    };
    let mut o = Options::new("compare_baselines", options);
    cfg.head = o.take("head")?;
    cfg.c = o.take("c")?;
    if let Some(rule) = o.take::<String>("c_rule")? {
        cfg.c_rule =
            value_enum::<commands::compare::CRuleArg>("compare_baselines", "c_rule", &rule)?.into();
    }
    if let Some(views) = o.take::<String>("logistic_views")? {
        cfg.logistic_views = value_enum::<commands::compare::LogisticViews>(
            "compare_baselines",
            "logistic_views",
            &views,
        )? == commands::compare::LogisticViews::All;
    }
    o.set("tta", &mut cfg.tta)?;
    o.set("extra_features", &mut cfg.extra_features)?;
    o.set("drop_unmatched", &mut cfg.drop_unmatched)?;
    o.set("max_iter", &mut cfg.max_iter)?;
    o.set("standardize", &mut cfg.standardize)?;
    cfg.val_fraction = o.take("val_fraction")?;
    cfg.memory_budget = o.take("memory_budget")?;
    o.set("out", &mut cfg.out)?;
    cfg.images = o.take("images")?;
    o.done()?;
    let events = PyEvents::new(progress);
    let guard = SigintGuard::install();
    let r = py.detach(|| vggcache::jobs::compare(&cfg, &events));
    drop(guard);
    let r = events.finish(r.map_err(py_err))?;
    let d = PyDict::new(py);
    d.set_item("report", json_to_py(py, &to_json(&r.report))?)?;
    d.set_item("markdown", &r.markdown)?;
    d.set_item("json", &r.json)?;
    d.set_item("predictions", &r.predictions)?;
    d.set_item("page", &r.page)?;
    d.set_item(
        "trained",
        r.trained.as_ref().map(|t| run_dict(py, t)).transpose()?,
    )?;
    Ok(d)
}

/// A trained head loaded from a train-head run folder.
#[pyclass(name = "Head", module = "vggcache._core", frozen)]
struct PyHead {
    head: vggcache::head::FittedHead,
    meta: BTreeMap<String, String>,
    run: PathBuf,
}

#[pymethods]
impl PyHead {
    #[new]
    fn new(run: PathBuf) -> PyResult<Self> {
        let (head, meta) = vggcache::jobs::load_head(&run, None).map_err(py_err)?;
        Ok(PyHead { head, meta, run })
    }

    /// The run folder.
    #[getter]
    fn run(&self) -> PathBuf {
        self.run.clone()
    }

    /// Class names, index = column of the probabilities.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.head.classes().to_vec()
    }

    /// Input width D.
    #[getter]
    fn dim(&self) -> usize {
        self.head.dim()
    }

    /// The checkpoint's metadata (trunk fingerprint, cache, ...).
    #[getter]
    fn meta(&self) -> BTreeMap<String, String> {
        self.meta.clone()
    }

    /// Class probabilities `(n, classes)` of features `x: (n, D)` (the head's scaler applied).
    fn predict_features<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let p = self
            .head
            .try_predict_proba(x.as_array())
            .map_err(|e| InputError::new_err(e.to_string()))?;
        Ok(p.into_pyarray(py))
    }

    /// `(paths, probabilities (n, classes))` of the images in folder `images`, sorted by path;
    /// their features are extracted into `cache` (default: predict's own cache of the folder).
    #[pyo3(signature = (images, options=None, progress=None))]
    fn _predict_images<'py>(
        &self,
        py: Python<'py>,
        images: PathBuf,
        options: Option<Bound<'py, PyDict>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Vec<String>, Bound<'py, PyArray2<f32>>)> {
        let mut o = Options::new("predict_images", options);
        let trunk = o.trunk()?;
        let cache = o.take::<PathBuf>("cache")?;
        let mut cfg = vggcache::extract::ExtractConfig {
            out: cache.unwrap_or_else(|| vggcache::jobs::predict::default_cache(&images)),
            images,
            model: trunk.model_path().map_err(cmd_err)?,
            trunk: trunk.options(),
            val_fraction: 0.0,
            ..Default::default()
        };
        o.set("batch_size", &mut cfg.batch_size)?;
        o.done()?;
        vggcache::jobs::rows::check_model_file(&self.run, &self.meta, &cfg.model)
            .map_err(py_err)?;
        let events = PyEvents::new(progress);
        let guard = SigintGuard::install();
        let head = &self.head;
        let r = py.detach(|| -> Result<_, JobError> {
            vggcache::extract::run(&cfg, &events)?;
            let cache = FeatureCache::open(&cfg.out)?;
            if cache.dim() != head.dim() {
                return Err(JobError::DimMismatch {
                    head_dim: head.dim(),
                    cache: cfg.out.clone(),
                    cache_dim: cache.dim(),
                });
            }
            let all = cache.all()?;
            let proba = head.try_predict_proba(all.features.view())?;
            let mut order: Vec<usize> = (0..all.len()).collect();
            order.sort_by(|&a, &b| all.paths[a].cmp(&all.paths[b]));
            let paths = order.iter().map(|&i| all.paths[i].clone()).collect();
            Ok((paths, proba.select(ndarray::Axis(0), &order)))
        });
        drop(guard);
        let (paths, proba) = events.finish(r.map_err(py_err))?;
        Ok((paths, proba.into_pyarray(py)))
    }
}

/// The native module of the `vggcache` package.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(extract_images, m)?)?;
    m.add_function(wrap_pyfunction!(train_head, m)?)?;
    m.add_function(wrap_pyfunction!(compare_baselines, m)?)?;
    m.add_class::<PyCache>()?;
    m.add_class::<PyHead>()?;
    m.add("VggcacheError", py.get_type::<VggcacheError>())?;
    m.add("CacheError", py.get_type::<CacheError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
