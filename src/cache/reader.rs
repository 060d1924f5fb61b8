//! Reading the cache: verify the manifest against the shards, then features as `(n, dim)` arrays.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;
use ndarray::Array2;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rayon::prelude::*;

use super::lock::CacheLock;
use super::manifest::{Manifest, ShardInfo};
use super::schema::{check_schema, COL_FEATURES, COL_HASH};
use super::shard::{
    footer_start, no_panic, sha256_prefix, sha256_prefixes, shard_places, KV_CLASSES,
    KV_DATA_BYTES, KV_DATA_SHA256, KV_FINGERPRINT,
};
use super::{CacheError, MANIFEST_FILE};

/// Rows of the cache (a split, all of it, or one batch): names, labels and features.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitData {
    /// Image paths relative to the images folder, one per row.
    pub paths: Vec<String>,
    pub splits: Vec<String>,
    /// Class index into [`FeatureCache::classes`]; `None` for unlabelled images.
    pub labels: Vec<Option<u32>>,
    /// `(n, dim)`, row i belongs to `paths[i]`.
    pub features: Array2<f32>,
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
    pub shards: usize,
    pub rows: usize,
    pub bytes: u64,
}

/// The non-feature columns of one shard, in row order.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardMeta {
    pub paths: Vec<String>,
    pub splits: Vec<String>,
    pub labels: Vec<Option<u32>>,
    pub classes: Vec<Option<String>>,
    pub hashes: Vec<String>,
}

/// A shard checked against its manifest entry: exists, size, schema, row count.
pub(crate) struct CheckedShard {
    pub path: PathBuf,
    pub metadata: ArrowReaderMetadata,
}

/// Opens the shard of `info` at `path` and checks it against the manifest; reads only the footer.
pub(crate) fn check_shard(
    path: PathBuf,
    info: &ShardInfo,
    dim: usize,
) -> Result<CheckedShard, CacheError> {
    let corrupt = |message: String| CacheError::CorruptShard {
        path: path.clone(),
        message,
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CacheError::MissingShard { path });
        }
        Err(e) => return Err(CacheError::io(&path)(e)),
    };
    let mut file = file;
    let size = file.metadata().map_err(CacheError::io(&path))?.len();
    if size != info.bytes {
        return Err(corrupt(format!(
            "file is {size} bytes, the manifest says {} bytes",
            info.bytes
        )));
    }
    if let Some(want) = &info.sha256 {
        let found = sha256_prefix(&mut file, size, &path)?;
        if &found != want {
            return Err(corrupt(format!(
                "sha256 is {found}, the manifest recorded {want} (bytes changed since it was written)"
            )));
        }
    }
    let metadata = no_panic(&path, || {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| corrupt(format!("cannot read the Parquet footer: {e}")))
    })?;
    check_schema(metadata.schema(), dim).map_err(corrupt)?;
    let rows = metadata.metadata().file_metadata().num_rows();
    if usize::try_from(rows).ok() != Some(info.rows) {
        return Err(corrupt(format!(
            "holds {rows} rows, the manifest says {}",
            info.rows
        )));
    }
    Ok(CheckedShard { path, metadata })
}

/// Where listed shard `file` is: `dir/file`, or where a commit interrupted before its last
/// rename left it (`pending/file.pending`, `file.staged`; the next writer moves it up).
fn locate(dir: &Path, file: &str) -> PathBuf {
    let plain = dir.join(file);
    if plain.exists() {
        return plain;
    }
    shard_places(dir, file)
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or(plain)
}

