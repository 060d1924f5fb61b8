//! Progress and notices of the library's jobs, handed to the caller's [`Events`] sink: the library never prints.
//!
//! A job (e.g. [`crate::extract::run`], [`crate::jobs::train()`]) takes `&dyn Events` and reports
//! what it plans, each step of its progress, every image it skips, what it repaired, each training
//! epoch and when it finished. The CLI renders these (a bar on a terminal, plain lines otherwise);
//! [`Silent`] drops them; a notebook or a Ray task brings its own sink. The same sink can stop a
//! job: [`Events::cancelled`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a job's events go. Called from any of the job's threads, one event at a time per call;
/// the job waits while the sink handles an event, so a sink should return quickly.
pub trait Events: Send + Sync {
    /// Handles one event.
    fn event(&self, e: &Event);

    /// Whether the caller wants the running job to stop (default: never). Polled on the thread
    /// that called the job: by extraction before it hands out each batch, by head training
    /// before each epoch and each mini-batch. Once it returns true the job stops at the next
    /// poll and returns its `Interrupted` error ([`crate::extract::ExtractError::Interrupted`],
    /// [`crate::head::HeadError::Interrupted`]). Nothing cached is lost: an extraction commits
    /// the batches already handed out before it returns (a shard run keeps the parts it
    /// finished), so the cache stays valid and a re-run extracts only the rest; training writes
    /// nothing. A Python front end answers with `PyErr_CheckSignals` (Ctrl-C); a sink should
    /// answer quickly.
    fn cancelled(&self) -> bool {
        false
    }
}

/// One thing a job reports while it runs. New kinds may be added: match with a `_` arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The trunk is loaded and runs on the execution provider `name`; `cuda_fallback` says why
    /// CUDA was asked for but not used.
    Provider {
        /// The provider's ONNX Runtime name, e.g. `CPUExecutionProvider`.
        name: String,
        /// Why CUDA was not used (`None`: it was used, or not asked for).
        cuda_fallback: Option<String>,
    },
    /// The images folder was scanned.
    Scanned {
        /// Images found.
        images: usize,
        /// The folder scanned.
        root: PathBuf,
        /// Its layout (`image_folder`, `flat_classes`, `kaggle_names` or `unlabelled`).
        layout: String,
        /// The class names, in label order (empty: unlabelled).
        classes: Vec<String>,
        /// Files skipped while scanning (each also gets a [`Event::Skipped`]).
        skipped: usize,
    },
    /// The work against the cache, decided before any image goes through the trunk.
    Planned {
        /// Images to run through the trunk (the total of the [`Event::Batch`] steps that follow).
        images: usize,
        /// Cached rows kept as they are.
        reused: usize,
        /// Stale cached rows dropped (their file is gone, unreadable or changed).
        removed: usize,
        /// Cached rows moved to another split.
        moved: usize,
    },
    /// A step of the extraction phase: `images` more images done (extracted or skipped), `done`
    /// of `total` so far. A phase opens with a step of `done: 0, images: 0` (when it starts,
    /// before any image is decoded); its steps add up to its `total`. A sharded run has one
    /// phase per part it extracts.
    Batch {
        /// Images done in this phase so far, this step included.
        done: usize,
        /// Images of this phase.
        total: usize,
        /// Images done by this step.
        images: usize,
    },
    /// An image the run cannot use (it is listed in the cache's skipped file with `reason`).
    Skipped {
        /// The image's path relative to the images folder.
        path: String,
        /// Why it was skipped.
        reason: String,
    },
    /// Files deleted while opening the cache: leftovers of interrupted runs.
    Deleted {
        /// Each deleted file with why, as `path (reason)`.
        files: Vec<String>,
    },
    /// Something opening the cache repaired.
    Repaired(Repair),
    /// A notice that fits no other kind: what the job decided or is doing now, as text.
    Notice(String),
    /// Head training starts: `epochs` at most (patience may stop it earlier); an
    /// [`Event::Epoch`] follows for each epoch run.
    Training {
        /// The epoch cap.
        epochs: usize,
    },
    /// One finished training epoch.
    Epoch(EpochMetrics),
    /// A head a job trained on its own (compare-baselines without a given head): its run folder,
    /// summary table and report page.
    Trained {
        /// The run folder written.
        run_dir: PathBuf,
        /// The summary table on the val split.
        summary: String,
        /// The report page; `None` for a streamed run (the page needs the features in memory).
        page: Option<PathBuf>,
    },
    /// The job ended without an error.
    Finished {
        /// Images this run extracted (rows it wrote).
        extracted: usize,
        /// Images this run skipped.
        skipped: usize,
    },
}

/// What opening a cache repaired (see [`crate::cache::CacheStats`]); nothing is dropped or moved
/// without one of these.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Repair {
    /// The manifest was rebuilt from the intact shards (`adopted` of them) because of `why`.
    ManifestRebuilt {
        /// Intact shards the rebuilt manifest lists.
        adopted: usize,
        /// Why the manifest was rebuilt.
        why: String,
    },
    /// A listed shard was missing or damaged and was dropped (`detail` says which and why).
    ShardDropped {
        /// The shard and the reason.
        detail: String,
    },
    /// Files moved to the cache's `quarantine/` folder (kept, not deleted).
    Quarantined {
        /// Their paths in `quarantine/`.
        files: Vec<PathBuf>,
    },
    /// Images of dropped shards that this run extracts again.
    Redo {
        /// How many.
        images: usize,
    },
}

/// What one epoch of head training measured (also `crate::head::EpochMetrics`, and the rows of
/// a run's history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch
    pub epoch: usize,
    /// mean train loss over the epoch's minibatches (train mode, with dropout)
    pub train_loss: f64,
    /// train accuracy of those same train-mode logits
    pub train_acc: f64,
    /// val loss in eval mode after the epoch
    pub val_loss: f64,
    /// val accuracy in eval mode after the epoch
    pub val_acc: f64,
    /// loss on the selection split carved from train (eval mode), when there is one: the kept
    /// epoch's criterion
    #[serde(default)]
    pub select_loss: Option<f64>,
    /// accuracy on the selection split, when there is one
    #[serde(default)]
    pub select_acc: Option<f64>,
    /// wall seconds of the epoch's training steps (val evaluation excluded, as in the PyTorch peer)
    pub seconds: f64,
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Events for Silent {
    fn event(&self, _: &Event) {}
}
