//! Jobs: one library call per task (train a head, compare baselines, write a report page,
//! predict), each with a config whose `Default` is the only source of its defaults and whose
//! `check()` is the only validation, and a [`crate::events::Events`] sink for its progress,
//! notices and epochs (which can also stop it). The only place that wires cache, head, baseline and report
//! together; the CLI's commands parse flags into these configs and print what the jobs return.

pub mod compare;
pub mod page;
pub mod predict;
pub mod rows;
pub mod source;
pub mod train;

use std::path::{Path, PathBuf};

pub use compare::{compare, CompareConfig, CompareOutcome};
pub use page::{write_page, write_report, PageInputs, ReportConfig};
pub use predict::{predict, PredictConfig, PredictFormat, PredictOutcome};
pub use rows::{load_head, split_rows, train_val, Labelled, Rows};
pub use source::{open_features, Opened};
pub use train::{train, tta_proba, TrainConfig, TrainRunOutcome};

/// The feature cache a job reads when none is named.
pub const DEFAULT_CACHE: &str = crate::cache::DEFAULT_DIR;
/// Where `compare-baselines` writes when no output folder is named.
pub const DEFAULT_COMPARE_OUT: &str = "runs/compare";
/// Where train-head runs go when no runs folder is named.
pub const DEFAULT_RUNS_DIR: &str = "runs";

