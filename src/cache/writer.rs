//! The crash-safe cache writer: lock, identity check, repair (quarantine, manifest rebuild),
//! shard append/rewrite.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::UInt32Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use rayon::prelude::*;

use super::lock::CacheLock;
use super::manifest::{CacheIdentity, Manifest, ShardInfo};
use super::reader::{check_shard, check_unlisted};
use super::schema::{
    cache_schema, to_batch, Columns, WriteOptions, COL_CLASS, COL_LABEL, COL_SPLIT,
};
use super::shard::{
    pending_path, sha256_prefix, shard_places, staged_path, HashingWriter, KV_CLASSES,
    KV_DATA_BYTES, KV_DATA_SHA256, KV_FINGERPRINT,
};
use super::{CacheError, MANIFEST_FILE, QUARANTINE_DIR, REBUILD_MANIFEST_FILE, SKIPPED_FILE};
use crate::fsutil::{self, write_atomic_with};

/// One image's features, as handed to [`CacheWriter::append_shard`].
#[derive(Debug, Clone, Copy)]
pub struct FeatureRow<'a> {
    /// Path relative to the images folder; unique within the cache.
    pub path: &'a str,
    pub split: &'a str,
    /// Index into the writer's class list; `None` for unlabelled images.
    pub label: Option<u32>,
    /// `classes[label]`, or `None` (filled in from the label); must be `None` when `label` is.
    pub class: Option<&'a str>,
    /// Hash of the image file's bytes (hex).
    pub content_hash: &'a str,
    /// `(dim,)`, finite.
    pub features: &'a [f32],
}

/// What a writer did, returned by [`CacheWriter::finish`] and readable during the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    /// Rows in the cache at the end.
    pub rows: usize,
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

/// Writes a cache, holding its lock for its lifetime. See the module docs for the on-disk order of
/// operations that makes every step crash-safe.
pub struct CacheWriter {
    dir: PathBuf,
    options: WriteOptions,
    /// The manifest this writer maintains (the main one, or the staging one of a rebuild).
    manifest: Manifest,
    manifest_file: &'static str,
    /// During a `force` rebuild: the shards of the old main manifest, deleted by `finish`.
    old_main: Option<Vec<ShardInfo>>,
    existing: HashMap<String, String>,
    /// Path → split of its row.
    splits: HashMap<String, String>,
    /// Path → shard file holding its row.
    location: HashMap<String, String>,
    stats: CacheStats,
    _lock: CacheLock,
}

impl std::fmt::Debug for CacheWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWriter")
            .field("dir", &self.dir)
            .field("manifest_file", &self.manifest_file)
            .field("rows", &self.existing.len())
            .finish()
    }
}

/// Unlisted shards a rebuilt manifest may adopt, with their rows.
type Adoptable = Vec<(ShardInfo, super::reader::ShardMeta)>;

/// Replacement shard per rewritten file (`None`: no row survived).
type Rewrites = HashMap<String, Option<ShardInfo>>;

/// What to do with one existing row when a shard is rewritten.
enum RowFate {
    Keep(Option<u32>),
    Drop,
}

impl CacheWriter {
    /// [`CacheWriter::open_with`] with the default [`WriteOptions`].
    pub fn open(
        dir: &Path,
        identity: &CacheIdentity,
        classes: &[String],
        force: bool,
    ) -> Result<CacheWriter, CacheError> {
        Self::open_with(dir, identity, classes, force, WriteOptions::default())
    }