/// A shard no manifest lists, checked against its own footer: the sha256 of its data matches
/// the one it recorded, its schema has `dim` features. Returns the shard, its manifest entry
/// (whole-file sha256 computed now), and the identity fingerprint and class list it was written
/// for. Used to rebuild a lost or damaged manifest from intact shards.
pub(crate) fn check_unlisted(
    path: PathBuf,
    file_name: &str,
    dim: usize,
) -> Result<(CheckedShard, ShardInfo, String, Vec<String>), CacheError> {
    let corrupt = |message: String| CacheError::CorruptShard {
        path: path.clone(),
        message,
    };
    let mut file = File::open(&path).map_err(CacheError::io(&path))?;
    let size = file.metadata().map_err(CacheError::io(&path))?.len();
    let start = footer_start(&mut file, &path)?;
    let metadata = no_panic(&path, || {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| corrupt(format!("cannot read the Parquet footer: {e}")))
    })?;
    let kv: HashMap<String, String> = metadata
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| kv.value.clone().map(|v| (kv.key.clone(), v)))
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| {
        kv.get(k)
            .cloned()
            .ok_or_else(|| corrupt(format!("footer has no '{k}' (not a self-checking shard)")))
    };
    let recorded = get(KV_DATA_SHA256)?;
    let covered: u64 = get(KV_DATA_BYTES)?
        .parse()
        .ok()
        .filter(|&n| n <= start)
        .ok_or_else(|| {
            corrupt(format!(
                "footer '{KV_DATA_BYTES}' is not a length below {start}"
            ))
        })?;
    // The data prefix and the whole file in one pass (the manifest entry wants the latter).
    let [data_sha, whole]: [String; 2] = sha256_prefixes(&mut file, &[covered, size], &path)?
        .try_into()
        .expect("one digest per length");
    if recorded != data_sha {
        return Err(corrupt(format!(
            "data sha256 is {data_sha}, the footer recorded {recorded}"
        )));
    }
    let fingerprint = get(KV_FINGERPRINT)?;
    let classes: Vec<String> = serde_json::from_str(&get(KV_CLASSES)?)
        .map_err(|e| corrupt(format!("footer class list is not a JSON list: {e}")))?;
    check_schema(metadata.schema(), dim).map_err(corrupt)?;
    let rows = usize::try_from(metadata.metadata().file_metadata().num_rows())
        .map_err(|_| corrupt("negative row count".into()))?;
    let info = ShardInfo {
        file: file_name.to_string(),
        rows,
        bytes: size,
        sha256: Some(whole),
    };
    Ok((CheckedShard { path, metadata }, info, fingerprint, classes))
}

