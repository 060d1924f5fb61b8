//! The Parquet feature cache: crash-safe sharded writer, manifest, lock, and verified reader.
//!
//! Layout of a cache folder (default `cache/`):
//! ```text
//! cache/manifest.json                 the only truth: identity, classes, shard list with each
//!                                     shard's sha256, and its own checksum (replaced atomically)
//! cache/shard-g0001-000000.parquet    shards: path, split, label, class, content_hash, features;
//!                                     the footer records identity, classes and a data sha256
//! cache/pending/*.pending             shards written but not yet committed (never globbed)
//! cache/quarantine/*.quarantined      damaged or unadoptable files, moved here, never deleted
//! cache/skipped.csv                   files the last run could not use, with the reason
//! cache/vggcache.lock                 advisory lock (flock) held by the writer for its lifetime
//! ```
//! Every change (a new shard, rows removed, shards rewritten or merged) follows one order: new
//! Parquet files are written under `pending/` via a `.tmp` name, fsynced, renamed; then the
//! manifest is replaced atomically (temp, fsync, rename, fsync folder) by one that drops the old
//! files and records the change in `committing` (the new list, the files it retires); then the
//! old files are deleted; then the new ones are moved up into the cache folder; only then does
//! the manifest list them. A `*.parquet` glob therefore never sees a row twice, a reader
//! following the manifest (pyarrow, DuckDB) finds every file it lists at every moment (at worst
//! it misses the rows of an interrupted change until the next [`CacheWriter::open`] completes
//! it), and a run killed at any point loses at most its in-flight shard.
//!
//! Integrity: [`FeatureCache::open`] checks the manifest's checksum and every shard's size and
//! sha256 before decoding anything, validates decoded columns (no panics on malformed data) and
//! each label against the row's class name. Every corruption error names the file and the way
//! out ([`REPAIR`]). [`CacheWriter::open`] repairs instead: damaged shards go to `quarantine/`
//! and their images are extracted again; a lost or damaged manifest is rebuilt from the intact
//! shards (each verifies itself against the data sha256 in its footer).
//!
//! Decisions (the codec and row-group figures behind them: docs/BENCHMARKS.md section 6):
//!
//! - `features` is `FixedSizeList<Float32, D>` written PLAIN + LZ4_RAW, no dictionary, no statistics,
//!   row groups of 256 rows (the reader decodes row groups in parallel);
//!   `label` is nullable `uint32` (pyarrow, polars and DuckDB read it as an unsigned integer).
//! - A class list different from the cache's is accepted by rewriting: labels of existing rows are
//!   remapped by class name to the new (sorted) list in one atomic step; rows of a class that is no
//!   longer listed are dropped (their files are gone, or they will be extracted again).
//! - `force` rebuilds from empty in a staging manifest (`manifest.rebuild.json`) whose shards are
//!   named `*.parquet.staged`: the old cache stays intact, and is all that Parquet-globbing tools
//!   see, until [`CacheWriter::finish`] renames the manifest over the old one, deletes the old
//!   shards, then renames the new ones (in that order, never both sets visible).
//!   A `force` run that finds a staged rebuild of its own identity resumes it; a run without
//!   `force` whose identity matches the old cache abandons (deletes) it.
//! - A listed shard that is missing or corrupt is dropped by the writer (reported in
//!   [`CacheStats::dropped_shards`], moved to `quarantine/` when present; its images are
//!   extracted again); [`FeatureCache::open`] refuses such a cache with
//!   [`CacheError::MissingShard`] / [`CacheError::CorruptShard`].
//!
//! Inside, arrows run one way: [`CacheWriter`] (writer.rs) orchestrates a run through `open`
//! (pick and repair the manifest), `rewrite` (which rows survive a rewrite), `shard` (one file:
//! write, check, read) and `manifest` (the committed record), which rest on `schema` (columns by
//! name). [`FeatureCache`] (reader.rs) reads a committed cache through `shard` and `manifest`.
//! Every file replacement goes through [`crate::fsutil`].

mod index;
pub mod join;
mod lock;
mod manifest;
mod open;
pub mod parts;
mod reader;
mod rewrite;
mod schema;
mod shard;
mod writer;

pub use index::Existing;
pub use join::{FeatureSource, JoinError, JoinedCache, SourcePart};
pub use lock::CacheLock;
pub use manifest::{
    CacheIdentity, Manifest, ModelIdentity, PendingCommit, ShardInfo, FORMAT_VERSION,
};
pub use reader::{FeatureCache, SplitData, VerifyReport};
pub use schema::{
    cache_schema, cache_schema_views, cache_schema_with, Compression, FeatureDtype, FeatureRow,
    ViewedRow, WriteOptions, COL_VIEW, COL_VIEW_RECIPE,
};
pub use shard::{KV_CLASSES, KV_DATA_BYTES, KV_DATA_SHA256, KV_FINGERPRINT};
pub use writer::CacheWriter;

