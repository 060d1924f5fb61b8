//! Subcommands of the `vggcache` binary: each parses its flags into a library config, calls one
//! library function (a [`crate::jobs`] job, or a cache or extract call) and prints the result.

pub mod cache;
pub mod cli;
pub mod compare;
pub mod doctor;
pub mod export;
pub mod extract;
pub mod models;
pub mod plan;
pub mod predict;
pub mod render;
pub mod report;
pub mod train_head;

mod args;
mod print;
mod progress;

pub use args::{parse_size, TrunkArgs};
pub(crate) use print::print_trained;

use std::path::PathBuf;

use crate::jobs::JobError;

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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
            CommandError::Store(
                crate::store::StoreError::BadName { .. }
                | crate::store::StoreError::Usage { .. }
                | crate::store::StoreError::UnknownTrunk { .. },
            ) => exit::USAGE,
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