    /// Opens (or creates) the cache in `dir` for writing.
    ///
    /// - Takes the exclusive lock; a second writer (or a reader) holding it → [`CacheError::Locked`] at once.
    /// - A cache of another identity → [`CacheError::IdentityMismatch`] naming both, unless
    ///   `force`: then a rebuild from empty is staged beside the old cache (which stays intact
    ///   and readable) and swapped in by [`CacheWriter::finish`]; a `force` run that finds a staged
    ///   rebuild of this same identity resumes it.
    /// - Repairs, and says so in [`CacheStats`]: finishes moves an interrupted commit left half
    ///   done; deletes what was never committed (`*.tmp`, `pending/`, unlisted `*.staged`);
    ///   drops listed shards that are missing and moves damaged ones to `quarantine/` (their rows
    ///   are to be extracted again); a missing or damaged manifest (moved to `quarantine/`) is
    ///   rebuilt from the intact, self-checking shards of this identity; other unlisted shards
    ///   are deleted when every row is a duplicate of a listed one, else quarantined.
    /// - `classes` different from the cache's: existing labels are remapped by class name in one
    ///   atomic rewrite; rows of classes not in `classes` are dropped.
    pub fn open_with(
        dir: &Path,
        identity: &CacheIdentity,
        classes: &[String],
        force: bool,
        options: WriteOptions,
    ) -> Result<CacheWriter, CacheError> {
        assert!(identity.dim > 0, "feature dim must be positive");
        fs::create_dir_all(dir).map_err(CacheError::io(dir))?;
        let lock = CacheLock::exclusive(dir)?;
        let main_path = dir.join(MANIFEST_FILE);
        let staged_path = dir.join(REBUILD_MANIFEST_FILE);
        let mut stats = CacheStats::default();
        let main = match Manifest::load(&main_path) {
            Ok(None) if has_top_level_shards(dir)? => {
                stats.manifest_rebuilt = Some(format!("{MANIFEST_FILE} was missing"));
                None
            }
            Ok(m) => m,
            // A manifest that fails its checksum or does not parse is kept in quarantine/ and
            // rebuilt from the intact shards (a `force` run starts from empty instead).
            Err(e @ (CacheError::ManifestChecksum { .. } | CacheError::BadManifest { .. })) => {
                let moved = quarantine(dir, &main_path)?;
                stats.quarantined.push(moved);
                stats.manifest_rebuilt = Some(e.to_string());
                None
            }
            Err(_) if force => None,
            Err(e) => return Err(e),
        };
        let staged = Manifest::load(&staged_path).ok().flatten();
        let fingerprint = identity.fingerprint();
        let matches = |m: &Manifest| m.identity().fingerprint() == fingerprint;
        let compression = options.compression.name();

        let (mut manifest, manifest_file, old_main) = match (&main, force) {
            (Some(m), false) if matches(m) => (m.clone(), MANIFEST_FILE, None),
            (Some(m), false) => {
                return Err(CacheError::IdentityMismatch {
                    path: dir.to_path_buf(),
                    expected: identity.describe(),
                    found: m.identity().describe(),
                });
            }
            (None, false) => {
                let gen = staged.as_ref().map_or(1, |s| s.generation + 1);
                let m = Manifest::new(identity, classes, gen, compression, options.row_group_rows);
                (m, MANIFEST_FILE, None)
            }
            (_, true) => {
                let old_gen = main.as_ref().map_or(0, |m| m.generation);
                match staged.as_ref().filter(|s| matches(s)) {
                    Some(s) => (s.clone(), REBUILD_MANIFEST_FILE, Some(old_shards(&main))),
                    None => {
                        let gen = old_gen.max(staged.as_ref().map_or(0, |s| s.generation)) + 1;
                        let m = Manifest::new(
                            identity,
                            classes,
                            gen,
                            compression,
                            options.row_group_rows,
                        );
                        if main_path.exists() {
                            (m, REBUILD_MANIFEST_FILE, Some(old_shards(&main)))
                        } else {
                            (m, MANIFEST_FILE, None)
                        }
                    }
                }
            }
        };
        // Record where the model is now (the fingerprint, not the path, decides reuse).
        manifest.model = identity.model.clone();
        manifest.fingerprint = fingerprint.clone();
        if manifest_file == MANIFEST_FILE && staged_path.exists() {
            // A staged rebuild that this run does not continue: abandon it.
            fs::remove_file(&staged_path).map_err(CacheError::io(&staged_path))?;
        }

        let rebuild = main.is_none() && !force && manifest_file == MANIFEST_FILE;
        let mut writer = CacheWriter {
            dir: dir.to_path_buf(),
            options,
            manifest,
            manifest_file,
            old_main,
            existing: HashMap::new(),
            splits: HashMap::new(),
            location: HashMap::new(),
            stats,
            _lock: lock,
        };
        // Superseded and stray files leave the folder before committed shards that an
        // interrupted commit left under `pending/` move up: never both visible.
        writer.load_existing()?;
        writer.unlisted_shards(rebuild)?;
        writer.clean_leftovers()?;
        if writer.manifest.classes != classes {
            writer.change_classes(classes)?;
        }
        writer.store()?;
        Ok(writer)
    }

    /// Path → content hash of every row in the cache (what a re-run can skip).
    pub fn existing(&self) -> &HashMap<String, String> {
        &self.existing
    }

    /// Gives cached rows a new split (a split is a function of the path and the split options,
    /// so a re-run with other options re-assigns rows instead of keeping the old split): the
    /// affected shards are rewritten and listed in one manifest replacement. Paths not cached
    /// or already in that split are ignored. Returns how many rows changed split.
    pub fn set_splits(&mut self, splits: &HashMap<String, String>) -> Result<usize, CacheError> {
        let changed: HashMap<String, String> = splits
            .iter()
            .filter(|(p, s)| self.splits.get(*p).is_some_and(|old| old != *s))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let (new_infos, old_files) =
            self.rewrite_holders(changed.keys(), |_, _, l| RowFate::Keep(l), &changed)?;
        let listed = self.apply_rewrites(new_infos, &old_files);
        self.commit(listed, &old_files)?;
        for (p, s) in &changed {
            self.splits.insert(p.clone(), s.clone());
        }
        Ok(changed.len())
    }

    /// The manifest as this writer last stored it.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What this writer has done so far.
    pub fn stats(&self) -> CacheStats {
        let mut s = self.stats.clone();
        s.rows = self.manifest.rows();
        s.shards = self.manifest.shards.len();
        s.bytes = self.manifest.shards.iter().map(|s| s.bytes).sum();
        s
    }

    /// Writes `rows` as one new shard and lists it in the manifest. A row whose path is already
    /// cached replaces the old row: the old shard is rewritten without it, and the rewrite and the
    /// new shard land in ONE manifest replacement (never both rows, never neither).
    pub fn append_shard(&mut self, rows: &[FeatureRow]) -> Result<(), CacheError> {
        self.append_shards(&[rows.to_vec()])
    }

