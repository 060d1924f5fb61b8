//! Reading one shard file: check it against its manifest entry or its own footer, then decode its
//! columns (every column but `features` checked and validated; features straight into a buffer).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float16Type;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::checksum::{footer_start, sha256_prefix, sha256_prefixes};
use super::{KV_CLASSES, KV_DATA_BYTES, KV_DATA_SHA256, KV_FINGERPRINT};
use crate::cache::manifest::ShardInfo;
use crate::cache::schema::{
    check_schema, column_u32, column_utf8, column_views, FeatureDtype, COL_CLASS, COL_FEATURES,
    COL_HASH, COL_LABEL, COL_PATH, COL_SPLIT,
};
use crate::cache::CacheError;
use crate::dataset::Split;

/// The non-feature columns of one shard, in row order.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardMeta {
    pub paths: Vec<String>,
    pub splits: Vec<Split>,
    pub labels: Vec<Option<u32>>,
    pub classes: Vec<Option<String>>,
    pub hashes: Vec<String>,
    /// The view of each row (0 = plain; all 0 in a shard without the view column).
    pub views: Vec<u32>,
    /// Each view's recipe (JSON), `None` for plain views.
    pub recipes: Vec<Option<String>>,
    /// Each row's key in the cache, [`crate::cache::index::row_key`]`(path, view)`: unique.
    pub keys: Vec<String>,
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
    dtype: FeatureDtype,
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
    check_schema(metadata.schema(), dim, dtype).map_err(corrupt)?;
    let rows = metadata.metadata().file_metadata().num_rows();
    if usize::try_from(rows).ok() != Some(info.rows) {
        return Err(corrupt(format!(
            "holds {rows} rows, the manifest says {}",
            info.rows
        )));
    }
    Ok(CheckedShard { path, metadata })
}

/// The cache identity fingerprint a shard's footer records, read without checking anything
/// else (`None`: no such file, an unreadable footer, or a footer without one).
pub(crate) fn footer_fingerprint(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let metadata = no_panic(path, || {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
            CacheError::CorruptShard {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })
    })
    .ok()?;
    metadata
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == KV_FINGERPRINT)
        .and_then(|kv| kv.value.clone())
}

/// A shard no manifest lists, checked against its own footer: the sha256 of its data matches
/// the one it recorded, its schema has `dim` features. Returns the shard, its manifest entry
/// (whole-file sha256 computed now), and the identity fingerprint and class list it was written
/// for. Used to rebuild a lost or damaged manifest from intact shards.
pub(crate) fn check_unlisted(
    path: PathBuf,
    file_name: &str,
    dim: usize,
    dtype: FeatureDtype,
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
    check_schema(metadata.schema(), dim, dtype).map_err(corrupt)?;
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
    /// The footer's value of `key` (e.g. [`super::KV_FINGERPRINT`]), if it records one.
    pub fn footer_value(&self, key: &str) -> Option<String> {
        self.metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    }

    /// Checks the identity fingerprint the footer records (when it records one) against the
    /// manifest's `fingerprint`: a shard of another model, preprocessing or width, or a manifest
    /// edited to list it, is refused.
    pub fn check_identity(&self, fingerprint: &str) -> Result<(), CacheError> {
        match self.footer_value(super::KV_FINGERPRINT) {
            Some(found) if found != fingerprint => Err(self.corrupt(format!(
                "its footer records cache identity {found}, the manifest says {fingerprint} \
                 (features of another model, preprocessing or width, or an edited manifest)"
            ))),
            _ => Ok(()),
        }
    }

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
        let utf8 = |name: &str| column_utf8(batch, name).map_err(|m| self.corrupt(m));
        let paths = utf8(COL_PATH)?;
        let splits = utf8(COL_SPLIT)?;
        let classes = utf8(COL_CLASS)?;
        let hashes = utf8(COL_HASH)?;
        let labels = column_u32(batch, COL_LABEL).map_err(|m| self.corrupt(m))?;
        if paths.null_count() + splits.null_count() + hashes.null_count() > 0 {
            return Err(self.corrupt("null in path, split or content_hash".into()));
        }
        let (views, recipes) = column_views(batch).map_err(|m| self.corrupt(m))?;
        for (i, &view) in views.iter().enumerate() {
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
            let split = Split::from_stored(splits.value(i)).ok_or_else(|| {
                self.corrupt(format!(
                    "row {} ({}) has split '{}': expected train, val or test",
                    meta.paths.len(),
                    paths.value(i),
                    splits.value(i)
                ))
            })?;
            meta.splits.push(split);
            meta.labels.push(label);
            meta.classes
                .push(classes.is_valid(i).then(|| classes.value(i).to_string()));
            meta.hashes.push(hashes.value(i).to_string());
            meta.keys
                .push(crate::cache::index::row_key(paths.value(i), view));
        }
        meta.views.extend(views);
        meta.recipes.extend(recipes);
        Ok(())
    }

    /// Reads the features of row group `rg` and copies the rows where `keep` is true (all rows
    /// when `keep` is `None`) into `dest`, row-major. `dest: (kept rows, dim)` flattened.
    ///
    /// Uses Parquet's column reader directly: the page values are decoded into one `Vec<f32>`
    /// (no Arrow array building), checked (every row exactly `dim` values, no nulls), and copied
    /// once into `dest`.
    pub(crate) fn read_features(
        &self,
        rg: usize,
        dim: usize,
        keep: Option<&[bool]>,
        dest: &mut [f32],
    ) -> Result<(), CacheError> {
        // A decode panic inside Parquet becomes CorruptShard (see `no_panic`).
        no_panic(&self.path, || {
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
            let mut column = match column {
                ColumnReader::FloatColumnReader(c) => c,
                ColumnReader::FixedLenByteArrayColumnReader(_) => {
                    return self.read_features_f16(rg, dim, keep, dest);
                }
                _ => return Err(self.corrupt("features items are not float32 or float16".into())),
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
                    return Err(
                        self.corrupt(format!("row group {rg} holds NaN or infinite features"))
                    );
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
        })
    }
}

