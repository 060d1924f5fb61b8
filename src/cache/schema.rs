//! The shard schema (Arrow ⇄ Parquet): columns by name, write options, rows → `RecordBatch`.

use std::sync::Arc;

use std::collections::HashSet;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::CacheError;
use crate::dataset::Split;

/// Column names, in file order.
pub const COL_PATH: &str = "path";
pub const COL_SPLIT: &str = "split";
pub const COL_LABEL: &str = "label";
pub const COL_CLASS: &str = "class";
pub const COL_HASH: &str = "content_hash";
pub const COL_FEATURES: &str = "features";

/// The Arrow schema of every shard of a cache with `dim` features per row:
/// `path` utf8, `split` utf8, `label` uint32 (nullable), `class` utf8 (nullable),
/// `content_hash` utf8, `features` FixedSizeList<Float32, dim>.
pub fn cache_schema(dim: usize) -> SchemaRef {
    let size = i32::try_from(dim).expect("feature dim fits in i32 (Arrow FixedSizeList size)");
    Arc::new(Schema::new(vec![
        Field::new(COL_PATH, DataType::Utf8, false),
        Field::new(COL_SPLIT, DataType::Utf8, false),
        Field::new(COL_LABEL, DataType::UInt32, true),
        Field::new(COL_CLASS, DataType::Utf8, true),
        Field::new(COL_HASH, DataType::Utf8, false),
        Field::new(
            COL_FEATURES,
            DataType::FixedSizeList(item_field(), size),
            false,
        ),
    ]))
}

/// Column `name` of `batch` as utf8; `Err` says what is wrong (for a corruption message).
pub(crate) fn column_utf8<'b>(
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b StringArray, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("column '{name}' is missing"))?
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column '{name}' is not utf8"))
}

/// Column `name` of `batch` as uint32; `Err` says what is wrong.
pub(crate) fn column_u32<'b>(
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b UInt32Array, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        .ok_or_else(|| format!("column '{name}' is missing or not uint32"))
}

fn item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, false))
}

/// Checks a shard's Arrow schema against [`cache_schema`]; `Err` says what differs.
pub(crate) fn check_schema(found: &Schema, dim: usize) -> Result<(), String> {
    let expected = cache_schema(dim);
    for want in expected.fields() {
        let Ok(got) = found.field_with_name(want.name()) else {
            return Err(format!("column '{}' is missing", want.name()));
        };
        if got.data_type() != want.data_type() {
            return Err(format!(
                "column '{}' has type {}, expected {}",
                want.name(),
                got.data_type(),
                want.data_type()
            ));
        }
    }
    Ok(())
}

/// Parquet compression codec of the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Snappy,
    Lz4,
    Zstd(i32),
}

impl Compression {
    fn to_parquet(self) -> parquet::basic::Compression {
        match self {
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
            Compression::Snappy => parquet::basic::Compression::SNAPPY,
            Compression::Lz4 => parquet::basic::Compression::LZ4_RAW,
            Compression::Zstd(level) => parquet::basic::Compression::ZSTD(
                ZstdLevel::try_new(level).expect("zstd level in 1..=22"),
            ),
        }
    }

    /// Short name as recorded in the manifest, e.g. "zstd(1)".
    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Snappy => "snappy".into(),
            Compression::Lz4 => "lz4_raw".into(),
            Compression::Zstd(level) => format!("zstd({level})"),
        }
    }
}

/// How shards are written. The default was chosen by `cargo bench --bench cache` on the 2-core
/// development machine (figures in the module doc of `cache`): LZ4_RAW on PLAIN float32 makes
/// shards about 0.6x raw float32 (ReLU features are half exact zeros) and reads about 1.7x faster
/// than zstd(1), which is 15% smaller; BYTE_STREAM_SPLIT made both bigger and slower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteOptions {
    pub compression: Compression,
    /// BYTE_STREAM_SPLIT encoding for the feature values instead of PLAIN.
    pub byte_stream_split: bool,
    /// Maximum rows per Parquet row group (one row of VGG16 features is 98 KiB raw).
    pub row_group_rows: usize,
    /// Rows per shard below which [`super::CacheWriter::finish`] merges neighbouring shards.
    pub compact_below_rows: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Lz4,
            byte_stream_split: false,
            row_group_rows: 256,
            compact_below_rows: 256,
        }
    }
}

