//! Subcommands: the only place that wires dataset, trunk, cache, head, baseline and report together.

pub mod cache;
pub mod compare;
pub mod doctor;
pub mod export;
pub mod extract;
pub mod plan;
pub mod predict;
pub mod report;
pub mod train_head;

use std::path::PathBuf;

use crate::jobs::{JobError, JobEvent, TrainRunOutcome};
use crate::trunk::{Device, TrunkOptions};

/// Errors a command reports to the user (rendered by `main`, which maps them to exit codes).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Trunk(#[from] crate::trunk::TrunkError),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Head(#[from] crate::head::HeadError),
    #[error(transparent)]
    Baseline(#[from] crate::baseline::BaselineError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Extract(crate::extract::ExtractError),
    /// A job's own error (its module errors are unwrapped into the variants above).
    #[error(transparent)]
    Job(JobError),
    /// A flag value no run can use (exit code 2, like clap's own errors).
    #[error("{0}")]
    Usage(String),
    /// Inputs that do not fit together: a head and a trunk or cache of different models, a cache
    /// without the split a command needs, a run folder that already exists (exit code 1).
    #[error("{0}")]
    Input(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CommandError {
    /// A failed [`crate::fsutil::write_atomic`] of an output file.
    pub(crate) fn writing(e: crate::fsutil::FsError) -> CommandError {
        CommandError::Io {
            what: "writing",
            path: e.path,
            source: e.source,
        }
    }

    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Usage(_)
            | CommandError::Head(crate::head::HeadError::Config { .. })
            | CommandError::Extract(crate::extract::ExtractError::Unreconciled { .. }) => {
                exit::USAGE
            }
            CommandError::Job(e) if e.is_usage() => exit::USAGE,
            _ => exit::FAILURE,
        }
    }
}

/// Refuses an output path (`flag`'s value `out`) inside a feature cache (exit 2).
pub(crate) fn refuse_out_in_cache(
    flag: &'static str,
    out: &std::path::Path,
) -> Result<(), CommandError> {
    Ok(crate::jobs::refuse_out_in_cache(flag, out)?)
}

/// A job's error as the CLI reports it: the module errors as before, its own as [`JobError`].
impl From<JobError> for CommandError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Trunk(e) => e.into(),
            JobError::Dataset(e) => e.into(),
            JobError::Cache(e) => e.into(),
            JobError::Head(e) => e.into(),
            JobError::Baseline(e) => e.into(),
            JobError::Report(e) => e.into(),
            JobError::Extract(e) => e.into(),
            e => CommandError::Job(e),
        }
    }
}

/// The CLI's rendering of a job's events: notices on stderr, epochs as a table on stdout.
#[derive(Debug, Default)]
pub(crate) struct Printer {
    header_done: bool,
}

impl Printer {
    /// Prints one event.
    pub(crate) fn event(&mut self, e: JobEvent) {
        match e {
            JobEvent::Notice(text) => eprintln!("{text}"),
            JobEvent::Epoch(m) => {
                if !self.header_done {
                    println!("{EPOCH_HEADER}");
                    self.header_done = true;
                }
                print_epoch(m);
            }
            JobEvent::Trained(r) => print_trained(r),
        }
    }
}

/// The header of the per-epoch table [`print_epoch`] fills.
const EPOCH_HEADER: &str =
    "epoch  train_loss  train_acc  select_loss  select_acc  val_loss  val_acc  seconds";

/// One row of the per-epoch table, as training reports it (`-` where there is no selection split).
fn print_epoch(m: &crate::head::EpochMetrics) {
    let opt = |v: Option<f64>, w: usize| v.map_or(format!("{:>w$}", "-"), |v| format!("{v:>w$.4}"));
    println!(
        "{:>5}  {:>10.4}  {:>9.4}  {}  {}  {:>8.4}  {:>7.4}  {:>7.2}",
        m.epoch,
        m.train_loss,
        m.train_acc,
        opt(m.select_loss, 11),
        opt(m.select_acc, 10),
        m.val_loss,
        m.val_acc,
        m.seconds
    );
}

/// A trained run's summary, folder and page, as train-head prints them.
pub(crate) fn print_trained(r: &TrainRunOutcome) {
    println!("{}", r.summary);
    println!("run written to {}", r.run_dir.display());
    match &r.page {
        Some(page) => println!("report: {}", page.display()),
        None => println!(
            "report: not written for a streamed run (the page needs the features in memory)"
        ),
    }
}

/// `SIZE` as bytes: a number with an optional `K`, `M`, `G` or `T` suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 512M or 8G, got {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("a size must be > 0, got {s:?}"));
    }
    Ok((v * (1u64 << shift) as f64) as u64)
}

/// A config value the library rejects is a bad flag: its field is the flag's name.
impl From<crate::extract::ExtractError> for CommandError {
    fn from(e: crate::extract::ExtractError) -> Self {
        match e {
            crate::extract::ExtractError::Config { field, reason } => {
                CommandError::Usage(format!("--{}: {reason}", field.replace('_', "-")))
            }
            e => CommandError::Extract(e),
        }
    }
}

/// Exit codes, documented in one place (README "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The command failed (bad input, missing runtime or model, I/O): the message says why.
    pub const FAILURE: i32 = 1;
    /// Bad command line: clap's own errors, and flag values no run can use.
    pub const USAGE: i32 = 2;
    /// `extract --strict` and some images were skipped.
    pub const SKIPPED_STRICT: i32 = 3;
}

/// `--device`: the CLI's names for [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA when it registers, else CPU (the fallback is reported).
    Auto,
    /// CUDA or an error, never a silent CPU run.
    Cuda,
    Cpu,
}

impl From<DeviceArg> for Device {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => Device::Auto,
            DeviceArg::Cuda => Device::Cuda,
            DeviceArg::Cpu => Device::Cpu,
        }
    }
}

/// Which trunk and where it runs: shared by every command that runs the trunk.
#[derive(Debug, Clone, clap::Args)]
pub struct TrunkArgs {
    /// Trunk ONNX model (default: models/vgg16_trunk.onnx under the project).
    #[arg(long, conflicts_with = "trunk")]
    pub model: Option<PathBuf>,
    /// Trunk by name, as `make model TRUNK=NAME` builds it: vgg16 (the default, ImageNet VGG16),
    /// vgg16-hed (edge-tuned VGG16), efficientnet-lite0; any other NAME is models/NAME.onnx.
    #[arg(long)]
    pub trunk: Option<String>,
    /// Execution provider: auto (CUDA if it registers, else CPU), cuda (or fail), cpu.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// CPU inference threads (0 = ONNX Runtime's default, one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, then the project .venv).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

impl TrunkArgs {
    /// The model file these options name.
    pub fn model_path(&self) -> Result<PathBuf, CommandError> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let root = crate::paths::project_root().ok_or_else(|| {
            CommandError::Input(
                "no project folder found to resolve the default model: pass --model PATH".into(),
            )
        })?;
        let name = self.trunk.as_deref().unwrap_or("vgg16_trunk");
        if name.contains('/') || name.contains("..") {
            return Err(CommandError::Usage(format!(
                "--trunk takes a name under models/, got {name:?}"
            )));
        }
        Ok(crate::paths::trunk_model(&root, name))
    }

    pub fn options(&self) -> TrunkOptions {
        TrunkOptions {
            ort_lib: self.ort_lib.clone(),
            device: self.device.into(),
            threads: self.threads,
            cuda_nhwc: std::env::var("VGGCACHE_CUDA_NHWC").is_ok_and(|v| v == "1"),
        }
    }
}