    /// [`append_shard`](Self::append_shard) for several shards at once: they are encoded and written
    /// in parallel (Parquet encoding is the slow part of a write; one thread manages ~1,000 rows/s
    /// of 25,088 floats) and listed in ONE manifest replacement, so a crash lists all or none.
    /// Each inner slice becomes one shard; empty ones are ignored.
    pub fn append_shards(&mut self, shards: &[Vec<FeatureRow>]) -> Result<(), CacheError> {
        let shards: Vec<&Vec<FeatureRow>> = shards.iter().filter(|r| !r.is_empty()).collect();
        if shards.is_empty() {
            return Ok(());
        }
        let mut batches = Vec::with_capacity(shards.len());
        for rows in &shards {
            batches.push(to_batch(self.validate(rows)?, self.manifest.dim));
        }
        let mut all = HashSet::new();
        for r in shards.iter().flat_map(|s| s.iter()) {
            if !all.insert(r.path) {
                return Err(CacheError::BadRow {
                    row_path: r.path.to_string(),
                    message: "path appears twice in one append".into(),
                });
            }
        }
        let work: Vec<(String, RecordBatch)> =
            batches.into_iter().map(|b| (self.next_name(), b)).collect();
        let replaced: HashSet<String> = all
            .iter()
            .filter(|p| self.existing.contains_key(**p))
            .map(|p| p.to_string())
            .collect();
        let this = &*self;
        let infos: Vec<ShardInfo> = work
            .into_par_iter()
            .map(|(name, batch)| this.write_shard(&name, std::iter::once(Ok(batch))))
            .collect::<Result<_, _>>()?;
        let (new_infos, old_files) = self.rewrite_without(&replaced)?;
        let mut listed = self.apply_rewrites(new_infos, &old_files);
        listed.extend(infos.iter().cloned());
        self.commit(listed, &old_files)?;
        for (rows, info) in shards.iter().zip(&infos) {
            for r in rows.iter() {
                self.existing
                    .insert(r.path.to_string(), r.content_hash.to_string());
                self.splits.insert(r.path.to_string(), r.split.to_string());
                self.location.insert(r.path.to_string(), info.file.clone());
            }
            self.stats.appended += rows.len();
        }
        self.stats.removed += replaced.len();
        Ok(())
    }

    /// Drops the rows of `paths` (files gone or changed): affected shards are rewritten and
    /// listed in one manifest replacement. Returns how many rows were dropped.
    pub fn remove_paths(&mut self, paths: &HashSet<String>) -> Result<usize, CacheError> {
        let present: HashSet<String> = paths
            .iter()
            .filter(|p| self.existing.contains_key(p.as_str()))
            .cloned()
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        let (new_infos, old_files) = self.rewrite_without(&present)?;
        let shards = self.apply_rewrites(new_infos, &old_files);
        self.commit(shards, &old_files)?;
        for p in &present {
            self.existing.remove(p);
            self.splits.remove(p);
            self.location.remove(p);
        }
        self.stats.removed += present.len();
        Ok(present.len())
    }

