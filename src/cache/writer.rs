//! The cache writer: one run's writes (append, remove, resplit, relabel, compact, finish), each
//! landed through [`super::shard`] files and ONE manifest replacement.
//!
//! Arrows run one way: the writer calls [`super::open`] (repair), [`super::rewrite`] (which rows
//! survive), [`super::shard`] (files) and [`super::manifest`]; none of them calls back.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use rayon::prelude::*;

use super::index::{row_key, split_key, CachedRow, Existing, RowIndex};
use super::lock::CacheLock;
use super::manifest::{CacheIdentity, Manifest, PendingCommit, ShardInfo};
use super::open::{self, Opened};
use super::rewrite::{
    apply_rewrites, class_fate, compaction_groups, filter_shard, Rewrites, RowFate,
};
use super::schema::{to_batch, with_view_columns, Columns, FeatureRow, ViewedRow, WriteOptions};
use super::shard::{self, check_shard, read_all, shard_name, Places};
use super::{CacheError, CacheStats, MANIFEST_FILE, REBUILD_MANIFEST_FILE};
use crate::dataset::Split;
use crate::fsutil;

/// Writes a cache, holding its lock for its lifetime. See the module docs of [`super`] for the
/// on-disk order of operations that makes every step crash-safe.
pub struct CacheWriter {
    dir: PathBuf,
    options: WriteOptions,
    /// The manifest this writer maintains (the main one, or the staging one of a rebuild).
    manifest: Manifest,
    manifest_file: &'static str,
    /// During a `force` rebuild: the shards of the old main manifest, deleted by `finish`.
    old_main: Option<Vec<ShardInfo>>,
    /// Every cached row: content hash, split, shard.
    rows: RowIndex,
    stats: CacheStats,
    _lock: CacheLock,
}

