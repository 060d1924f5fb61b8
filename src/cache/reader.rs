//! Reading a committed cache: verify the manifest against the shards, then features as `(n, dim)`
//! arrays (a split, everything, or batches).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use rayon::prelude::*;

use super::lock::CacheLock;
use super::manifest::Manifest;
use super::shard::{check_shard, CheckedShard, Places, ShardMeta};
use super::{CacheError, MANIFEST_FILE};
use crate::dataset::augment::{ViewKind, ViewRecipe};
use crate::dataset::Split;

/// Rows of the cache (a split, all of it, or one batch): names, labels and features.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitData {
    /// Image paths relative to the images folder, one per row.
    pub paths: Vec<String>,
    /// The split of each row.
    pub splits: Vec<Split>,
    /// Class index into [`FeatureCache::classes`]; `None` for unlabelled images.
    pub labels: Vec<Option<u32>>,
    /// `(n, dim)`, row i belongs to `paths[i]`.
    pub features: Array2<f32>,
    /// The view of each row's image: 0 = the plain image (every row of a cache without views).
    pub views: Vec<u32>,
}

impl SplitData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// What [`FeatureCache::verify`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Shards checked.
    pub shards: usize,
    /// Rows in them.
    pub rows: usize,
    /// Bytes read and hashed.
    pub bytes: u64,
}

/// One row group of one shard, with the global index of its first row.
struct Unit {
    shard: usize,
    row_group: usize,
    first_row: usize,
    rows: usize,
}

/// An opened, verified feature cache (holds a shared lock while open, so no writer deletes the
/// shards underneath it).
pub struct FeatureCache {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<CheckedShard>,
    units: Vec<Unit>,
    paths: Vec<String>,
    splits: Vec<Split>,
    labels: Vec<Option<u32>>,
    hashes: Vec<String>,
    views: Vec<u32>,
    recipes: Vec<Option<String>>,
    kinds: Vec<Option<ViewKind>>,
    _lock: Option<CacheLock>,
}