impl CheckedShard {
    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<File>, CacheError> {
        let file = File::open(&self.path).map_err(CacheError::io(&self.path))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            file,
            self.metadata.clone(),
        ))
    }

    fn corrupt(&self, message: String) -> CacheError {
        CacheError::CorruptShard {
            path: self.path.clone(),
            message,
        }
    }

    /// Rows in each row group.
    pub fn row_groups(&self) -> Vec<usize> {
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows() as usize)
            .collect()
    }

    /// Every column except `features`, checked: each array's buffers, offsets and null counts
    /// validated before use; labels index `classes` and agree with the row's `class`; one value
    /// per row. A decode panic inside Parquet/Arrow becomes [`CacheError::CorruptShard`].
    pub fn read_meta(&self, classes: &[String]) -> Result<ShardMeta, CacheError> {
        no_panic(&self.path, || self.read_meta_inner(classes))
    }

    fn read_meta_inner(&self, classes: &[String]) -> Result<ShardMeta, CacheError> {
        let schema = self.metadata.schema();
        let roots: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| schema.field(i).name() != COL_FEATURES)
            .collect();
        let mask = ProjectionMask::roots(self.metadata.parquet_schema(), roots);
        let reader = self
            .builder()?
            .with_projection(mask)
            .with_batch_size(8192)
            .build()
            .map_err(|e| self.corrupt(e.to_string()))?;
        let mut meta = ShardMeta::default();
        for batch in reader {
            let batch = batch.map_err(|e| self.corrupt(e.to_string()))?;
            for (i, col) in batch.columns().iter().enumerate() {
                col.to_data().validate_full().map_err(|e| {
                    self.corrupt(format!(
                        "column '{}' does not decode consistently: {e}",
                        batch.schema().field(i).name()
                    ))
                })?;
            }
            self.append_meta(&batch, classes, &mut meta)?;
        }
        Ok(meta)
    }

    fn append_meta(
        &self,
        batch: &RecordBatch,
        classes_list: &[String],
        meta: &mut ShardMeta,
    ) -> Result<(), CacheError> {
        let n_classes = classes_list.len();
        let utf8 = |name: &str| -> Result<_, CacheError> {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| self.corrupt(format!("column '{name}' is missing")))?;
            col.as_string_opt::<i32>()
                .ok_or_else(|| self.corrupt(format!("column '{name}' is not utf8")))
        };
        let paths = utf8(super::schema::COL_PATH)?;
        let splits = utf8(super::schema::COL_SPLIT)?;
        let classes = utf8(super::schema::COL_CLASS)?;
        let hashes = utf8(COL_HASH)?;
        let labels = batch
            .column_by_name(super::schema::COL_LABEL)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| self.corrupt("column 'label' is missing or not uint32".into()))?;
        if paths.null_count() + splits.null_count() + hashes.null_count() > 0 {
            return Err(self.corrupt("null in path, split or content_hash".into()));
        }
        for i in 0..batch.num_rows() {
            let label = labels.is_valid(i).then(|| labels.value(i));
            let class = classes.is_valid(i).then(|| classes.value(i));
            match (label, class) {
                (None, None) => {}
                (Some(l), _) if l as usize >= n_classes => {
                    return Err(self.corrupt(format!(
                        "row {} ({}) has label {l}, but the manifest lists {n_classes} classes",
                        meta.paths.len(),
                        paths.value(i)
                    )));
                }
                (Some(l), Some(c)) if classes_list[l as usize] == c => {}
                (l, c) => {
                    return Err(self.corrupt(format!(
                        "row {} ({}) has label {} = class '{}' in the manifest, but its class column says '{}'",
                        meta.paths.len(),
                        paths.value(i),
                        l.map_or("none".to_string(), |l| l.to_string()),
                        l.map_or("none", |l| classes_list[l as usize].as_str()),
                        c.unwrap_or("none")
                    )));
                }
            }
            meta.paths.push(paths.value(i).to_string());
            meta.splits.push(splits.value(i).to_string());
            meta.labels.push(label);
            meta.classes
                .push(classes.is_valid(i).then(|| classes.value(i).to_string()));
            meta.hashes.push(hashes.value(i).to_string());
        }
        Ok(())
    }

    /// Reads the features of row group `rg` and copies the rows where `keep` is true (all rows
    /// when `keep` is `None`) into `dest`, row-major. `dest: (kept rows, dim)` flattened.
    ///
    /// Uses Parquet's column reader directly: the page values are decoded into one `Vec<f32>`
    /// (no Arrow array building), checked (every row exactly `dim` values, no nulls), and copied
    /// once into `dest`.
    fn read_features(
        &self,
        rg: usize,
        dim: usize,
        keep: Option<&[bool]>,
        dest: &mut [f32],
    ) -> Result<(), CacheError> {
        no_panic(&self.path, || self.read_features_inner(rg, dim, keep, dest))
    }

    fn read_features_inner(
        &self,
        rg: usize,
        dim: usize,
        keep: Option<&[bool]>,
        dest: &mut [f32],
    ) -> Result<(), CacheError> {
        let descr = self.metadata.parquet_schema();
        let leaf = (0..descr.num_columns())
            .find(|&i| descr.column(i).path().parts()[0] == COL_FEATURES)
            .ok_or_else(|| self.corrupt("no features column".into()))?;
        let rows = self.metadata.metadata().row_group(rg).num_rows() as usize;
        let file = File::open(&self.path).map_err(CacheError::io(&self.path))?;
        let pq_err = |e: parquet::errors::ParquetError| self.corrupt(e.to_string());
        let reader = SerializedFileReader::new(file).map_err(pq_err)?;
        let column = reader
            .get_row_group(rg)
            .and_then(|g| g.get_column_reader(leaf))
            .map_err(pq_err)?;
        let ColumnReader::FloatColumnReader(mut column) = column else {
            return Err(self.corrupt("features items are not float32".into()));
        };
        // Decode a few rows at a time so the values and level buffers stay in cache; only
        // `dest` streams to memory.
        let chunk = (CHUNK_VALUES / dim).max(1);
        let mut values: Vec<f32> = Vec::with_capacity(chunk * dim);
        let (mut def, mut rep) = (Vec::new(), Vec::new());
        let mut records = 0;
        let mut out = 0; // rows written to dest
        while records < rows {
            def.clear();
            rep.clear();
            values.clear();
            let (r, v, levels) = column
                .read_records(
                    chunk.min(rows - records),
                    Some(&mut def),
                    Some(&mut rep),
                    &mut values,
                )
                .map_err(pq_err)?;
            if r == 0 {
                break;
            }
            // Every row exactly `dim` non-null values: levels = values = r * dim, and a record
            // starts (rep level 0) exactly every `dim` levels.
            let starts = rep.iter().filter(|&&x| x == 0).count();
            let aligned = rep.iter().step_by(dim).all(|&x| x == 0);
            if v != r * dim || levels != v || starts != r || !aligned || values.len() != v {
                return Err(self.corrupt(format!(
                    "row group {rg}: {r} rows gave {v} values in {levels} levels, expected {} each",
                    r * dim
                )));
            }
            if !all_finite(&values) {
                return Err(self.corrupt(format!("row group {rg} holds NaN or infinite features")));
            }
            for (i, row) in values.chunks_exact(dim).enumerate() {
                if keep.is_none_or(|k| k[records + i]) {
                    dest[out * dim..(out + 1) * dim].copy_from_slice(row);
                    out += 1;
                }
            }
            records += r;
        }
        if records != rows || out * dim != dest.len() {
            return Err(self.corrupt(format!(
                "row group {rg} yielded {records} rows, its footer says {rows}"
            )));
        }
        Ok(())
    }
}