impl CheckedShard {
    /// [`CheckedShard::read_features`] for FLOAT16 features (`FixedSizeList<Float16>`): Arrow
    /// decodes row group `rg` a few rows at a time, each value widened to f32 into `dest`
    /// (`(kept rows, dim)` row-major); the same checks (row counts, no nulls, finite values).
    fn read_features_f16(
        &self,
        rg: usize,
        dim: usize,
        keep: Option<&[bool]>,
        dest: &mut [f32],
    ) -> Result<(), CacheError> {
        let err = |e: &dyn std::fmt::Display| self.corrupt(format!("row group {rg}: {e}"));
        let col = self
            .metadata
            .schema()
            .index_of(COL_FEATURES)
            .map_err(|e| err(&e))?;
        let mask = ProjectionMask::roots(self.metadata.parquet_schema(), [col]);
        let rows = self.metadata.metadata().row_group(rg).num_rows() as usize;
        let reader = self
            .builder()?
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size((CHUNK_VALUES / dim).max(1))
            .build()
            .map_err(|e| err(&e))?;
        let (mut records, mut out) = (0usize, 0usize);
        for batch in reader {
            let batch = batch.map_err(|e| err(&e))?;
            let r = batch.num_rows();
            let list = batch
                .column(0)
                .as_fixed_size_list_opt()
                .ok_or_else(|| err(&"features is not a fixed-size list"))?;
            let values = list
                .values()
                .as_primitive_opt::<Float16Type>()
                .ok_or_else(|| err(&"features items are not float16"))?;
            let vals = values.values();
            if list.null_count() + values.null_count() > 0 || vals.len() != r * dim {
                return Err(err(&format!(
                    "{r} rows gave {} values ({} null), expected {} non-null",
                    vals.len(),
                    list.null_count() + values.null_count(),
                    r * dim
                )));
            }
            for (i, row) in vals.chunks_exact(dim).enumerate() {
                if keep.is_none_or(|k| k[records + i]) {
                    let to = &mut dest[out * dim..(out + 1) * dim];
                    row.convert_to_f32_slice(to);
                    if !all_finite(to) {
                        return Err(err(&"holds NaN or infinite features"));
                    }
                    out += 1;
                }
            }
            records += r;
        }
        if records != rows || out * dim != dest.len() {
            return Err(err(&format!(
                "yielded {records} rows, its footer says {rows}"
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

/// All batches of one shard file (an `Err` item if it cannot be read).
pub(crate) fn read_all(path: &Path, batch_rows: usize) -> Vec<Result<RecordBatch, CacheError>> {
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

/// Whether the shard file at `path` has the `view` columns (its footer's schema; no data read).
pub(crate) fn has_view_columns(path: &Path) -> Result<bool, CacheError> {
    let f = File::open(path).map_err(CacheError::io(path))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(CacheError::pq(path))?;
    Ok(b.schema()
        .column_with_name(crate::cache::schema::COL_VIEW)
        .is_some())
}

/// Runs a decode step, turning a panic inside Parquet/Arrow (they assert on some malformed
/// inputs, e.g. a validity bitmap shorter than its column) into [`CacheError::CorruptShard`].
/// Checksums catch damaged bytes before decoding; this is the second line.
pub(crate) fn no_panic<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, CacheError>,
) -> Result<T, CacheError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(CacheError::CorruptShard {
                path: path.to_path_buf(),
                message: format!("decoding failed: {what}"),
            })
        }
    }
}
