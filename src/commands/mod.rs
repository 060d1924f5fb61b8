//! Subcommands: the only place that wires dataset, trunk, cache, head, baseline and report together.

pub mod doctor;

use std::path::PathBuf;

/// Errors a command reports to the user (rendered by `main`, which maps them to exit codes).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Trunk(#[from] crate::trunk::TrunkError),
    #[error("{0}")]
    Usage(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Exit codes, documented in one place (README "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The command failed (bad input, missing runtime or model, I/O): the message says why.
    pub const FAILURE: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// `extract --strict` and some images were skipped.
    pub const SKIPPED_STRICT: i32 = 3;
}