/// Feature values decoded per step by [`CheckedShard::read_features`] (about 1 MiB).
const CHUNK_VALUES: usize = 1 << 18;

/// True when no value is NaN or ±inf (written to vectorise: no early exit).
fn all_finite(xs: &[f32]) -> bool {
    xs.chunks(4096)
        .all(|c| c.iter().fold(true, |ok, x| ok & x.is_finite()))
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
    splits: Vec<String>,
    labels: Vec<Option<u32>>,
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
        let manifest = Manifest::load(&manifest_path)?.ok_or_else(|| CacheError::NotACache {
            path: dir.to_path_buf(),
        })?;
        if manifest.format_version != super::FORMAT_VERSION {
            return Err(CacheError::UnsupportedFormat {
                path: manifest_path,
                expected: super::FORMAT_VERSION,
                found: manifest.format_version,
            });
        }
        let lock = CacheLock::shared(dir)?;
        let dim = manifest.dim;
        let checked: Vec<CheckedShard> = manifest
            .shards
            .par_iter()
            .map(|info| check_shard(locate(dir, &info.file), info, dim))
            .collect::<Result<_, _>>()?;
        let metas: Vec<ShardMeta> = checked
            .par_iter()
            .map(|s| s.read_meta(&manifest.classes))
            .collect::<Result<_, _>>()?;
        let total = manifest.rows();
        let mut paths = Vec::with_capacity(total);
        let mut splits = Vec::with_capacity(total);
        let mut labels = Vec::with_capacity(total);
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
            for p in &meta.paths {
                if let Some(other) = seen.insert(p.clone(), s) {
                    return Err(CacheError::CorruptShard {
                        path: shard.path.clone(),
                        message: format!(
                            "row '{p}' is also in shard {}",
                            manifest.shards[other].file
                        ),
                    });
                }
            }
            paths.extend(meta.paths);
            splits.extend(meta.splits);
            labels.extend(meta.labels);
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

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
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

    /// Split names present, sorted.
    pub fn split_names(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.splits.iter().map(String::as_str).collect();
        set.into_iter().map(String::from).collect()
    }

    /// All rows whose split is `split`, in cache order. `features: (n, dim)`.
    pub fn split(&self, split: &str) -> Result<SplitData, CacheError> {
        let keep: Vec<bool> = self.splits.iter().map(|s| s == split).collect();
        if !keep.iter().any(|&k| k) {
            return Err(CacheError::NoSuchSplit {
                path: self.dir.clone(),
                split: split.to_string(),
                present: self.split_names().join(", "),
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
            splits: rows.iter().map(|&i| self.splits[i].clone()).collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            features,
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
