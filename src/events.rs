//! Progress and notices of the library's jobs, handed to the caller's [`Events`] sink: the library never prints.
//!
//! A job (e.g. [`crate::extract::run`]) takes `&dyn Events` and reports what it plans, each step
//! of its progress, every image it skips, what it repaired and when it finished. The CLI renders
//! these on stderr (a bar on a terminal, plain lines otherwise); [`Silent`] drops them; a notebook
//! or a Ray task brings its own sink.

use std::path::PathBuf;

/// Where a job's events go. Called from any of the job's threads, one event at a time per call;
/// the job waits while the sink handles an event, so a sink should return quickly.
pub trait Events: Send + Sync {
    /// Handles one event.
    fn event(&self, e: &Event);
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
    /// A notice that fits no other kind, as one line of text.
    Notice(String),
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

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Events for Silent {
    fn event(&self, _: &Event) {}
}