use std::path::{Path, PathBuf};

/// File name of the manifest inside a cache folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Staging manifest of a `force` rebuild, renamed over [`MANIFEST_FILE`] by `finish`.
pub const REBUILD_MANIFEST_FILE: &str = "manifest.rebuild.json";
/// Folder of shards written but not yet listed by the manifest (moved up by the commit).
pub const PENDING_DIR: &str = "pending";
/// Folder where damaged or unadoptable files are moved instead of being deleted.
pub const QUARANTINE_DIR: &str = "quarantine";
/// File name of the lock file inside a cache folder.
pub const LOCK_FILE: &str = "vggcache.lock";
/// File name of the skipped-files report inside a cache folder.
pub const SKIPPED_FILE: &str = "skipped.csv";
/// The feature cache folder a run reads or writes when none is named.
pub const DEFAULT_DIR: &str = "cache";

/// The feature cache that `path` is, or is inside of, if any: the nearest of `path` and its
/// ancestors up to the filesystem root (as written, and with symlinks resolved) that holds a
/// vggcache `manifest.json` or a sharded root's `plan.json`. Commands refuse output paths there.
pub fn enclosing_cache(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The deepest existing ancestor with symlinks resolved, plus the part not yet created.
    let resolved = absolute.ancestors().find_map(|a| {
        let real = a.canonicalize().ok()?;
        let rest = absolute.strip_prefix(a).ok()?;
        Some(real.join(rest))
    });
    [Some(absolute), resolved]
        .into_iter()
        .flatten()
        .find_map(|p| {
            p.ancestors()
                .find(|d| holds_cache(d))
                .map(Path::to_path_buf)
        })
}

