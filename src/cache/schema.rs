//! The shard schema (Arrow ⇄ Parquet): columns by name, write options, rows → `RecordBatch`.

use std::sync::Arc;

use std::collections::HashSet;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float16Array, Float32Array, RecordBatch,
    StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use half::f16;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use super::CacheError;
use crate::dataset::Split;

/// Column names, in file order.
pub const COL_PATH: &str = "path";
pub const COL_SPLIT: &str = "split";
pub const COL_LABEL: &str = "label";
pub const COL_CLASS: &str = "class";
pub const COL_HASH: &str = "content_hash";
pub const COL_FEATURES: &str = "features";
/// Optional column (after `features`): which view of the image the row is, 0 = the plain image.
/// A shard without it holds plain views only.
pub const COL_VIEW: &str = "view";
/// Optional column beside [`COL_VIEW`]: the view's recipe as JSON
/// ([`crate::dataset::augment::ViewRecipe`]), null for the plain view.
pub const COL_VIEW_RECIPE: &str = "view_recipe";

/// How feature values are stored: float32 (the default, exact) or float16 (Parquet FLOAT16, half
/// the bytes; values are rounded to f16 on write and widened to f32 on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// 16-bit floats: half the bytes; values beyond ±65504 are an error.
    F16,
}

impl FeatureDtype {
    /// True for the default, [`FeatureDtype::F32`] (the manifest omits the field then, so a
    /// float32 manifest serialises exactly as before the field existed).
    pub fn is_f32(&self) -> bool {
        *self == FeatureDtype::F32
    }

    /// "f32" or "f16".
    pub fn name(self) -> &'static str {
        match self {
            FeatureDtype::F32 => "f32",
            FeatureDtype::F16 => "f16",
        }
    }

    pub(crate) fn arrow(self) -> DataType {
        match self {
            FeatureDtype::F32 => DataType::Float32,
            FeatureDtype::F16 => DataType::Float16,
        }
    }
}

impl std::fmt::Display for FeatureDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FeatureDtype {
    type Err = String;

    /// "f32" or "f16".
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(FeatureDtype::F32),
            "f16" => Ok(FeatureDtype::F16),
            _ => Err(format!("expected f32 or f16, got {s:?}")),
        }
    }
}

/// The Arrow schema of every shard of a float32 cache with `dim` features per row:
/// `path` utf8, `split` utf8, `label` uint32 (nullable), `class` utf8 (nullable),
/// `content_hash` utf8, `features` FixedSizeList<Float32, dim>.
pub fn cache_schema(dim: usize) -> SchemaRef {
    cache_schema_with(dim, FeatureDtype::F32)
}

/// [`cache_schema`] with `features` items of `dtype` (FixedSizeList<Float16, dim> for f16).
pub fn cache_schema_with(dim: usize, dtype: FeatureDtype) -> SchemaRef {
    let size = i32::try_from(dim).expect("feature dim fits in i32 (Arrow FixedSizeList size)");
    Arc::new(Schema::new(vec![
        Field::new(COL_PATH, DataType::Utf8, false),
        Field::new(COL_SPLIT, DataType::Utf8, false),
        Field::new(COL_LABEL, DataType::UInt32, true),
        Field::new(COL_CLASS, DataType::Utf8, true),
        Field::new(COL_HASH, DataType::Utf8, false),
        Field::new(
            COL_FEATURES,
            DataType::FixedSizeList(item_field(dtype), size),
            false,
        ),
    ]))
}

