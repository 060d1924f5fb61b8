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
    /// A shard run's trunk is not the one its plan was made with.
    #[error(
        "{plan} was planned with {planned}, but this run's trunk is {given}: every shard must \
         use the plan's model; run the shard with `--model {model}` (or that file's copy on \
         this machine)"
    )]
    PlanModel {
        plan: String,
        planned: String,
        given: String,
        model: String,
    },
    /// `cache commit` refused: the shards' rows and recorded skips do not account for every
    /// planned image exactly once (`details` names the missing, doubled or unplanned images).
    #[error(
        "{url}: not committed, the shards' rows and skips do not match the plan ({planned} \
         images): {details}. Nothing was published. {fix}"
    )]
    Unreconciled {
        url: String,
        planned: usize,
        details: String,
        fix: String,
    },
    /// The caller asked the run to stop ([`crate::events::Events::cancelled`]): `done` of the
    /// `total` images planned were extracted (or skipped) and committed before it stopped.
    #[error(
        "extraction stopped at the caller's request after {done} of {total} images; the rows \
         written so far are committed and the cache is valid: run the same extraction again to \
         extract the rest"
    )]
    Interrupted { done: usize, total: usize },
    /// Nothing in the folder could be cached (every image skipped, reasons in `skipped_csv`).
    #[error("no image of {} could be used ({skipped} skipped, reasons in {})", images.display(), skipped_csv.display())]
    NothingUsable {
        images: PathBuf,
        skipped: usize,
        skipped_csv: PathBuf,
    },
}