impl std::fmt::Debug for FeatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureCache")
            .field("dir", &self.dir)
            .field("rows", &self.paths.len())
            .field("dim", &self.manifest.dim)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl FeatureCache {
    /// Opens the cache in `dir` and verifies it: the manifest parses and has a supported version;
    /// every listed shard exists with the recorded size, schema (dim) and row count; labels are
    /// below the number of classes; no path appears twice. Reads every column but `features`.
    pub fn open(dir: &Path) -> Result<FeatureCache, CacheError> {
        crate::sysmem::tune_allocator();
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::load(&manifest_path)?.ok_or_else(|| {
            if dir.join(super::parts::PLAN_KEY).is_file() {
                CacheError::UncommittedRoot {
                    path: dir.display().to_string(),
                    plan: super::parts::PLAN_KEY,
                }
            } else {
                CacheError::NotACache {
                    path: dir.to_path_buf(),
                }
            }
        })?;
        if manifest.fingerprint != manifest.identity().fingerprint() {
            return Err(CacheError::BadManifest {
                path: manifest_path,
                message: format!(
                    "its fingerprint {} is not the one of the model, preprocessing and dim it \
                     records ({}): edited by hand?",
                    manifest.fingerprint,
                    manifest.identity().fingerprint()
                ),
            });
        }
        unlisted_shard(dir, &manifest)?;
        unlisted_part(dir, &manifest)?;
        if manifest.format_version != super::FORMAT_VERSION {
            return Err(CacheError::UnsupportedFormat {
                path: manifest_path,
                expected: super::FORMAT_VERSION,
                found: manifest.format_version,
            });
        }
        // A change an interrupted commit or rebuild recorded: read the state it commits to, the
        // one the writer's next open completes (a rebuild's main manifest lists nothing until
        // then). Its shards are found wherever the interruption left them (`Places::locate`);
        // one that is nowhere is refused by the checks below.
        let mut manifest = manifest;
        manifest.adopt_change();
        let lock = CacheLock::shared(dir)?;
        let dim = manifest.dim;
        let places = Places { dir, staged: false };
        let checked: Vec<CheckedShard> = manifest
            .shards
            .par_iter()
            .map(|info| -> Result<CheckedShard, CacheError> {
                let path = places.locate(&info.file);
                crate::safe_path::ensure_under(dir, &path, &info.file)
                    .map_err(super::unsafe_shard)?;
                let shard = check_shard(path, info, dim, manifest.feature_dtype)?;
                shard.check_identity(&manifest.fingerprint)?;
                Ok(shard)
            })
            .collect::<Result<_, _>>()?;
        let metas: Vec<ShardMeta> = checked
            .par_iter()
            .map(|s| s.read_meta(&manifest.classes))
            .collect::<Result<_, _>>()?;
        let total = manifest.rows();
        let mut paths = Vec::with_capacity(total);
        let mut splits = Vec::with_capacity(total);
        let mut labels = Vec::with_capacity(total);
        let mut hashes = Vec::with_capacity(total);
        let mut views = Vec::with_capacity(total);
        let mut recipes = Vec::with_capacity(total);
        let mut kinds = Vec::with_capacity(total);
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(total);
        let mut units = Vec::new();
        for (s, (shard, meta)) in checked.iter().zip(metas).enumerate() {
            let mut first_row = paths.len();
            for (rg, rows) in shard.row_groups().into_iter().enumerate() {
                units.push(Unit {
                    shard: s,
                    row_group: rg,
                    first_row,
                    rows,
                });
                first_row += rows;
            }
            if first_row - paths.len() != meta.paths.len() {
                return Err(CacheError::CorruptShard {
                    path: shard.path.clone(),
                    message: format!(
                        "row groups hold {} rows, the columns {}",
                        first_row - paths.len(),
                        meta.paths.len()
                    ),
                });
            }
            for p in &meta.keys {
                if let Some(other) = seen.insert(p.clone(), s) {
                    let p = p.replace('\0', "#view ");
                    return Err(CacheError::CorruptShard {
                        path: shard.path.clone(),
                        message: if other == s {
                            format!("row '{p}' appears twice in this shard")
                        } else {
                            format!("row '{p}' is also in shard {}", manifest.shards[other].file)
                        },
                    });
                }
            }
            for (r, p) in meta.recipes.iter().zip(&meta.paths) {
                let kind = match r {
                    None => None,
                    Some(json) => {
                        Some(ViewRecipe::from_json(json).map(|r| r.kind).map_err(|e| {
                            CacheError::CorruptShard {
                                path: shard.path.clone(),
                                message: format!(
                                "row ({p}) has a view recipe that is not a vggcache recipe: {e}"
                            ),
                            }
                        })?)
                    }
                };
                kinds.push(kind);
            }
            paths.extend(meta.paths);
            splits.extend(meta.splits);
            labels.extend(meta.labels);
            hashes.extend(meta.hashes);
            views.extend(meta.views);
            recipes.extend(meta.recipes);
        }
        debug_assert_eq!(paths.len(), total);
        Ok(FeatureCache {
            dir: dir.to_path_buf(),
            manifest,
            shards: checked,
            units,
            paths,
            splits,
            labels,
            hashes,
            views,
            recipes,
            kinds,
            _lock: lock,
        })
    }

    /// Decodes every feature row (the checks of [`FeatureCache::open`] already passed): row
    /// counts, no nulls, finite values. Reads one row group at a time.
    pub fn verify(&self) -> Result<VerifyReport, CacheError> {
        let dim = self.dim();
        self.units.par_iter().try_for_each(|u| {
            let mut buf = vec![0f32; u.rows * dim];
            self.shards[u.shard].read_features(u.row_group, dim, None, &mut buf)
        })?;
        Ok(VerifyReport {
            shards: self.shards.len(),
            rows: self.paths.len(),
            bytes: self.manifest.shards.iter().map(|s| s.bytes).sum(),
        })
    }

    /// The manifest as committed (identity, classes, shards).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// [`crate::trunk::fingerprint_file`] of the trunk that made these features: what a head's
    /// recorded `trunk_fingerprint` must equal to be used on this cache.
    pub fn trunk_fingerprint(&self) -> &str {
        &self.manifest.model.fingerprint
    }

    /// Features per row (25088 for the VGG16 conv trunk).
    pub fn dim(&self) -> usize {
        self.manifest.dim
    }

    /// Class names; label i is `classes()[i]`.
    pub fn classes(&self) -> &[String] {
        &self.manifest.classes
    }

    /// Total rows.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when the cache holds no rows.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The folder this cache lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The split of every row, in cache order: `(len,)`.
    pub fn row_splits(&self) -> &[Split] {
        &self.splits
    }

    /// The label of every row, in cache order (`None`: unlabelled): `(len,)`.
    pub fn row_labels(&self) -> &[Option<u32>] {
        &self.labels
    }

    /// The image path of every row (relative to the images folder), in cache order: `(len,)`.
    pub fn row_paths(&self) -> &[String] {
        &self.paths
    }

    /// The content hash of every row's image file (hex), in cache order: `(len,)`. What joins
    /// caches of the same images made by different trunks ([`super::join`]).
    pub fn row_hashes(&self) -> &[String] {
        &self.hashes
    }

    /// The view of every row, in cache order (0 = the plain image): `(len,)`.
    pub fn row_views(&self) -> &[u32] {
        &self.views
    }

    /// The recipe (JSON, [`crate::dataset::augment::ViewRecipe`]) of every row, in cache order
    /// (`None` for plain views): `(len,)`.
    pub fn row_recipes(&self) -> &[Option<String>] {
        &self.recipes
    }

    /// The kind of every row's view (`None` for plain views): `(len,)`.
    pub fn row_view_kinds(&self) -> &[Option<ViewKind>] {
        &self.kinds
    }

    /// True when some row is a view other than the plain image.
    pub fn has_views(&self) -> bool {
        self.views.iter().any(|&v| v != 0)
    }

    /// The global rows of each row group, in cache order: contiguous, together `0..len()`.
    pub fn row_group_spans(&self) -> Vec<std::ops::Range<usize>> {
        (0..self.units.len())
            .map(|g| self.row_group_span(g))
            .collect()
    }

    /// Number of row groups.
    pub fn row_group_count(&self) -> usize {
        self.units.len()
    }

    /// The global rows of row group `g`.
    pub fn row_group_span(&self, g: usize) -> std::ops::Range<usize> {
        let u = &self.units[g];
        u.first_row..u.first_row + u.rows
    }

    /// Rows `rows` (global, strictly ascending), in that order. `features: (rows.len(), dim)`.
    pub fn rows(&self, rows: &[usize]) -> Result<SplitData, CacheError> {
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "rows: strictly ascending"
        );
        let mut keep = vec![false; self.paths.len()];
        for &r in rows {
            keep[r] = true;
        }
        self.read_rows(Some(&keep))
    }

    /// Decodes row group `g` (see [`FeatureCache::row_group_spans`]) into `dest: (rows, dim)`
    /// row-major; the same checks as every read (row counts, finite values).
    pub fn read_row_group(&self, g: usize, dest: &mut [f32]) -> Result<(), CacheError> {
        let u = &self.units[g];
        assert_eq!(
            dest.len(),
            u.rows * self.dim(),
            "read_row_group: dest is rows x dim"
        );
        self.shards[u.shard].read_features(u.row_group, self.dim(), None, dest)
    }

    /// Splits present, sorted (train, val, test).
    pub fn split_names(&self) -> Vec<Split> {
        let set: BTreeSet<Split> = self.splits.iter().copied().collect();
        set.into_iter().collect()
    }

    /// Whether any row is in `split`.
    pub fn has_split(&self, split: Split) -> bool {
        self.splits.contains(&split)
    }

    /// All rows whose split is `split`, in cache order. `features: (n, dim)`.
    pub fn split(&self, split: Split) -> Result<SplitData, CacheError> {
        let keep: Vec<bool> = self.splits.iter().map(|&s| s == split).collect();
        if !keep.iter().any(|&k| k) {
            let present: Vec<&str> = self.split_names().iter().map(Split::as_str).collect();
            return Err(CacheError::NoSuchSplit {
                path: self.dir.clone(),
                split: split.as_str().to_string(),
                present: present.join(", "),
            });
        }
        self.read_rows(Some(&keep))
    }

    /// Every row, in cache order. `features: (n, dim)`.
    pub fn all(&self) -> Result<SplitData, CacheError> {
        self.read_rows(None)
    }

    /// Every row in cache order, as batches of `batch_rows` rows (the last may be shorter).
    /// Reads one row group at a time, so memory stays at about one row group plus one batch.
    pub fn batches(
        &self,
        batch_rows: usize,
    ) -> impl Iterator<Item = Result<SplitData, CacheError>> + '_ {
        assert!(batch_rows > 0, "batch_rows must be at least 1");
        Batches {
            cache: self,
            batch_rows,
            next_unit: 0,
            buf: Vec::new(),
            buf_first_row: 0,
            used: 0,
            failed: false,
        }
    }

    fn select(&self, rows: &[usize], features: Array2<f32>) -> SplitData {
        SplitData {
            paths: rows.iter().map(|&i| self.paths[i].clone()).collect(),
            splits: rows.iter().map(|&i| self.splits[i]).collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            features,
            views: rows.iter().map(|&i| self.views[i]).collect(),
        }
    }

    /// Reads the rows where `keep` is true (all when `None`), row groups in parallel, each
    /// copying its Float32 values buffer straight into its own block of the output.
    fn read_rows(&self, keep: Option<&[bool]>) -> Result<SplitData, CacheError> {
        let dim = self.dim();
        let kept_in = |u: &Unit| match keep {
            None => u.rows,
            Some(k) => k[u.first_row..u.first_row + u.rows]
                .iter()
                .filter(|&&x| x)
                .count(),
        };
        let counts: Vec<usize> = self.units.iter().map(kept_in).collect();
        let n: usize = counts.iter().sum();
        let mut features = Array2::<f32>::zeros((n, dim));
        let flat = features
            .as_slice_mut()
            .expect("a fresh Array2 is contiguous");
        crate::sysmem::advise_huge_pages(flat);
        let mut blocks = Vec::with_capacity(self.units.len());
        let mut rest = flat;
        for (u, &c) in self.units.iter().zip(&counts) {
            let (block, tail) = rest.split_at_mut(c * dim);
            rest = tail;
            if c > 0 {
                blocks.push((u, block));
            }
        }
        blocks.into_par_iter().try_for_each(|(u, block)| {
            let k = keep.map(|k| &k[u.first_row..u.first_row + u.rows]);
            self.shards[u.shard].read_features(u.row_group, dim, k, block)
        })?;
        let rows: Vec<usize> = match keep {
            None => (0..self.paths.len()).collect(),
            Some(k) => (0..k.len()).filter(|&i| k[i]).collect(),
        };
        Ok(self.select(&rows, features))
    }
}