/// [`cache_schema_with`] plus the view columns: `view` uint32, `view_recipe` utf8 (nullable).
/// Only shards holding a row other than a plain view are written with it.
pub fn cache_schema_views(dim: usize, dtype: FeatureDtype) -> SchemaRef {
    let base = cache_schema_with(dim, dtype);
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(COL_VIEW, DataType::UInt32, false));
    fields.push(Field::new(COL_VIEW_RECIPE, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// `batch` with the view columns of [`cache_schema_views`] appended (view 0, no recipe) when
/// it has none; unchanged when it has them. Lets shards with and without views be merged.
pub(crate) fn with_view_columns(
    batch: RecordBatch,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.column_by_name(COL_VIEW).is_some() {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(COL_VIEW, DataType::UInt32, false));
    fields.push(Field::new(COL_VIEW_RECIPE, DataType::Utf8, true));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(UInt32Array::from(vec![0u32; n])));
    columns.push(Arc::new(StringArray::from(vec![None::<&str>; n])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// The view of each row of `batch` (`(rows,)`; all 0 when it has no view column) and its
/// recipe; `Err` says what is wrong.
pub(crate) fn column_views(batch: &RecordBatch) -> Result<(Vec<u32>, Vec<Option<String>>), String> {
    let n = batch.num_rows();
    if batch.column_by_name(COL_VIEW).is_none() {
        return Ok((vec![0; n], vec![None; n]));
    }
    let views = column_u32(batch, COL_VIEW)?;
    if views.null_count() > 0 {
        return Err(format!("column '{COL_VIEW}' holds a null"));
    }
    let recipes = match batch.column_by_name(COL_VIEW_RECIPE) {
        None => vec![None; n],
        Some(_) => {
            let r = column_utf8(batch, COL_VIEW_RECIPE)?;
            (0..n)
                .map(|i| r.is_valid(i).then(|| r.value(i).to_string()))
                .collect()
        }
    };
    Ok((views.values().to_vec(), recipes))
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

fn item_field(dtype: FeatureDtype) -> Arc<Field> {
    Arc::new(Field::new("item", dtype.arrow(), false))
}

/// Checks a shard's Arrow schema against [`cache_schema_with`]`(dim, dtype)`; `Err` says what
/// differs (a float16 shard in a float32 cache names both types).
pub(crate) fn check_schema(found: &Schema, dim: usize, dtype: FeatureDtype) -> Result<(), String> {
    let expected = cache_schema_with(dim, dtype);
    for want in expected.fields() {
        let Ok(got) = found.field_with_name(want.name()) else {
            return Err(format!("column '{}' is missing", want.name()));
        };
        if !same_type(got.data_type(), want.data_type()) {
            return Err(format!(
                "column '{}' has type {}, expected {}",
                want.name(),
                got.data_type(),
                want.data_type()
            ));
        }
    }
    for (name, want) in [
        (COL_VIEW, DataType::UInt32),
        (COL_VIEW_RECIPE, DataType::Utf8),
    ] {
        if let Ok(got) = found.field_with_name(name) {
            if got.data_type() != &want {
                return Err(format!(
                    "column '{name}' has type {}, expected {want}",
                    got.data_type()
                ));
            }
        }
    }
    Ok(())
}

/// `a` and `b` are the same type, a fixed-size list's item field compared by type only: its
/// name (`item` from Arrow, `element` from pyarrow's default Parquet-compliant lists) and
/// nullability do not change the values, and the reader refuses a null value anyway.
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::FixedSizeList(fa, na), DataType::FixedSizeList(fb, nb)) => {
            na == nb && fa.data_type() == fb.data_type()
        }
        _ => a == b,
    }
}

/// Parquet compression codec of the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// LZ4 (Parquet LZ4_RAW).
    Lz4,
    /// Zstandard at the given level.
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
/// development machine (figures in docs/BENCHMARKS.md section 6): LZ4_RAW on PLAIN float32 makes
/// shards about 0.6x raw float32 (ReLU features are half exact zeros) and reads about 1.7x faster
/// than zstd(1), which is 15% smaller; BYTE_STREAM_SPLIT made both bigger and slower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteOptions {
    /// Codec of the shards.
    pub compression: Compression,
    /// BYTE_STREAM_SPLIT encoding for the feature values instead of PLAIN.
    pub byte_stream_split: bool,
    /// Maximum rows per Parquet row group (one row of VGG16 features is 98 KiB raw).
    pub row_group_rows: usize,
    /// Rows per shard below which [`super::CacheWriter::finish`] merges neighbouring shards.
    pub compact_below_rows: usize,
    /// Storage type of the feature values (a new cache records it in its manifest).
    pub feature_dtype: FeatureDtype,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Lz4,
            byte_stream_split: false,
            row_group_rows: 256,
            compact_below_rows: 256,
            feature_dtype: FeatureDtype::F32,
        }
    }
}

impl WriteOptions {
    /// The default options for features stored as `dtype`: f32 as [`WriteOptions::default`]
    /// (LZ4_RAW); f16 with zstd(1). Measured on the catsdogs VGG16 features (86% exact zeros; same
    /// PLAIN encoding, 256-row groups): f16 + LZ4_RAW is 0.629x the f32 + LZ4_RAW cache (LZ4 already
    /// squeezes f32's zeros), f16 + zstd(1) 0.462x, f16 + BYTE_STREAM_SPLIT 0.54-0.79x
    /// (docs/BENCHMARKS.md section 13).
    pub fn for_dtype(dtype: FeatureDtype) -> WriteOptions {
        WriteOptions {
            compression: match dtype {
                FeatureDtype::F32 => WriteOptions::default().compression,
                FeatureDtype::F16 => Compression::Zstd(1),
            },
            feature_dtype: dtype,
            ..WriteOptions::default()
        }
    }