    /// Writes `cache/skipped.csv` (header `path,reason`), replacing the previous run's list.
    pub fn write_skipped(&self, skipped: &[(String, String)]) -> Result<(), CacheError> {
        let path = self.dir.join(SKIPPED_FILE);
        let mut w = csv::Writer::from_writer(Vec::new());
        let csv_err = |e: csv::Error| CacheError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        };
        w.write_record(["path", "reason"]).map_err(csv_err)?;
        for (p, reason) in skipped {
            w.write_record([p, reason]).map_err(csv_err)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| CacheError::io(&path)(std::io::Error::other(e.to_string())))?;
        Ok(fsutil::write_atomic(&path, &bytes)?)
    }

    /// Merges runs of small neighbouring shards (fewer than `compact_below_rows` rows each) in
    /// one manifest replacement, completes a `force` rebuild by renaming its manifest over the
    /// main one (then deleting the old shards), and releases the lock.
    pub fn finish(mut self) -> Result<CacheStats, CacheError> {
        self.compact()?;
        if self.manifest_file == REBUILD_MANIFEST_FILE {
            // The manifest first (it lists the new shards, still named `*.staged`; `open` finishes
            // their renames after a crash), then the old shards go, then the new ones appear: a
            // kill never leaves both the old and the new rows visible to `*.parquet` readers.
            let staged = self.dir.join(REBUILD_MANIFEST_FILE);
            let main = self.dir.join(MANIFEST_FILE);
            fs::rename(&staged, &main).map_err(CacheError::io(&main))?;
            fsutil::sync_dir(&self.dir)?;
            self.manifest_file = MANIFEST_FILE;
            let live: HashSet<&str> = self
                .manifest
                .shards
                .iter()
                .map(|s| s.file.as_str())
                .collect();
            for old in self.old_main.take().unwrap_or_default() {
                if !live.contains(old.file.as_str()) {
                    fsutil::remove_if_exists(&self.dir.join(&old.file))?;
                }
            }
            fsutil::sync_dir(&self.dir)?;
            for s in &self.manifest.shards {
                let path = self.dir.join(&s.file);
                fs::rename(staged_path(&path), &path).map_err(CacheError::io(&path))?;
            }
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(self.stats())
    }

    // ---------------------------------------------------------------------------------------

    /// Checks rows against the manifest and packs them into columns.
    fn validate<'s>(&'s self, rows: &[FeatureRow<'s>]) -> Result<Columns<'s>, CacheError> {
        let dim = self.manifest.dim;
        let classes = &self.manifest.classes;
        let mut seen = HashSet::with_capacity(rows.len());
        let mut cols = Columns {
            paths: Vec::with_capacity(rows.len()),
            splits: Vec::with_capacity(rows.len()),
            labels: Vec::with_capacity(rows.len()),
            classes: Vec::with_capacity(rows.len()),
            hashes: Vec::with_capacity(rows.len()),
            features: Vec::with_capacity(rows.len() * dim),
        };
        for r in rows {
            let bad = |message: String| CacheError::BadRow {
                row_path: r.path.to_string(),
                message,
            };
            if !seen.insert(r.path) {
                return Err(bad("path appears twice in one shard".into()));
            }
            if r.features.len() != dim {
                return Err(bad(format!(
                    "expected {dim} features, got {}",
                    r.features.len()
                )));
            }
            if let Some(i) = r.features.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("feature {i} is {}", r.features[i])));
            }
            let class = match (r.label, r.class) {
                (None, None) => None,
                (None, Some(c)) => return Err(bad(format!("class '{c}' given without a label"))),
                (Some(l), c) => {
                    let Some(name) = classes.get(l as usize) else {
                        return Err(bad(format!(
                            "label {l} but the cache has {} classes",
                            classes.len()
                        )));
                    };
                    if c.is_some_and(|c| c != name) {
                        return Err(bad(format!(
                            "label {l} is class '{name}', the row says '{}'",
                            c.unwrap_or_default()
                        )));
                    }
                    Some(name.as_str())
                }
            };
            cols.paths.push(r.path);
            cols.splits.push(r.split);
            cols.labels.push(r.label);
            cols.classes.push(class);
            cols.hashes.push(r.content_hash);
            cols.features.extend_from_slice(r.features);
        }
        Ok(cols)
    }

    fn next_name(&mut self) -> String {
        let name = format!(
            "shard-g{:04}-{:06}.parquet",
            self.manifest.generation, self.manifest.next_seq
        );
        self.manifest.next_seq += 1;
        name
    }

    /// Writes `batches` as shard `name` where uncommitted shards live (`pending/name`, or
    /// `name.staged` during a rebuild: names `*.parquet` globbing never matches) through
    /// [`fsutil::write_atomic_with`]. The footer records the cache identity, the
    /// class list and the sha256 of the data before it; the returned entry the whole file's.
    fn write_shard(
        &self,
        name: &str,
        batches: impl Iterator<Item = Result<RecordBatch, CacheError>>,
    ) -> Result<ShardInfo, CacheError> {
        let path = self.write_path(name);
        let folder = path.parent().expect("shard path has a folder");
        fs::create_dir_all(folder).map_err(CacheError::io(folder))?;
        let schema = cache_schema(self.manifest.dim);
        let classes =
            serde_json::to_string(&self.manifest.classes).expect("class names serialise to JSON");
        let kv = vec![
            KeyValue::new(
                KV_FINGERPRINT.to_string(),
                self.manifest.fingerprint.clone(),
            ),
            KeyValue::new(KV_CLASSES.to_string(), classes),
        ];
        let props = self.options.properties(self.manifest.dim, kv);
        let (rows, bytes, sha256) = write_atomic_with(&path, |tmp, file| {
            let mut w = ArrowWriter::try_new(HashingWriter::new(file), schema, Some(props))
                .map_err(CacheError::pq(tmp))?;
            let mut rows = 0;
            for batch in batches {
                let batch = batch?;
                rows += batch.num_rows();
                w.write(&batch).map_err(CacheError::pq(tmp))?;
            }
            w.flush().map_err(CacheError::pq(tmp))?;
            w.sync().map_err(CacheError::io(tmp))?;
            let (data_sha, data_bytes) = w.inner().digest_so_far();
            w.append_key_value_metadata(KeyValue::new(KV_DATA_SHA256.to_string(), data_sha));
            w.append_key_value_metadata(KeyValue::new(
                KV_DATA_BYTES.to_string(),
                data_bytes.to_string(),
            ));
            // Writes the footer (with the data sha256) and hands back the sink.
            let sink = w.into_inner().map_err(CacheError::pq(tmp))?;
            let (file, sha256) = sink.finish();
            let bytes = file.metadata().map_err(CacheError::io(tmp))?.len();
            Ok::<_, CacheError>((file, (rows, bytes, sha256)))
        })?;
        Ok(ShardInfo {
            file: name.to_string(),
            rows,
            bytes,
            sha256: Some(sha256),
        })
    }

    /// Where a shard is written before the manifest lists it.
    fn write_path(&self, file: &str) -> PathBuf {
        if self.manifest_file == REBUILD_MANIFEST_FILE {
            staged_path(&self.dir.join(file))
        } else {
            pending_path(&self.dir, file)
        }
    }

    /// Rewrites every shard holding one of `paths` without those rows. Returns the new shard
    /// infos keyed by the file they replace (`None`: every row dropped) and the replaced files.
    fn rewrite_without(
        &mut self,
        paths: &HashSet<String>,
    ) -> Result<(Rewrites, Vec<String>), CacheError> {
        let fate = |path: &str, _: Option<&str>, label: Option<u32>| {
            if paths.contains(path) {
                RowFate::Drop
            } else {
                RowFate::Keep(label)
            }
        };
        self.rewrite_holders(paths, fate, &HashMap::new())
    }

    /// Rewrites every shard holding one of `paths` through [`Self::rewrite_shard`] with `fate`
    /// and `resplit`. Returns the new shard infos keyed by the file they replace (`None`: every
    /// row dropped) and the replaced files.
    fn rewrite_holders<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a String>,
        fate: impl Fn(&str, Option<&str>, Option<u32>) -> RowFate,
        resplit: &HashMap<String, String>,
    ) -> Result<(Rewrites, Vec<String>), CacheError> {
        let affected: HashSet<String> = paths
            .into_iter()
            .filter_map(|p| self.location.get(p).cloned())
            .collect();
        let mut new_infos = HashMap::new();
        let mut old_files = Vec::new();
        let shards = self.manifest.shards.clone();
        for info in shards.iter().filter(|s| affected.contains(&s.file)) {
            let new = self.rewrite_shard(info, &fate, resplit)?;
            new_infos.insert(info.file.clone(), new);
            old_files.push(info.file.clone());
        }
        Ok((new_infos, old_files))
    }

    /// Rewrites one shard, deciding each row's fate from `(path, class, label)`. `None` when no
    /// row survives (no file is written then). Row order is kept.
    /// Rows whose path is in `resplit` get that split.
    fn rewrite_shard(
        &mut self,
        info: &ShardInfo,
        fate: impl Fn(&str, Option<&str>, Option<u32>) -> RowFate,
        resplit: &HashMap<String, String>,
    ) -> Result<Option<ShardInfo>, CacheError> {
        let src = self.shard_path(&info.file);
        let file = File::open(&src).map_err(CacheError::io(&src))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(CacheError::pq(&src))?
            .with_batch_size(self.options.row_group_rows.max(1))
            .build()
            .map_err(CacheError::pq(&src))?;
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.map_err(CacheError::arrow(&src))?;
            let corrupt = |m: &str| CacheError::CorruptShard {
                path: src.clone(),
                message: m.to_string(),
            };
            let paths = batch
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt("path is not utf8"))?;
            let label_idx = batch
                .schema()
                .index_of(COL_LABEL)
                .map_err(CacheError::arrow(&src))?;
            let class_idx = batch
                .schema()
                .index_of(COL_CLASS)
                .map_err(CacheError::arrow(&src))?;
            let labels = batch
                .column(label_idx)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| corrupt("label is not uint32"))?;
            let classes = batch
                .column(class_idx)
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt("class is not utf8"))?;
            let split_idx = batch
                .schema()
                .index_of(COL_SPLIT)
                .map_err(CacheError::arrow(&src))?;
            let splits = batch
                .column(split_idx)
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt("split is not utf8"))?;
            let mut keep = Vec::with_capacity(batch.num_rows());
            let mut new_labels = Vec::with_capacity(batch.num_rows());
            let mut new_splits: Vec<String> = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                let class = classes.is_valid(i).then(|| classes.value(i));
                let label = labels.is_valid(i).then(|| labels.value(i));
                match fate(paths.value(i), class, label) {
                    RowFate::Keep(l) => {
                        keep.push(true);
                        new_labels.push(l);
                        let split = resplit.get(paths.value(i)).map_or(splits.value(i), |s| s);
                        new_splits.push(split.to_string());
                    }
                    RowFate::Drop => keep.push(false),
                }
            }
            if !keep.iter().any(|&k| k) {
                continue;
            }
            let filtered = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
                .map_err(CacheError::arrow(&src))?;
            let mut columns: Vec<ArrayRef> = filtered.columns().to_vec();
            columns[label_idx] = Arc::new(UInt32Array::from(new_labels));
            columns[split_idx] = Arc::new(StringArray::from(new_splits));
            let rebuilt = RecordBatch::try_new(filtered.schema(), columns)
                .map_err(CacheError::arrow(&src))?;
            out.push(rebuilt);
        }
        if out.is_empty() {
            return Ok(None);
        }
        let name = self.next_name();
        let new = self.write_shard(&name, out.into_iter().map(Ok))?;
        // Surviving rows now live in the new file.
        self.relocate(&HashSet::from([info.file.as_str()]), &new.file);
        Ok(Some(new))
    }

    /// Points `location` of every row held by one of `files` at `new_file`.
    fn relocate(&mut self, files: &HashSet<&str>, new_file: &str) {
        for v in self.location.values_mut() {
            if files.contains(v.as_str()) {
                *v = new_file.to_string();
            }
        }
    }

    /// The manifest's shard list with rewritten shards in place of the old ones (dropped when
    /// they kept no row).
    fn apply_rewrites(&self, mut new_infos: Rewrites, old_files: &[String]) -> Vec<ShardInfo> {
        let old: HashSet<&str> = old_files.iter().map(String::as_str).collect();
        let mut shards = Vec::with_capacity(self.manifest.shards.len() + 1);
        for s in &self.manifest.shards {
            if old.contains(s.file.as_str()) {
                if let Some(Some(new)) = new_infos.remove(&s.file) {
                    shards.push(new);
                }
            } else {
                shards.push(s.clone());
            }
        }
        shards
    }

    /// Replaces the manifest's shard list in one atomic store, deletes `old_files`, then moves
    /// the new shards from `pending/` into the cache folder. In that order a kill leaves rows
    /// missing from a `*.parquet` glob for a moment, never twice in it; `open` completes the moves.
    fn commit(&mut self, shards: Vec<ShardInfo>, old_files: &[String]) -> Result<(), CacheError> {
        self.manifest.shards = shards;
        self.store()?;
        for f in old_files {
            fsutil::remove_if_exists(&self.shard_path(f))?;
        }
        self.promote_pending()
    }

    /// Where listed shard `file` is now: [`Self::shard_path`], or where an interrupted commit
    /// or `finish` left it (see [`Self::promote_pending`]); `shard_path` when nowhere.
    fn located(&self, file: &str) -> PathBuf {
        let want = self.shard_path(file);
        if want.exists() {
            return want;
        }
        shard_places(&self.dir, file)
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or(want)
    }

    /// Moves every listed shard that is still under `pending/` (or under another name a crash
    /// left it with) to where [`Self::shard_path`] expects it.
    fn promote_pending(&self) -> Result<(), CacheError> {
        let mut moved = false;
        for s in &self.manifest.shards {
            let want = self.shard_path(&s.file);
            if want.exists() {
                continue;
            }
            let places = shard_places(&self.dir, &s.file);
            if let Some(from) = places.iter().find(|p| **p != want && p.exists()) {
                fs::rename(from, &want).map_err(CacheError::io(&want))?;
                moved = true;
            }
        }
        if moved {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Where shard `file` lives: `dir/file`, or `dir/file.staged` while a rebuild is staged (so
    /// tools globbing `*.parquet` never see a half-built cache of another model).
    fn shard_path(&self, file: &str) -> PathBuf {
        let path = self.dir.join(file);
        if self.manifest_file == REBUILD_MANIFEST_FILE {
            staged_path(&path)
        } else {
            path
        }
    }

    fn store(&mut self) -> Result<(), CacheError> {
        self.manifest.store(&self.dir.join(self.manifest_file))
    }

    /// Finishes the moves of listed shards an interrupted commit or `finish` left half done,
    /// then deletes what was never committed: `*.tmp` files of ours, files under `pending/` and
    /// `shard-*.parquet.staged` files no manifest lists.
    fn clean_leftovers(&mut self) -> Result<(), CacheError> {
        self.promote_pending()?;
        let mut live: HashSet<PathBuf> = HashSet::new();
        for s in &self.manifest.shards {
            live.insert(self.shard_path(&s.file));
        }
        let pending = self.dir.join(super::PENDING_DIR);
        for dir in [&self.dir, &pending] {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CacheError::io(dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(CacheError::io(dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let ours = name.starts_with("shard-")
                    || name.starts_with("manifest")
                    || name.starts_with("skipped");
                let uncommitted = *dir == pending
                    || (name.starts_with("shard-") && name.ends_with(".parquet.staged"));
                let leftover = (ours && name.ends_with(".tmp"))
                    || (ours && uncommitted && !live.contains(&entry.path()));
                if leftover && entry.file_type().is_ok_and(|t| t.is_file()) {
                    fsutil::remove_if_exists(&entry.path())?;
                    self.stats.cleaned_files += 1;
                }
            }
        }
        Ok(fsutil::sync_dir(&self.dir)?)
    }

    /// Verifies listed shards and fills `existing`/`location`. A missing shard is dropped; a
    /// damaged one (size, checksum, schema, labels) is moved to `quarantine/`; both are reported
    /// in [`CacheStats`] with their rows, which the caller extracts again. Shards of a version-1
    /// manifest get their checksum recorded now.
    fn load_existing(&mut self) -> Result<(), CacheError> {
        let dim = self.manifest.dim;
        let classes = self.manifest.classes.clone();
        let mut kept = Vec::with_capacity(self.manifest.shards.len());
        for mut info in std::mem::take(&mut self.manifest.shards) {
            let path = self.located(&info.file);
            let meta = check_shard(path.clone(), &info, dim).and_then(|s| s.read_meta(&classes));
            let meta = match meta {
                Ok(m) => m,
                Err(e @ CacheError::MissingShard { .. }) => {
                    self.drop_shard(&info, e.to_string(), None);
                    continue;
                }
                Err(e @ CacheError::CorruptShard { .. }) => {
                    let moved = quarantine(&self.dir, &path)?;
                    self.drop_shard(&info, e.to_string(), Some(moved));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if info.sha256.is_none() {
                let mut f = File::open(&path).map_err(CacheError::io(&path))?;
                info.sha256 = Some(sha256_prefix(&mut f, info.bytes, &path)?);
            }
            for ((p, h), sp) in meta.paths.into_iter().zip(meta.hashes).zip(meta.splits) {
                self.splits.insert(p.clone(), sp);
                if let Some(other) = self.location.insert(p.clone(), info.file.clone()) {
                    return Err(CacheError::CorruptShard {
                        path: self.shard_path(&info.file),
                        message: format!("row '{p}' is also in shard {other}"),
                    });
                }
                self.existing.insert(p, h);
            }
            kept.push(info);
        }
        self.manifest.shards = kept;
        Ok(())
    }

    fn drop_shard(&mut self, info: &ShardInfo, why: String, moved: Option<PathBuf>) {
        let note = match &moved {
            Some(q) => format!(
                "{why} [moved to {}; its {} images will be extracted again]",
                q.display(),
                info.rows
            ),
            None => format!("{why} [its {} images will be extracted again]", info.rows),
        };
        self.stats.dropped_shards.push(note);
        self.stats.quarantined.extend(moved);
        self.stats.rows_to_redo += info.rows;
    }

    /// Top-level `shard-*.parquet` files no manifest lists. When `rebuild` (the manifest was
    /// missing or damaged), intact shards of this identity are adopted into the new manifest
    /// (those of the class list holding most rows; their rows are not extracted again). Otherwise
    /// a shard whose every row (path and content hash) is in a listed shard is a duplicate left
    /// by an older crash and is deleted; any other is moved to `quarantine/` and reported.
    fn unlisted_shards(&mut self, rebuild: bool) -> Result<(), CacheError> {
        let mut live: HashSet<String> = self
            .manifest
            .shards
            .iter()
            .map(|s| s.file.clone())
            .collect();
        if let Some(old) = &self.old_main {
            live.extend(old.iter().map(|s| s.file.clone()));
        }
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(CacheError::io(&self.dir))? {
            let entry = entry.map_err(CacheError::io(&self.dir))?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            if name.starts_with("shard-")
                && name.ends_with(".parquet")
                && !live.contains(&name)
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                names.push(name);
            }
        }
        names.sort();
        let dim = self.manifest.dim;
        // Candidates for adoption, grouped by the class list their footer records.
        let mut groups: Vec<(Vec<String>, Adoptable)> = Vec::new();
        for name in names {
            let path = self.dir.join(&name);
            let checked =
                check_unlisted(path.clone(), &name, dim).and_then(|(s, info, fp, cls)| {
                    let meta = s.read_meta(&cls)?;
                    Ok((info, fp, cls, meta))
                });
            let Ok((info, fp, cls, meta)) = checked else {
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
                continue;
            };
            let ours = fp == self.manifest.fingerprint;
            let duplicate = meta
                .paths
                .iter()
                .zip(&meta.hashes)
                .all(|(p, h)| self.existing.get(p) == Some(h));
            if ours && duplicate && !meta.paths.is_empty() {
                fsutil::remove_if_exists(&path)?;
                self.stats.cleaned_files += 1;
            } else if ours && rebuild && !meta.paths.iter().any(|p| self.existing.contains_key(p)) {
                match groups.iter_mut().find(|(c, _)| *c == cls) {
                    Some((_, g)) => g.push((info, meta)),
                    None => groups.push((cls, vec![(info, meta)])),
                }
            } else {
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        let best = (0..groups.len())
            .max_by_key(|&i| groups[i].1.iter().map(|(s, _)| s.rows).sum::<usize>())
            .expect("groups is not empty");
        let (classes, chosen) = groups.swap_remove(best);
        for (_, rest) in groups {
            for (info, _) in rest {
                let path = self.dir.join(&info.file);
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
            }
        }
        self.manifest.classes = classes;
        for (info, meta) in chosen {
            if meta.paths.iter().any(|p| self.existing.contains_key(p)) {
                let path = self.dir.join(&info.file);
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
                continue;
            }
            for ((p, h), sp) in meta.paths.into_iter().zip(meta.hashes).zip(meta.splits) {
                self.splits.insert(p.clone(), sp);
                self.location.insert(p.clone(), info.file.clone());
                self.existing.insert(p, h);
            }
            if let Some((g, seq)) = parse_shard_name(&info.file) {
                self.manifest.generation = self.manifest.generation.max(g);
                self.manifest.next_seq = self.manifest.next_seq.max(seq + 1);
            }
            self.manifest.shards.push(info);
            self.stats.adopted_shards += 1;
        }
        Ok(())
    }

    /// Adopts a new class list: labels are remapped by class name in one atomic rewrite; rows of
    /// classes not in `classes` are dropped.
    fn change_classes(&mut self, classes: &[String]) -> Result<(), CacheError> {
        let old = self.manifest.classes.clone();
        let index: HashMap<&str, u32> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let new_label = |class: Option<&str>, label: Option<u32>| -> RowFate {
            let name =
                class.or_else(|| label.and_then(|l| old.get(l as usize).map(String::as_str)));
            match name {
                None => RowFate::Keep(None),
                Some(n) => index
                    .get(n)
                    .map_or(RowFate::Drop, |&l| RowFate::Keep(Some(l))),
            }
        };
        let mut new_infos = HashMap::new();
        let mut old_files = Vec::new();
        let mut dropped = Vec::new();
        let shards = self.manifest.shards.clone();
        // Rewritten shards record the new class list in their footer.
        self.manifest.classes = classes.to_vec();
        for info in &shards {
            // Rewrite only shards where some row's label changes or the row goes.
            let shard = check_shard(self.shard_path(&info.file), info, self.manifest.dim)?;
            let meta = shard.read_meta(&old)?;
            let mut changes = false;
            for (i, p) in meta.paths.iter().enumerate() {
                match new_label(meta.classes[i].as_deref(), meta.labels[i]) {
                    RowFate::Keep(l) if l == meta.labels[i] => {}
                    RowFate::Keep(_) => {
                        changes = true;
                        self.stats.relabelled += 1;
                    }
                    RowFate::Drop => {
                        changes = true;
                        dropped.push(p.clone());
                    }
                }
            }
            if changes {
                let new = self.rewrite_shard(info, |_, c, l| new_label(c, l), &HashMap::new())?;
                new_infos.insert(info.file.clone(), new);
                old_files.push(info.file.clone());
            }
        }
        let shards = self.apply_rewrites(new_infos, &old_files);
        self.manifest.classes = classes.to_vec();
        self.commit(shards, &old_files)?;
        for p in &dropped {
            self.existing.remove(p);
            self.splits.remove(p);
            self.location.remove(p);
        }
        self.stats.removed += dropped.len();
        Ok(())
    }

    /// Merges runs of neighbouring shards smaller than `compact_below_rows` (one atomic commit).
    fn compact(&mut self) -> Result<(), CacheError> {
        let target = self.options.compact_below_rows;
        if target == 0 {
            return Ok(());
        }
        let mut groups: Vec<Vec<ShardInfo>> = Vec::new();
        let mut run: Vec<ShardInfo> = Vec::new();
        let mut run_rows = 0;
        for s in &self.manifest.shards {
            if s.rows < target {
                run.push(s.clone());
                run_rows += s.rows;
                if run_rows >= target {
                    groups.push(std::mem::take(&mut run));
                    run_rows = 0;
                }
            } else {
                groups.push(std::mem::take(&mut run));
                run_rows = 0;
            }
        }
        groups.push(run);
        groups.retain(|g| g.len() >= 2);
        if groups.is_empty() {
            return Ok(());
        }
        let mut replaced: Rewrites = HashMap::new();
        let mut old_files = Vec::new();
        for g in &groups {
            let name = self.next_name();
            let batch_rows = self.options.row_group_rows.max(1);
            let paths: Vec<PathBuf> = g.iter().map(|s| self.shard_path(&s.file)).collect();
            let batches = paths
                .into_iter()
                .flat_map(move |p| read_all(&p, batch_rows));
            let info = self.write_shard(&name, batches)?;
            let files: HashSet<&str> = g.iter().map(|s| s.file.as_str()).collect();
            self.relocate(&files, &info.file);
            // The first shard of the group is replaced by the merged one, the rest vanish.
            replaced.insert(g[0].file.clone(), Some(info));
            for s in &g[1..] {
                replaced.insert(s.file.clone(), None);
            }
            old_files.extend(g.iter().map(|s| s.file.clone()));
            self.stats.compacted_shards += g.len();
        }
        let shards = self.apply_rewrites(replaced, &old_files);
        self.commit(shards, &old_files)
    }
}

/// All batches of one shard file (an `Err` item if it cannot be read).
fn read_all(path: &Path, batch_rows: usize) -> Vec<Result<RecordBatch, CacheError>> {
    let reader = File::open(path)
        .map_err(CacheError::io(path))
        .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(CacheError::pq(path)))
        .and_then(|b| {
            b.with_batch_size(batch_rows)
                .build()
                .map_err(CacheError::pq(path))
        });
    match reader {
        Ok(r) => r.map(|b| b.map_err(CacheError::arrow(path))).collect(),
        Err(e) => vec![Err(e)],
    }
}

/// `(generation, seq)` of a shard named `shard-g{generation:04}-{seq:06}.parquet`.
fn parse_shard_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("shard-g")?.strip_suffix(".parquet")?;
    let (g, seq) = rest.split_once('-')?;
    Some((g.parse().ok()?, seq.parse().ok()?))
}

/// True when `dir` holds a top-level `shard-*.parquet` file.
fn has_top_level_shards(dir: &Path) -> Result<bool, CacheError> {
    for entry in fs::read_dir(dir).map_err(CacheError::io(dir))? {
        let name = entry.map_err(CacheError::io(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && name.ends_with(".parquet") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves `path` into `dir/quarantine/` as `name.quarantined` (never overwriting: `name.1.quarantined`, ... when taken)
/// and returns where it went. Nothing the cache holds is deleted for being damaged.
fn quarantine(dir: &Path, path: &Path) -> Result<PathBuf, CacheError> {
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir).map_err(CacheError::io(&qdir))?;
    let name = path
        .file_name()
        .expect("quarantined paths name a file")
        .to_string_lossy()
        .to_string();
    // Not `*.parquet`, so not even a recursive `**/*.parquet` glob reads a damaged file.
    let mut to = qdir.join(format!("{name}.quarantined"));
    let mut n = 1;
    while to.exists() {
        to = qdir.join(format!("{name}.{n}.quarantined"));
        n += 1;
    }
    fs::rename(path, &to).map_err(CacheError::io(&to))?;
    fsutil::sync_dir(&qdir)?;
    fsutil::sync_dir(dir)?;
    Ok(to)
}

fn old_shards(main: &Option<Manifest>) -> Vec<ShardInfo> {
    main.as_ref().map(|m| m.shards.clone()).unwrap_or_default()
}