impl WriteOptions {
    /// Parquet writer properties for a cache of `dim` features per row, with `kv` in the footer.
    pub(crate) fn properties(&self, dim: usize, kv: Vec<KeyValue>) -> WriterProperties {
        let mut b = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .set_compression(self.compression.to_parquet())
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_created_by(format!("vggcache {}", env!("CARGO_PKG_VERSION")));
        let descr = ArrowSchemaConverter::new()
            .convert(&cache_schema(dim))
            .expect("the cache schema converts to Parquet");
        for col in descr.columns() {
            let path = col.path().clone();
            let top = path.parts()[0].as_str();
            if top == COL_FEATURES {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
                if self.byte_stream_split {
                    b = b.set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
                }
            } else if top == COL_PATH || top == COL_HASH {
                b = b.set_column_dictionary_enabled(ColumnPath::from(top), false);
            }
        }
        b.build()
    }
}

/// One image's features, as handed to [`super::CacheWriter::append_shard`].
#[derive(Debug, Clone, Copy)]
pub struct FeatureRow<'a> {
    /// Path relative to the images folder; unique within the cache.
    pub path: &'a str,
    pub split: Split,
    /// Index into the writer's class list; `None` for unlabelled images.
    pub label: Option<u32>,
    /// `classes[label]`, or `None` (filled in from the label); must be `None` when `label` is.
    pub class: Option<&'a str>,
    /// Hash of the image file's bytes (hex).
    pub content_hash: &'a str,
    /// `(dim,)`, finite.
    pub features: &'a [f32],
}

/// Columns of one batch of rows, owned, in schema order; built by the writer.
pub(crate) struct Columns<'a> {
    pub paths: Vec<&'a str>,
    pub splits: Vec<&'a str>,
    pub labels: Vec<Option<u32>>,
    pub classes: Vec<Option<&'a str>>,
    pub hashes: Vec<&'a str>,
    /// `(rows, dim)` row-major.
    pub features: Vec<f32>,
}

impl<'a> Columns<'a> {
    /// Checks `rows` (each path once, `dim` finite features, label below `classes.len()` and
    /// agreeing with the class name when given) and packs them into columns.
    pub fn from_rows(
        rows: &[FeatureRow<'a>],
        dim: usize,
        classes: &'a [String],
    ) -> Result<Columns<'a>, CacheError> {
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
            cols.splits.push(r.split.as_str());
            cols.labels.push(r.label);
            cols.classes.push(class);
            cols.hashes.push(r.content_hash);
            cols.features.extend_from_slice(r.features);
        }
        Ok(cols)
    }
}

/// Builds a `RecordBatch` of [`cache_schema`]`(dim)` from columns.
pub(crate) fn to_batch(cols: Columns<'_>, dim: usize) -> RecordBatch {
    let n = cols.paths.len();
    assert_eq!(
        cols.features.len(),
        n * dim,
        "features buffer is rows * dim"
    );
    let values: ArrayRef = Arc::new(Float32Array::from(cols.features));
    let size = i32::try_from(dim).expect("feature dim fits in i32");
    let features = FixedSizeListArray::new(item_field(), size, values, None);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(cols.paths)),
        Arc::new(StringArray::from(cols.splits)),
        Arc::new(UInt32Array::from(cols.labels)),
        Arc::new(StringArray::from(cols.classes)),
        Arc::new(StringArray::from(cols.hashes)),
        Arc::new(features),
    ];
    let batch = RecordBatch::try_new(cache_schema(dim), columns)
        .expect("columns built to match the cache schema");
    debug_assert_eq!(batch.num_rows(), n);
    debug_assert!(batch
        .column_by_name(COL_FEATURES)
        .is_some_and(|c| c.len() == n));
    batch
}