impl std::fmt::Debug for CacheWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWriter")
            .field("dir", &self.dir)
            .field("manifest_file", &self.manifest_file)
            .field("rows", &self.rows.len())
            .finish()
    }
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
        let Opened {
            dir,
            manifest,
            manifest_file,
            old_main,
            rows,
            stats,
        } = open::open(dir, identity, classes, force, &options)?;
        let mut writer = CacheWriter {
            dir,
            options,
            manifest,
            manifest_file,
            old_main,
            rows,
            stats,
            _lock: lock,
        };
        if writer.manifest.classes != classes {
            writer.change_classes(classes)?;
        }
        writer.store()?;
        Ok(writer)
    }

    /// Path → content hash of every row in the cache (what a re-run can skip).
    pub fn existing(&self) -> Existing<'_> {
        Existing(&self.rows)
    }

    /// Gives cached rows a new split (a split is a function of the path and the split options,
    /// so a re-run with other options re-assigns rows instead of keeping the old split): the
    /// affected shards are rewritten and listed in one manifest replacement. Paths not cached
    /// or already in that split are ignored. Returns how many rows changed split.
    pub fn set_splits(&mut self, splits: &HashMap<String, Split>) -> Result<usize, CacheError> {
        // Every view of an image follows its image (rows keyed by `row_key(path, view)`).
        let changed: HashMap<String, Split> = self
            .rows
            .iter()
            .filter_map(|(k, r)| {
                let s = splits.get(split_key(k).0)?;
                (r.split != *s).then(|| (k.clone(), *s))
            })
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let (new_infos, old_files) =
            self.rewrite_holders(changed.keys(), |_, _, l| RowFate::Keep(l), &changed)?;
        self.commit(new_infos, &old_files, Vec::new())?;
        for (p, s) in &changed {
            if let Some(r) = self.rows.get_mut(p) {
                r.split = *s;
            }
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
        let viewed: Vec<Vec<ViewedRow>> = shards
            .iter()
            .map(|s| s.iter().map(|&r| ViewedRow::from(r)).collect())
            .collect();
        self.append_view_shards(&viewed)
    }

    /// [`append_shards`](Self::append_shards) for rows that may be views of their image: a row
    /// is keyed by (path, view), so a view replaces only the same view of the same image.
    pub fn append_view_shards(&mut self, shards: &[Vec<ViewedRow>]) -> Result<(), CacheError> {
        let shards: Vec<&Vec<ViewedRow>> = shards.iter().filter(|r| !r.is_empty()).collect();
        if shards.is_empty() {
            return Ok(());
        }
        let mut batches = Vec::with_capacity(shards.len());
        for rows in &shards {
            let dim = self.manifest.dim;
            batches.push(to_batch(
                Columns::from_rows(
                    rows,
                    dim,
                    &self.manifest.classes,
                    self.manifest.feature_dtype,
                )?,
                dim,
            ));
        }
        let mut all = HashSet::new();
        for r in shards.iter().flat_map(|s| s.iter()) {
            if !all.insert(row_key(r.row.path, r.view)) {
                return Err(CacheError::BadRow {
                    row_path: r.row.path.to_string(),
                    message: format!("path appears twice in one append (view {})", r.view),
                });
            }
        }
        let work: Vec<(String, RecordBatch)> =
            batches.into_iter().map(|b| (self.next_name(), b)).collect();
        let replaced: HashSet<String> = all
            .into_iter()
            .filter(|k| self.rows.contains_key(k))
            .collect();
        let this = &*self;
        let infos: Vec<ShardInfo> = work
            .into_par_iter()
            .map(|(name, batch)| this.write_shard(&name, std::iter::once(Ok(batch))))
            .collect::<Result<_, _>>()?;
        let (new_infos, old_files) = self.rewrite_without(&replaced)?;
        self.commit(new_infos, &old_files, infos.clone())?;
        for (rows, info) in shards.iter().zip(&infos) {
            for v in rows.iter() {
                let row = CachedRow {
                    hash: v.row.content_hash.to_string(),
                    split: v.row.split,
                    shard: info.file.clone(),
                    recipe: v.recipe.map(str::to_string),
                };
                self.rows.insert(row_key(v.row.path, v.view), row);
            }
            self.stats.appended += rows.len();
        }
        self.stats.removed += replaced.len();
        Ok(())
    }

    /// Drops the rows of `paths` (files gone or changed), every view of each: affected shards
    /// are rewritten and listed in one manifest replacement. Returns how many rows were dropped.
    pub fn remove_paths(&mut self, paths: &HashSet<String>) -> Result<usize, CacheError> {
        let present: HashSet<String> = self
            .rows
            .keys()
            .filter(|k| paths.contains(split_key(k).0))
            .cloned()
            .collect();
        self.remove_keys(present)
    }

    /// Drops the views `views` (`(path, view)`, view >= 1) where cached, as
    /// [`remove_paths`](Self::remove_paths). Returns how many rows were dropped.
    pub fn remove_views(&mut self, views: &[(String, u32)]) -> Result<usize, CacheError> {
        let present: HashSet<String> = views
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(p, v)| row_key(p, *v))
            .filter(|k| self.rows.contains_key(k))
            .collect();
        self.remove_keys(present)
    }

    fn remove_keys(&mut self, present: HashSet<String>) -> Result<usize, CacheError> {
        if present.is_empty() {
            return Ok(0);
        }
        let (new_infos, old_files) = self.rewrite_without(&present)?;
        self.commit(new_infos, &old_files, Vec::new())?;
        for p in &present {
            self.rows.remove(p);
        }
        self.stats.removed += present.len();
        Ok(present.len())
    }

    /// Merges runs of small neighbouring shards (fewer than `compact_below_rows` rows each) in
    /// one manifest replacement, completes a `force` rebuild by renaming its manifest over the
    /// main one (then deleting the old shards), and releases the lock.
    pub fn finish(mut self) -> Result<CacheStats, CacheError> {
        self.compact()?;
        self.unify_views()?;
        if self.manifest_file == REBUILD_MANIFEST_FILE {
            // The main manifest first, listing nothing and recording the change (the new shards
            // are still named `*.staged`, the old ones still listed nowhere else), then the
            // staging manifest goes, then the change runs as any other (`publish`): a kill never
            // leaves both the old and the new rows visible to `*.parquet` readers, nor a manifest
            // listing a file not in place; `open` completes the change after a crash.
            let live: HashSet<String> = self
                .manifest
                .shards
                .iter()
                .map(|s| s.file.clone())
                .collect();
            let retire: Vec<String> = self
                .old_main
                .take()
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.file)
                .filter(|f| !live.contains(f))
                .collect();
            let shards = std::mem::take(&mut self.manifest.shards);
            self.manifest_file = MANIFEST_FILE;
            self.manifest.committing = Some(PendingCommit {
                shards: shards.clone(),
                retire: retire.clone(),
            });
            crate::failpoint::hit("rebuild-main");
            self.store()?;
            let staged = self.dir.join(REBUILD_MANIFEST_FILE);
            fsutil::remove_if_exists(&staged)?;
            self.publish(shards, retire, "rebuild")?;
        }
        Ok(self.stats())
    }

    // ---------------------------------------------------------------------------------------

    fn next_name(&mut self) -> String {
        let name = shard_name(self.manifest.generation, self.manifest.next_seq);
        self.manifest.next_seq += 1;
        name
    }

    fn places(&self) -> Places<'_> {
        Places {
            dir: &self.dir,
            staged: self.manifest_file == REBUILD_MANIFEST_FILE,
        }
    }

    /// Writes `batches` as shard `name` where uncommitted shards live ([`Places::write_path`]).
    fn write_shard(
        &self,
        name: &str,
        batches: impl Iterator<Item = Result<RecordBatch, CacheError>>,
    ) -> Result<ShardInfo, CacheError> {
        let path = self.places().write_path(name);
        shard::write_shard(&path, name, &self.manifest, &self.options, batches)
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
        resplit: &HashMap<String, Split>,
    ) -> Result<(Rewrites, Vec<String>), CacheError> {
        let affected: HashSet<String> = paths
            .into_iter()
            .filter_map(|p| self.rows.get(p).map(|r| r.shard.clone()))
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

    /// Rewrites one shard through [`filter_shard`] into a new file (row order kept); `None` when
    /// no row survives (no file is written then).
    fn rewrite_shard(
        &mut self,
        info: &ShardInfo,
        fate: impl Fn(&str, Option<&str>, Option<u32>) -> RowFate,
        resplit: &HashMap<String, Split>,
    ) -> Result<Option<ShardInfo>, CacheError> {
        let src = self.places().shard_path(&info.file);
        let out = filter_shard(&src, self.options.row_group_rows, fate, resplit)?;
        if out.is_empty() {
            return Ok(None);
        }
        let name = self.next_name();
        let new = self.write_shard(&name, out.into_iter().map(Ok))?;
        // Surviving rows now live in the new file.
        self.relocate(&HashSet::from([info.file.as_str()]), &new.file);
        Ok(Some(new))
    }

    /// Points every row held by one of `files` at `new_file`.
    fn relocate(&mut self, files: &HashSet<&str>, new_file: &str) {
        for r in self.rows.values_mut() {
            if files.contains(r.shard.as_str()) {
                r.shard = new_file.to_string();
            }
        }
    }

    /// Lists `rewrites` in place of `old_files` and `added` at the end through [`Self::publish`].
    fn commit(
        &mut self,
        rewrites: Rewrites,
        old_files: &[String],
        added: Vec<ShardInfo>,
    ) -> Result<(), CacheError> {
        let mut shards = apply_rewrites(&self.manifest.shards, rewrites, old_files);
        shards.extend(added);
        self.publish(shards, old_files.to_vec(), "commit")
    }

    /// Makes `shards` the manifest's list, retiring the listed files `retire`, in four steps:
    /// a manifest without `retire` that records the change in `committing`; `retire` deleted; the
    /// new shards moved up from `pending/` (or `*.staged`); the manifest listing `shards`. Every
    /// manifest stored lists only files in place, and a `*.parquet` glob never sees a row twice;
    /// a kill leaves one of the two manifests, and `open` completes the change. `step` names
    /// the [`crate::failpoint`]s on the way (`{step}-intent`, `-retire`, `-promote`, `-list`).
    fn publish(
        &mut self,
        shards: Vec<ShardInfo>,
        retire: Vec<String>,
        step: &str,
    ) -> Result<(), CacheError> {
        let retired: HashSet<&str> = retire.iter().map(String::as_str).collect();
        self.manifest
            .shards
            .retain(|s| !retired.contains(s.file.as_str()));
        self.manifest.committing = Some(PendingCommit {
            shards: shards.clone(),
            retire: retire.clone(),
        });
        crate::failpoint::hit(&format!("{step}-intent"));
        self.store()?;
        crate::failpoint::hit(&format!("{step}-retire"));
        for f in &retire {
            fsutil::remove_if_exists(&self.places().shard_path(f))?;
        }
        crate::failpoint::hit(&format!("{step}-promote"));
        self.places().promote(&shards)?;
        crate::failpoint::hit(&format!("{step}-list"));
        self.manifest.shards = shards;
        self.manifest.committing = None;
        self.store()
    }

    fn store(&mut self) -> Result<(), CacheError> {
        self.manifest.store(&self.dir.join(self.manifest_file))
    }

    /// Adopts a new class list: labels are remapped by class name in one atomic rewrite; rows of
    /// classes not in `classes` are dropped.
    fn change_classes(&mut self, classes: &[String]) -> Result<(), CacheError> {
        let old = self.manifest.classes.clone();
        let new_label = class_fate(&old, classes);
        let mut new_infos = HashMap::new();
        let mut old_files = Vec::new();
        let mut dropped = Vec::new();
        let shards = self.manifest.shards.clone();
        // Rewritten shards record the new class list in their footer.
        self.manifest.classes = classes.to_vec();
        for info in &shards {
            // Rewrite only shards where some row's label changes or the row goes.
            let path = self.places().shard_path(&info.file);
            let meta = check_shard(path, info, self.manifest.dim, self.manifest.feature_dtype)?
                .read_meta(&old)?;
            let mut changes = false;
            for (i, p) in meta.keys.iter().enumerate() {
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
        self.commit(new_infos, &old_files, Vec::new())?;
        for p in &dropped {
            self.rows.remove(p);
        }
        self.stats.removed += dropped.len();
        Ok(())
    }

    /// One schema across a cache with views: when some listed shards have the `view` columns and
    /// others do not (plain shards written before the first view, or by a run without views),
    /// the others are rewritten with `view` 0 and a null recipe, in one atomic commit. Readers
    /// that take the first file's schema for all (pyarrow's datasets, polars) then see every
    /// row's view, instead of silently dropping the column and taking view rows for plain ones.
    /// A cache without views is left byte for byte as it is.
    fn unify_views(&mut self) -> Result<(), CacheError> {
        // Shards holding a view row have the columns; without one the cache has no views and no
        // footer is read.
        let holding: HashSet<String> = self
            .rows
            .iter()
            .filter(|(k, _)| split_key(k).1 != 0)
            .map(|(_, r)| r.shard.clone())
            .collect();
        if holding.is_empty() {
            return Ok(());
        }
        let shards = self.manifest.shards.clone();
        let mut plain = Vec::new();
        for info in shards.iter().filter(|s| !holding.contains(&s.file)) {
            if !shard::has_view_columns(&self.places().shard_path(&info.file))? {
                plain.push(info);
            }
        }
        if plain.is_empty() {
            return Ok(());
        }
        let mut replaced: Rewrites = HashMap::new();
        let mut old_files = Vec::new();
        for info in plain {
            let name = self.next_name();
            let src = self.places().shard_path(&info.file);
            let batches = read_all(&src, self.options.row_group_rows.max(1))
                .into_iter()
                .map(|b| b.and_then(|b| with_view_columns(b).map_err(CacheError::arrow(&src))));
            let new = self.write_shard(&name, batches)?;
            self.relocate(&HashSet::from([info.file.as_str()]), &new.file);
            replaced.insert(info.file.clone(), Some(new));
            old_files.push(info.file.clone());
        }
        self.commit(replaced, &old_files, Vec::new())
    }

    /// Merges runs of neighbouring shards smaller than `compact_below_rows` (one atomic commit).
    fn compact(&mut self) -> Result<(), CacheError> {
        let groups = compaction_groups(&self.manifest.shards, self.options.compact_below_rows);
        if groups.is_empty() {
            return Ok(());
        }
        let mut replaced: Rewrites = HashMap::new();
        let mut old_files = Vec::new();
        for g in &groups {
            let name = self.next_name();
            let batch_rows = self.options.row_group_rows.max(1);
            let paths: Vec<PathBuf> = g
                .iter()
                .map(|s| self.places().shard_path(&s.file))
                .collect();
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
        self.commit(replaced, &old_files, Vec::new())
    }
}