/// True when `dir` holds a vggcache manifest or sharded plan (parsed just enough to tell).
fn holds_cache(dir: &Path) -> bool {
    let json = |name: &str| -> Option<serde_json::Value> {
        let bytes = std::fs::read(dir.join(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let manifest = json(MANIFEST_FILE).is_some_and(|v| {
        v.get("format_version").is_some() && v.get("shards").is_some() && v.get("dim").is_some()
    });
    manifest
        || json(parts::PLAN_KEY).is_some_and(|v| {
            v.get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| f.starts_with("vggcache-shard-plan"))
        })
}

/// What a writer did, returned by [`CacheWriter::finish`] and readable during the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    /// Rows in the cache at the end.
    pub rows: usize,
    /// Shards listed at the end.
    pub shards: usize,
    /// Bytes of all listed shards.
    pub bytes: u64,
    /// Rows written by `append_shard` in this run.
    pub appended: usize,
    /// Rows dropped: by `remove_paths`, replaced by `append_shard`, or of classes no longer listed.
    pub removed: usize,
    /// Rows whose label index changed because the class list changed.
    pub relabelled: usize,
    /// Leftovers of an interrupted run deleted by `open`: temp files, uncommitted shards under
    /// `pending/`, and unlisted shards whose every row is also in a listed shard (duplicates).
    pub cleaned_files: usize,
    /// Each of the [`CacheStats::cleaned_files`], with why it was deleted.
    pub cleaned: Vec<String>,
    /// Shards listed in the manifest but missing or damaged, dropped by `open` (damaged ones are
    /// moved to `quarantine/`; their images are no longer in [`CacheWriter::existing`], so they
    /// are extracted again), with the reason.
    pub dropped_shards: Vec<String>,
    /// Files `open` moved to `quarantine/` (damaged shards, a damaged manifest, unlisted shards
    /// it could not adopt), as their paths there.
    pub quarantined: Vec<PathBuf>,
    /// Rows of dropped shards: how many images must be extracted again.
    pub rows_to_redo: usize,
    /// Why the manifest was rebuilt from the shards (missing, or damaged and quarantined), if so.
    pub manifest_rebuilt: Option<String>,
    /// Intact shards of this identity that a rebuilt manifest adopted.
    pub adopted_shards: usize,
    /// Shards merged away by `finish`.
    pub compacted_shards: usize,
}

impl CacheStats {
    /// Counts the deleted file `path` in [`CacheStats::cleaned_files`] and notes why.
    pub(crate) fn note_cleaned(&mut self, path: &std::path::Path, why: &str) {
        self.cleaned_files += 1;
        self.cleaned.push(format!("{} ({why})", path.display()));
    }
}

/// The way out named by every corruption message.
pub const REPAIR: &str =
    "Way out: re-run `vggcache extract` on the same images and model (it moves \
damaged shards to quarantine/, rebuilds the manifest from intact shards and extracts only the \
missing images again), or pass --force to rebuild the cache from scratch";

/// The way out when a manifest lists a shard name that breaks the path rule.
pub const FIX_MANIFEST_ENTRY: &str = "The manifest was edited (its checksum recomputed) or \
written by another tool; nothing outside the cache was touched. Rebuild the cache with \
`vggcache extract --force` on the same images (or pull it again from a trusted copy)";

/// The way out when a listed shard's file resolves outside the cache through a symlink.
pub const FIX_SHARD_LINK: &str = "Nothing was read through it. Put the shard file itself in the \
cache folder instead of a symlink leading out of it (e.g. `cp --remove-destination TARGET LINK`), \
or rebuild the cache with `vggcache extract --force` on the same images";

/// [`CacheError::UnsafeEntry`] for a shard name of a manifest, with the way out that fits.
pub(crate) fn unsafe_shard(source: crate::safe_path::UnsafePath) -> CacheError {
    use crate::safe_path::UnsafePath;
    let fix = match source {
        UnsafePath::Escapes { .. } | UnsafePath::DanglingLink { .. } | UnsafePath::Io { .. } => {
            FIX_SHARD_LINK
        }
        _ => FIX_MANIFEST_ENTRY,
    };
    CacheError::UnsafeEntry { source, fix }
}

/// Errors of the feature cache. Messages name the path and what was expected vs found.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Parquet could not read or write a shard.
    #[error("{path}: Parquet error: {source}")]
    Parquet {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow could not build or read a batch.
    #[error("{path}: Arrow error: {source}")]
    Arrow {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The manifest cannot be parsed or breaks its invariants.
    #[error("{path}: manifest is not valid: {message}. {REPAIR}")]
    BadManifest {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No manifest under the path.
    #[error(
        "{path}: no feature cache here (no {MANIFEST_FILE}); run `vggcache extract` first (it \
         rebuilds a lost manifest from the shards it finds)"
    )]
    NotACache {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// The root of a sharded cache whose shards are not published yet.
    #[error(
        "{path}: a sharded cache (it holds {plan}) that is not committed yet (no \
         {MANIFEST_FILE}); once every shard has run, publish it with `vggcache cache commit {path}`"
    )]
    UncommittedRoot {
        /// The file or folder concerned.
        path: String,
        /// The plan file that marks the root.
        plan: &'static str,
    },
    /// A storage root with neither a manifest nor a plan (a wrong bucket or prefix, or a
    /// sharded cache not planned yet).
    #[error(
        "{url}: nothing published here (no {MANIFEST_FILE}, no plan.json): check the bucket and \
         prefix; a sharded cache appears here after `vggcache cache commit {url}`"
    )]
    NothingPublished {
        /// The storage URL concerned.
        url: String,
    },
    /// `cache commit` on a folder or prefix without a plan.
    #[error(
        "{url}: no plan.json, so not the root of a sharded cache: nothing to commit (a \
         one-machine `vggcache extract --out` cache needs no commit); a sharded cache starts with \
         `vggcache plan --images DIR --out {url} --shards N`"
    )]
    NotShardedRoot {
        /// The storage URL concerned.
        url: String,
    },
    /// A one-machine write aimed at the root of a sharded cache.
    #[error(
        "{path}: the root of a sharded cache (it holds {plan}); a one-machine extract would \
         replace its manifest and orphan its parts. Run its shards with `vggcache extract --plan \
         {path} --shard K/N`, then `vggcache cache commit {path}`; or extract into another --out"
    )]
    ShardedRoot {
        /// The file or folder concerned.
        path: String,
        /// The plan file that marks the root.
        plan: &'static str,
    },
    /// A cache format version this build cannot read.
    #[error(
        "{path}: cache format version {found} is not supported (this vggcache reads version \
         {expected}); re-run `vggcache extract` on the same images to upgrade a version-1 cache \
         (it adds checksums), or pass --force to rebuild it"
    )]
    UnsupportedFormat {
        /// The file or folder concerned.
        path: PathBuf,
        /// The format version this build reads.
        expected: u32,
        /// The version the manifest records.
        found: u32,
    },
    /// The cache was made with another trunk, preprocessing or D.
    #[error(
        "{path}: cache was made with {found}, but this run uses {expected}; \
         pass --force to rebuild it (the old cache is kept until the rebuild completes)"
    )]
    IdentityMismatch {
        /// The file or folder concerned.
        path: PathBuf,
        /// The identity of this run (trunk, preprocessing, D).
        expected: String,
        /// The identity the cache was made with.
        found: String,
    },
    /// Another process holds the cache lock.
    #[error(
        "{path}: cache is locked by another vggcache process ({holder}); \
         wait for it to finish or stop it (two runs cannot write one cache)"
    )]
    Locked {
        /// The file or folder concerned.
        path: PathBuf,
        /// Who holds the lock (host and pid).
        holder: String,
    },
    /// The manifest does not match its recorded checksum.
    #[error(
        "{path}: manifest fails its checksum (recorded {found}, content hashes to {expected}): \
         it was edited by hand or damaged. {REPAIR}"
    )]
    ManifestChecksum {
        /// The file or folder concerned.
        path: PathBuf,
        /// What the manifest content hashes to.
        expected: String,
        /// The checksum the manifest records.
        found: String,
    },
    /// A top-level shard file the manifest does not list.
    #[error(
        "{path}: shard file not listed by the manifest, yet a `*.parquet` glob reads it (a shard \
         dropped from an edited manifest, or a leftover of an interrupted run). {REPAIR}"
    )]
    UnlistedShard {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// A part a shard's commit record claims, left out of the manifest.
    #[error(
        "{record}: its shard committed part {part}, which manifest.json does not list (a manifest \
         edited by hand?): the cache would read fewer rows than it holds. Publish the manifest \
         again from the records: delete {root}/manifest.json and run `vggcache cache commit {root}`"
    )]
    UnlistedPart {
        /// The commit record that claims the part.
        record: PathBuf,
        /// The part's file.
        part: String,
        /// The cache root.
        root: PathBuf,
    },
    /// A listed shard file is missing.
    #[error("{path}: shard listed in the manifest is missing. {REPAIR}")]
    MissingShard {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// A shard fails its size, checksum or schema check.
    #[error("{path}: shard is corrupt: {message}. {REPAIR}")]
    CorruptShard {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Feature values beyond the range of f16.
    #[error(
        "{count} feature value(s) are beyond float16's range (|x| > 65504; the largest is {max}), \
         first in the row for {first}: this cache cannot store them as f16; extract with \
         --feature-dtype f32"
    )]
    F16Range {
        /// Values out of range.
        count: usize,
        /// The largest magnitude.
        max: f32,
        /// Path of the first row holding one.
        first: String,
    },
    /// The cache stores another feature dtype than the run asks for.
    #[error(
        "{path}: the cache stores {found} features, this run asks for {expected}; pass --force to \
         rebuild it as {expected} (the old cache is kept until the rebuild completes), or use \
         --feature-dtype {found}"
    )]
    DtypeMismatch {
        /// The file or folder concerned.
        path: PathBuf,
        /// The dtype this run asks for.
        expected: &'static str,
        /// The dtype the cache stores.
        found: &'static str,
    },
    /// A row that cannot be written (bad label, wrong width, duplicate path).
    #[error("row for {row_path}: {message}")]
    BadRow {
        /// Path of the row.
        row_path: String,
        /// What is wrong.
        message: String,
    },
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Shards of a plan without a commit record yet.
    #[error(
        "{url}: shard(s) {missing} of {shards} have no commit record yet; run `vggcache extract \
         --plan {url} --shard K/{shards}` for each (a finished shard exits 0 at once), then commit"
    )]
    Uncommitted {
        /// The storage URL concerned.
        url: String,
        /// The shards without a record.
        missing: String,
        /// Shards in the plan.
        shards: u32,
    },
    /// A commit record that cannot be parsed or does not match the plan.
    #[error("{url}: {message}")]
    BadRecord {
        /// The storage URL concerned.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A name recorded in a manifest, plan or record breaks the path rule
    /// ([`UnsafePath`](crate::storage::UnsafePath));
    /// nothing was read, written or moved for it.
    #[error("{source}. {fix}")]
    UnsafeEntry {
        /// The underlying error.
        #[source]
        source: crate::safe_path::UnsafePath,
        /// The one way out, for the file the entry came from.
        fix: &'static str,
    },
    /// A split with no rows in the cache.
    #[error("split '{split}' has no rows in cache {path} (splits present: {present})")]
    NoSuchSplit {
        /// The file or folder concerned.
        path: PathBuf,
        /// The split asked for.
        split: String,
        /// The splits the cache holds.
        present: String,
    },
}

impl From<crate::fsutil::FsError> for CacheError {
    fn from(e: crate::fsutil::FsError) -> Self {
        CacheError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl CacheError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.into();
        move |source| CacheError::Io { path, source }
    }

    pub(crate) fn pq(
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(parquet::errors::ParquetError) -> CacheError {
        let path = path.into();
        move |source| CacheError::Parquet { path, source }
    }

    pub(crate) fn arrow(
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(arrow::error::ArrowError) -> CacheError {
        let path = path.into();
        move |source| CacheError::Arrow { path, source }
    }
}