/// Errors of a job. Settings no run can use are [`JobError::is_usage`] (the CLI's exit 2).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The trunk failed (load, run, fingerprint).
    #[error(transparent)]
    Trunk(#[from] crate::trunk::TrunkError),
    /// The image folder could not be read.
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    /// The feature cache could not be opened or read.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// Training, loading or applying the head failed.
    #[error(transparent)]
    Head(#[from] crate::head::HeadError),
    /// Fitting a baseline failed.
    #[error(transparent)]
    Baseline(#[from] crate::baseline::BaselineError),
    /// Writing or reading a report failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Caches given together could not be joined (classes, missing images, splits, labels).
    #[error(transparent)]
    Join(#[from] crate::cache::JoinError),
    /// Extracting features (predict) failed.
    #[error(transparent)]
    Extract(#[from] crate::extract::ExtractError),
    /// An output path inside a feature cache, where it could replace the manifest or a shard.
    #[error(
        "{flag} {}: that is inside the feature cache {} (it holds the cache's manifest or \
         plan, which an output there could overwrite); write the output outside the cache, \
         e.g. {flag} reports/",
        out.display(),
        cache.display()
    )]
    OutInCache {
        /// The setting's flag name.
        flag: &'static str,
        /// The output path given.
        out: PathBuf,
        /// The cache that encloses it.
        cache: PathBuf,
    },
    /// Logistic regression's C is not a positive number.
    #[error("--C must be > 0, got {c}")]
    BadC {
        /// The value given.
        c: f64,
    },
    /// A hold-out fraction outside [0, 1).
    #[error("--val-fraction must be in [0, 1), got {value}")]
    BadValFraction {
        /// The value given.
        value: f64,
    },
    /// A run name that is not a plain folder name.
    #[error("--name must be a plain folder name, got {name:?}")]
    BadRunName {
        /// The name given.
        name: String,
    },
    /// One fold of out-of-fold fits (0 or at least 2 are usable).
    #[error("--folds must be 0 (no label review) or at least 2")]
    BadFolds,
    /// The run folder to write exists already.
    #[error("run folder {} already exists: pick another --name", dir.display())]
    RunExists {
        /// The run folder.
        dir: PathBuf,
    },
    /// A hold-out fraction other than the head's own on a cache without val split.
    #[error(
        "cache {} has no val split and --val-fraction {value} is not the hold-out head {} was \
         trained with (--val-fraction {own}): its score would count rows it trained on; \
         leave --val-fraction out to use the head's",
        features.display(),
        run.display()
    )]
    HoldoutMismatch {
        /// The feature cache.
        features: PathBuf,
        /// The fraction given.
        value: f64,
        /// The head's run folder.
        run: PathBuf,
        /// The fraction the head was trained with.
        own: f64,
    },
    /// The cache has no train split.
    #[error("cache {} has no `train` split (splits: {splits}); nothing to train on", cache.display())]
    NoTrainSplit {
        /// The cache folder.
        cache: PathBuf,
        /// The splits it has, comma-separated.
        splits: String,
    },
    /// `--tta` on a cache without test-time views of the images it scores.
    #[error(
        "cache {}: --tta averages over the cached test-time views, but none of the {split} \
         images has one. Add them with `vggcache extract --tta-views` on the same images and \
         cache (only the missing views are extracted), or leave --tta out",
        cache.display()
    )]
    NoTtaViews {
        /// The cache folder.
        cache: PathBuf,
        /// The split scored.
        split: &'static str,
    },
    /// `--logistic-views all` on a cache without augmented views of its train images.
    #[error(
        "cache {}: --logistic-views all fits on the cached augmented views of the train images, \
         but it has none. Add them with `vggcache extract --views K` on the same images and \
         cache (only the new views are extracted), or leave --logistic-views out",
        cache.display()
    )]
    NoAugViews {
        /// The cache folder.
        cache: PathBuf,
    },
    /// The cache's train split has no labelled row.
    #[error("cache {}: the train split has no labelled rows", cache.display())]
    NoLabelledTrain {
        /// The cache folder.
        cache: PathBuf,
    },
    /// No val split, and the hold-out fraction holds out no row.
    #[error("cache {}: no val split and --val-fraction {val_fraction} holds out no row", cache.display())]
    EmptyHoldout {
        /// The cache folder.
        cache: PathBuf,
        /// The hold-out fraction.
        val_fraction: f64,
    },
    /// A folder without `head.safetensors`.
    #[error("{} is not a train-head run: {} is missing", run.display(), file.display())]
    NotARun {
        /// The folder given.
        run: PathBuf,
        /// The checkpoint expected in it.
        file: PathBuf,
    },
    /// A run that does not record its cache, and none given.
    #[error("run {} does not record its cache: pass --features", run.display())]
    RunWithoutCache {
        /// The run folder.
        run: PathBuf,
    },
    /// A head trained on features of another trunk than the cache or model given.
    #[error(
        "head {} was trained on features of another trunk (fingerprint {}) than {what} ({want}): \
         use the trunk it was trained with (--model or --trunk)",
        run.display(),
        got.as_deref().unwrap_or("unrecorded")
    )]
    OtherTrunk {
        /// The head's run folder.
        run: PathBuf,
        /// The trunk fingerprint the head recorded, if any.
        got: Option<String>,
        /// The fingerprint of the trunk given.
        want: String,
        /// What carries it: `cache DIR` or `model FILE`.
        what: String,
    },
    /// Joined caches with `--stream` or over the memory budget: a join is read into memory.
    #[error(
        "the joined features take {:.2} GB{}; joined caches (--features given twice) are read \
         into memory, not streamed: {}",
        *need as f64 / 1e9,
        if *asked { "" } else { ", over the memory budget (--memory-budget)" },
        if *asked {
            "leave out --stream"
        } else {
            "raise --memory-budget, or train on one --features (which streams)"
        }
    )]
    JoinedStream {
        /// Bytes the joined train and val features take.
        need: u64,
        /// Whether `--stream` asked for it (else the budget chose it).
        asked: bool,
    },
    /// `--tta` (or `--logistic-views all`) with caches joined by content hash: a join pairs
    /// plain views only.
    #[error(
        "--{flag} reads a cache's {kind} views, and caches joined by content hash \
         (--features given {caches} times) pair plain views only: use one --features for \
         --{flag}, or leave --{flag} out"
    )]
    JoinedViews {
        /// The flag given ("tta", "logistic-views").
        flag: &'static str,
        /// The views it reads ("test-time", "augmented").
        kind: &'static str,
        /// Caches joined.
        caches: usize,
    },
    /// A head trained on joined caches given to a job that runs one trunk.
    #[error(
        "head {} was trained on the features of {trunks} trunks joined by content hash ({provenance}); \
         {job} runs one trunk and cannot make its input: use a head trained on one --features \
         (`vggcache train-head --features CACHE`) for {job}",
        run.display()
    )]
    JoinedHead {
        /// The head's run folder.
        run: PathBuf,
        /// How many trunks it records.
        trunks: String,
        /// Their provenance, joined by `+`.
        provenance: String,
        /// The job refused (`predict`, `export --with-trunk`).
        job: &'static str,
    },
    /// Kaggle's format with a head of other than 2 classes.
    #[error("--format kaggle needs a 2-class head, this one has {classes}")]
    KaggleClasses {
        /// The head's class count.
        classes: usize,
    },
    /// A head and a cache of different feature widths.
    #[error("head expects {head_dim} features, cache {} has {cache_dim}", cache.display())]
    DimMismatch {
        /// The head's input width.
        head_dim: usize,
        /// The cache folder.
        cache: PathBuf,
        /// The cache's feature width.
        cache_dim: usize,
    },
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// `reading`, `writing`, ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl JobError {
    /// Whether this is a setting no run can use (the CLI's exit 2), not a failure of the data.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            JobError::OutInCache { .. }
                | JobError::BadC { .. }
                | JobError::BadValFraction { .. }
                | JobError::BadRunName { .. }
                | JobError::BadFolds
                | JobError::JoinedStream { asked: true, .. }
                | JobError::JoinedViews { .. }
                | JobError::Head(crate::head::HeadError::Config { .. })
                | JobError::Extract(crate::extract::ExtractError::Config { .. })
                | JobError::Extract(crate::extract::ExtractError::Unreconciled { .. })
        )
    }

    /// Whether the job stopped because its [`crate::events::Events::cancelled`] said so (the
    /// extraction's or the head training's `Interrupted`): a Python front end raises
    /// `KeyboardInterrupt` for it. Everything cached before the stop is intact.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            JobError::Head(crate::head::HeadError::Interrupted { .. })
                | JobError::Extract(crate::extract::ExtractError::Interrupted { .. })
        )
    }

    /// A failed [`crate::fsutil::write_atomic`] of an output file.
    pub(crate) fn writing(e: crate::fsutil::FsError) -> JobError {
        JobError::Io {
            what: "writing",
            path: e.path,
            source: e.source,
        }
    }
}

/// Refuses an output path (setting `flag`'s value `out`) inside a feature cache: an output
/// written there could replace `manifest.json` or a shard.
pub fn refuse_out_in_cache(flag: &'static str, out: &Path) -> Result<(), JobError> {
    match crate::cache::enclosing_cache(out) {
        Some(cache) => Err(JobError::OutInCache {
            flag,
            out: out.to_path_buf(),
            cache,
        }),
        None => Ok(()),
    }
}

/// The memory budget of a run: `given`, else half of the machine's RAM (8 GiB when unknown).
pub fn memory_budget(given: Option<u64>) -> u64 {
    given.unwrap_or_else(|| crate::sysmem::total_memory().map_or(8 << 30, |m| m / 2))
}
