//! Extraction: images → trunk → feature cache, as a library call ([`run`]) that `extract`,
//! `predict` and sharded runs all make. Commands build an [`ExtractConfig`]; the engine plans the
//! work against the cache ([`Plan`]), runs it and returns an [`ExtractSummary`].
//!
//! One way inside: config → plan → engine (→ progress) → summary.

mod config;
mod engine;
mod plan;
mod progress;
pub mod sharded;
pub mod skipped;
mod summary;

use std::path::PathBuf;

pub use config::ExtractConfig;
pub use engine::run;
pub use plan::{Delta, Plan};
pub use summary::{ExtractSummary, TrunkTiming};

/// Why an extraction run failed. Rows already committed stay valid in every case.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A setting of [`ExtractConfig`] that no run can start with (`field` is its name).
    #[error("{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Trunk(#[from] crate::trunk::TrunkError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("writing {0}")]
    Write(#[from] crate::fsutil::FsError),
    /// Nothing in the folder could be cached (every image skipped, reasons in `skipped_csv`).
    #[error("no image of {} could be used ({skipped} skipped, reasons in {})", images.display(), skipped_csv.display())]
    NothingUsable {
        images: PathBuf,
        skipped: usize,
        skipped_csv: PathBuf,
    },
}