/// Iterator behind [`FeatureCache::batches`].
struct Batches<'a> {
    cache: &'a FeatureCache,
    batch_rows: usize,
    next_unit: usize,
    /// Features of rows `buf_first_row..`, row-major; the first `used` rows are handed out.
    buf: Vec<f32>,
    buf_first_row: usize,
    used: usize,
    failed: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<SplitData, CacheError>;

    fn next(&mut self) -> Option<Self::Item> {
        let dim = self.cache.dim();
        if self.failed {
            return None;
        }
        while self.buf.len() - self.used * dim < self.batch_rows * dim
            && self.next_unit < self.cache.units.len()
        {
            // Drop the rows already handed out (one copy of the remainder per row group read).
            self.buf.drain(..self.used * dim);
            self.buf_first_row += self.used;
            self.used = 0;
            let u = &self.cache.units[self.next_unit];
            self.next_unit += 1;
            let at = self.buf.len();
            self.buf.resize(at + u.rows * dim, 0.0);
            if let Err(e) = self.cache.shards[u.shard].read_features(
                u.row_group,
                dim,
                None,
                &mut self.buf[at..],
            ) {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let n = (self.buf.len() / dim - self.used).min(self.batch_rows);
        if n == 0 {
            return None;
        }
        let block = self.buf[self.used * dim..(self.used + n) * dim].to_vec();
        let features =
            Array2::from_shape_vec((n, dim), block).expect("buffer holds n * dim values");
        let first = self.buf_first_row + self.used;
        let rows: Vec<usize> = (first..first + n).collect();
        self.used += n;
        Some(Ok(self.cache.select(&rows, features)))
    }
}

/// In the root of a sharded cache: refuses a manifest that leaves out a part one of the shards'
/// commit records (`records/shard-K/commit.json`) says it committed: rows the cache holds, and a
/// `parts/**/*.parquet` glob reads, that vggcache would silently not (a manifest edited and
/// resealed). A folder without `records/` (a one-machine cache, a pulled copy) has nothing to check.
fn unlisted_part(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let records = dir.join(super::parts::RECORDS_DIR);
    let Ok(shards) = std::fs::read_dir(&records) else {
        return Ok(());
    };
    let listed: std::collections::HashSet<&str> =
        manifest.shards.iter().map(|s| s.file.as_str()).collect();
    for shard in shards {
        let commit = shard
            .map_err(CacheError::io(&records))?
            .path()
            .join("commit.json");
        let Ok(bytes) = std::fs::read(&commit) else {
            continue;
        };
        let record: super::parts::ShardCommit =
            serde_json::from_slice(&bytes).map_err(|e| CacheError::BadRecord {
                url: commit.display().to_string(),
                message: e.to_string(),
            })?;
        for part in record.parts.iter().filter_map(|p| p.file.as_ref()) {
            if !listed.contains(part.file.as_str()) {
                return Err(CacheError::UnlistedPart {
                    record: commit,
                    part: part.file.clone(),
                    root: dir.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

/// Refuses a top-level `shard-*.parquet` the manifest neither lists nor names in a change in
/// progress: a `*.parquet` glob would read rows vggcache does not (a shard dropped from an edited
/// manifest, or a duplicate an interrupted run left).
fn unlisted_shard(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let mut known: std::collections::HashSet<&str> =
        manifest.shards.iter().map(|s| s.file.as_str()).collect();
    if let Some(c) = &manifest.committing {
        known.extend(c.shards.iter().map(|s| s.file.as_str()));
        known.extend(c.retire.iter().map(String::as_str));
    }
    let entries = std::fs::read_dir(dir).map_err(CacheError::io(dir))?;
    for entry in entries {
        let entry = entry.map_err(CacheError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("shard-") && name.ends_with(".parquet") && !known.contains(name) {
            return Err(CacheError::UnlistedShard { path: entry.path() });
        }
    }
    Ok(())
}