    /// Parquet writer properties for a cache of `dim` features per row stored as `dtype`, with
    /// `kv` in the footer.
    pub(crate) fn properties(
        &self,
        dim: usize,
        dtype: FeatureDtype,
        kv: Vec<KeyValue>,
    ) -> WriterProperties {
        let mut b = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .set_compression(self.compression.to_parquet())
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_created_by(format!("vggcache {}", env!("CARGO_PKG_VERSION")));
        let descr = ArrowSchemaConverter::new()
            .convert(&cache_schema_with(dim, dtype))
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
    /// The split of the image.
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

/// A row of features and the view of its image it holds, as handed to
/// [`super::CacheWriter::append_view_shards`]. A cache row is keyed by (path, view).
#[derive(Debug, Clone, Copy)]
pub struct ViewedRow<'a> {
    /// The image's row.
    pub row: FeatureRow<'a>,
    /// 0 = the plain image; 1.. = an augmented or test-time view.
    pub view: u32,
    /// The view's recipe (JSON); `None` for the plain view.
    pub recipe: Option<&'a str>,
}

impl<'a> From<FeatureRow<'a>> for ViewedRow<'a> {
    /// The plain view (0, no recipe).
    fn from(row: FeatureRow<'a>) -> Self {
        ViewedRow {
            row,
            view: 0,
            recipe: None,
        }
    }
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
    /// How `features` is stored.
    pub dtype: FeatureDtype,
    /// `(rows,)` the view of each row, 0 = plain.
    pub views: Vec<u32>,
    /// `(rows,)` each view's recipe.
    pub recipes: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    /// Checks `rows` (each path once, `dim` finite features, label below `classes.len()` and
    /// agreeing with the class name when given; for f16, every value within f16's range) and
    /// packs them into columns.
    pub fn from_rows(
        rows: &[ViewedRow<'a>],
        dim: usize,
        classes: &'a [String],
        dtype: FeatureDtype,
    ) -> Result<Columns<'a>, CacheError> {
        let mut seen = HashSet::with_capacity(rows.len());
        let mut cols = Columns {
            paths: Vec::with_capacity(rows.len()),
            splits: Vec::with_capacity(rows.len()),
            labels: Vec::with_capacity(rows.len()),
            classes: Vec::with_capacity(rows.len()),
            hashes: Vec::with_capacity(rows.len()),
            features: Vec::with_capacity(rows.len() * dim),
            dtype,
            views: Vec::with_capacity(rows.len()),
            recipes: Vec::with_capacity(rows.len()),
        };
        if dtype == FeatureDtype::F16 {
            check_f16_range(rows)?;
        }
        for v in rows {
            let r = &v.row;
            let bad = |message: String| CacheError::BadRow {
                row_path: r.path.to_string(),
                message,
            };
            if !seen.insert((r.path, v.view)) {
                return Err(bad(format!(
                    "path appears twice in one shard (view {})",
                    v.view
                )));
            }
            if v.view == 0 && v.recipe.is_some() {
                return Err(bad("view 0 is the plain image and takes no recipe".into()));
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
            cols.views.push(v.view);
            cols.recipes.push(v.recipe);
        }
        Ok(cols)
    }
}

/// Refuses rows with values beyond f16's range (|x| > 65504 rounds to infinity): counts them
/// over all `rows` and names the first row and the largest magnitude.
fn check_f16_range(rows: &[ViewedRow<'_>]) -> Result<(), CacheError> {
    let (mut count, mut max, mut first) = (0usize, 0f32, None);
    for r in rows.iter().map(|v| &v.row) {
        for &x in r.features {
            if f16::from_f32(x).is_infinite() {
                count += 1;
                max = max.max(x.abs());
                first.get_or_insert(r.path);
            }
        }
    }
    match first {
        None => Ok(()),
        Some(path) => Err(CacheError::F16Range {
            count,
            max,
            first: path.to_string(),
        }),
    }
}

/// Builds a `RecordBatch` of [`cache_schema_with`]`(dim, cols.dtype)` from columns, or of
/// [`cache_schema_views`] when a row is not a plain view.
pub(crate) fn to_batch(cols: Columns<'_>, dim: usize) -> RecordBatch {
    let n = cols.paths.len();
    assert_eq!(
        cols.features.len(),
        n * dim,
        "features buffer is rows * dim"
    );
    let dtype = cols.dtype;
    let with_views = cols.views.iter().any(|&v| v != 0);
    let values: ArrayRef = match dtype {
        FeatureDtype::F32 => Arc::new(Float32Array::from(cols.features)),
        FeatureDtype::F16 => {
            let mut half = vec![f16::ZERO; cols.features.len()];
            half.convert_from_f32_slice(&cols.features);
            Arc::new(Float16Array::from(half))
        }
    };
    let size = i32::try_from(dim).expect("feature dim fits in i32");
    let features = FixedSizeListArray::new(item_field(dtype), size, values, None);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(cols.paths)),
        Arc::new(StringArray::from(cols.splits)),
        Arc::new(UInt32Array::from(cols.labels)),
        Arc::new(StringArray::from(cols.classes)),
        Arc::new(StringArray::from(cols.hashes)),
        Arc::new(features),
    ];
    let schema = if with_views {
        columns.push(Arc::new(UInt32Array::from(cols.views)));
        columns.push(Arc::new(StringArray::from(cols.recipes)));
        cache_schema_views(dim, dtype)
    } else {
        cache_schema_with(dim, dtype)
    };
    let batch =
        RecordBatch::try_new(schema, columns).expect("columns built to match the cache schema");
    debug_assert_eq!(batch.num_rows(), n);
    debug_assert!(batch
        .column_by_name(COL_FEATURES)
        .is_some_and(|c| c.len() == n));
    batch
}
