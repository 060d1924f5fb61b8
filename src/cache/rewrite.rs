//! Rewriting shards: each row's fate (keep, relabel, resplit, drop), compaction groups, and the
//! shard list that results. Pure planning and batch transforms: the writer writes and commits.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::index::row_key;
use super::manifest::ShardInfo;
use super::schema::{
    column_u32, column_utf8, column_views, COL_CLASS, COL_LABEL, COL_PATH, COL_SPLIT,
};
use super::CacheError;
use crate::dataset::Split;

/// What to do with one existing row when its shard is rewritten.
pub(crate) enum RowFate {
    /// Keep the row with this label.
    Keep(Option<u32>),
    Drop,
}

/// Replacement shard per rewritten file (`None`: no row survived).
pub(crate) type Rewrites = HashMap<String, Option<ShardInfo>>;

/// The rows of shard `src` that survive, as batches of at most `batch_rows` rows, in file order.
/// `fate(key, class, label)` decides each row (`key`: [`row_key`]`(path, view)`); a kept row gets
/// the label it returns and, when its key is in `resplit`, that split. Empty when no row survives. Columns are found by name.
pub(crate) fn filter_shard(
    src: &Path,
    batch_rows: usize,
    fate: impl Fn(&str, Option<&str>, Option<u32>) -> RowFate,
    resplit: &HashMap<String, Split>,
) -> Result<Vec<RecordBatch>, CacheError> {
    let file = File::open(src).map_err(CacheError::io(src))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(CacheError::pq(src))?
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(CacheError::pq(src))?;
    let corrupt = |message: String| CacheError::CorruptShard {
        path: src.to_path_buf(),
        message,
    };
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(CacheError::arrow(src))?;
        let paths = column_utf8(&batch, COL_PATH).map_err(corrupt)?;
        let splits = column_utf8(&batch, COL_SPLIT).map_err(corrupt)?;
        let classes = column_utf8(&batch, COL_CLASS).map_err(corrupt)?;
        let labels = column_u32(&batch, COL_LABEL).map_err(corrupt)?;
        let (views, _) = column_views(&batch).map_err(corrupt)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut new_labels = Vec::with_capacity(batch.num_rows());
        let mut new_splits: Vec<String> = Vec::with_capacity(batch.num_rows());
        for (i, &view) in views.iter().enumerate() {
            let class = classes.is_valid(i).then(|| classes.value(i));
            let label = labels.is_valid(i).then(|| labels.value(i));
            let key = row_key(paths.value(i), view);
            match fate(&key, class, label) {
                RowFate::Keep(l) => {
                    keep.push(true);
                    new_labels.push(l);
                    let split = resplit.get(&key).map_or(splits.value(i), |s| s.as_str());
                    new_splits.push(split.to_string());
                }
                RowFate::Drop => keep.push(false),
            }
        }
        if !keep.iter().any(|&k| k) {
            continue;
        }
        let filtered = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(CacheError::arrow(src))?;
        let labels: ArrayRef = Arc::new(UInt32Array::from(new_labels));
        let splits: ArrayRef = Arc::new(StringArray::from(new_splits));
        let schema = filtered.schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(filtered.columns())
            .map(|(field, col)| match field.name().as_str() {
                COL_LABEL => labels.clone(),
                COL_SPLIT => splits.clone(),
                _ => col.clone(),
            })
            .collect();
        out.push(RecordBatch::try_new(schema, columns).map_err(CacheError::arrow(src))?);
    }
    Ok(out)
}

/// The fate of a row under a new class list: its class name (from the `class` column, else
/// `old[label]`) is looked up in `new`; unlabelled rows stay unlabelled, rows of a class not in
/// `new` are dropped.
pub(crate) fn class_fate<'a>(
    old: &'a [String],
    new: &'a [String],
) -> impl Fn(Option<&str>, Option<u32>) -> RowFate + 'a {
    let index: HashMap<&str, u32> = new
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    move |class, label| {
        let name = class.or_else(|| label.and_then(|l| old.get(l as usize).map(String::as_str)));
        match name {
            None => RowFate::Keep(None),
            Some(n) => index
                .get(n)
                .map_or(RowFate::Drop, |&l| RowFate::Keep(Some(l))),
        }
    }
}

/// Runs of neighbouring shards smaller than `target` rows, each closed once it holds `target`
/// rows; only runs of two or more shards are worth merging. `target == 0`: none.
pub(crate) fn compaction_groups(shards: &[ShardInfo], target: usize) -> Vec<Vec<ShardInfo>> {
    if target == 0 {
        return Vec::new();
    }
    let mut groups: Vec<Vec<ShardInfo>> = Vec::new();
    let mut run: Vec<ShardInfo> = Vec::new();
    let mut run_rows = 0;
    for s in shards {
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
    groups
}

/// `shards` with each file of `old_files` replaced by its entry in `new_infos` (dropped when that
/// is `None` or absent), order kept.
pub(crate) fn apply_rewrites(
    shards: &[ShardInfo],
    mut new_infos: Rewrites,
    old_files: &[String],
) -> Vec<ShardInfo> {
    let old: std::collections::HashSet<&str> = old_files.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(shards.len() + 1);
    for s in shards {
        if old.contains(s.file.as_str()) {
            if let Some(Some(new)) = new_infos.remove(&s.file) {
                out.push(new);
            }
        } else {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(file: &str, rows: usize) -> ShardInfo {
        ShardInfo {
            file: file.into(),
            rows,
            bytes: 0,
            sha256: None,
        }
    }

    #[test]
    fn compaction_merges_runs_of_small_neighbours_only() {
        let s = [info("a", 10), info("b", 10), info("c", 300), info("d", 5)];
        let g = compaction_groups(&s, 256);
        assert_eq!(g.len(), 1);
        assert_eq!(
            g[0].iter().map(|s| s.file.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(compaction_groups(&s, 0).is_empty());
    }

    #[test]
    fn apply_rewrites_keeps_order_and_drops_emptied_shards() {
        let s = [info("a", 1), info("b", 1), info("c", 1)];
        let new = HashMap::from([("a".to_string(), Some(info("x", 1))), ("b".into(), None)]);
        let out = apply_rewrites(&s, new, &["a".into(), "b".into()]);
        assert_eq!(
            out.iter().map(|s| s.file.as_str()).collect::<Vec<_>>(),
            ["x", "c"]
        );
    }
}
