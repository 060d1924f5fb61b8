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
pub use plan::{Delta, Plan, ViewDelta, ViewItem, ViewSettings};
pub use summary::{ExtractSummary, TrunkTiming};

/// Why an extraction run failed. Rows already committed stay valid in every case.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A setting of [`ExtractConfig`] that no run can start with (`field` is its name).
    #[error("{field}: {reason}")]
    Config {
        /// The setting's name.
        field: &'static str,
        /// What was expected and what was found.
        reason: String,
    },
    #[error(transparent)]
    /// The image folder could not be read.
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    /// The trunk failed (load, contract, run).
    Trunk(#[from] crate::trunk::TrunkError),
    #[error(transparent)]
    /// The feature cache could not be opened, read or written.
    Cache(#[from] crate::cache::CacheError),
    #[error("writing {0}")]
    /// A file of the run (the skipped list) could not be written.
    Write(#[from] crate::fsutil::FsError),
    /// A shard run's trunk is not the one its plan was made with.
    #[error(
        "{plan} was planned with {planned}, but this run's trunk is {given}: every shard must \
         use the plan's model; run the shard with `--model {model}` (or that file's copy on \
         this machine)"
    )]
    PlanModel {
        /// The plan's root.
        plan: String,
        /// The trunk the plan was made with.
        planned: String,
        /// This run's trunk.
        given: String,
        /// The model file to pass.
        model: String,
    },
    /// `cache commit` refused: the shards' rows and recorded skips do not account for every
    /// planned image exactly once (`details` names the missing, doubled or unplanned images).
    #[error(
        "{url}: not committed, the shards' rows and skips do not match the plan ({planned} \
         images): {details}. Nothing was published. {fix}"
    )]
    Unreconciled {
        /// The sharded cache's root.
        url: String,
        /// Images in the plan.
        planned: usize,
        /// The missing, doubled or unplanned images.
        details: String,
        /// What to run to fix it.
        fix: String,
    },
    /// The caller asked the run to stop ([`crate::events::Events::cancelled`]): `done` of the
    /// `total` images planned were extracted (or skipped) and committed before it stopped.
    #[error(
        "extraction stopped at the caller's request after {done} of {total} images; the rows \
         written so far are committed and the cache is valid: run the same extraction again to \
         extract the rest"
    )]
    Interrupted {
        /// Images extracted or skipped (and committed) before the stop.
        done: usize,
        /// Images the run planned to extract.
        total: usize,
    },
    /// Nothing in the folder could be cached (every image skipped, reasons in `skipped_csv`).
    #[error("no image of {} could be used ({skipped} skipped, reasons in {})", images.display(), skipped_csv.display())]
    NothingUsable {
        /// The images folder.
        images: PathBuf,
        /// Images skipped.
        skipped: usize,
        /// The cache's skipped file, with the reasons.
        skipped_csv: PathBuf,
    },
}
