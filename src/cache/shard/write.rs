//! Writing one shard file durably, with its footer's identity, class list and data checksum.

use std::fs;
use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::checksum::HashingWriter;
use super::{KV_CLASSES, KV_DATA_BYTES, KV_DATA_SHA256, KV_FINGERPRINT};
use crate::cache::manifest::{Manifest, ShardInfo};
use crate::cache::schema::{
    cache_schema_views, cache_schema_with, with_view_columns, WriteOptions, COL_VIEW,
};
use crate::cache::CacheError;
use crate::fsutil::write_atomic_with;

/// Writes `batches` (of [`cache_schema_with`]`(manifest.dim, manifest.feature_dtype)`, or of
/// [`cache_schema_views`]) as shard `name` at `path` through [`write_atomic_with`]. When one
/// batch has the view columns, every batch is written with them (plain rows as view 0). The footer records `manifest`'s fingerprint and class list, then the
/// sha256 of the data before it; the returned entry holds the whole file's sha256 and size.
pub(crate) fn write_shard(
    path: &Path,
    name: &str,
    manifest: &Manifest,
    options: &WriteOptions,
    batches: impl Iterator<Item = Result<RecordBatch, CacheError>>,
) -> Result<ShardInfo, CacheError> {
    let folder = path.parent().expect("shard path has a folder");
    fs::create_dir_all(folder).map_err(CacheError::io(folder))?;
    let batches: Vec<RecordBatch> = batches.collect::<Result<_, _>>()?;
    let views = batches.iter().any(|b| b.column_by_name(COL_VIEW).is_some());
    let (schema, batches) = if views {
        let batches = batches
            .into_iter()
            .map(with_view_columns)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CacheError::arrow(path))?;
        (
            cache_schema_views(manifest.dim, manifest.feature_dtype),
            batches,
        )
    } else {
        (
            cache_schema_with(manifest.dim, manifest.feature_dtype),
            batches,
        )
    };
    let classes = serde_json::to_string(&manifest.classes).expect("class names serialise to JSON");
    let kv = vec![
        KeyValue::new(KV_FINGERPRINT.to_string(), manifest.fingerprint.clone()),
        KeyValue::new(KV_CLASSES.to_string(), classes),
    ];
    let props = options.properties(manifest.dim, manifest.feature_dtype, kv);
    let (rows, bytes, sha256) = write_atomic_with(path, |tmp, file| {
        let mut w = ArrowWriter::try_new(HashingWriter::new(file), schema, Some(props))
            .map_err(CacheError::pq(tmp))?;
        let mut rows = 0;
        for batch in batches {
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
