//! Integration tests of the Parquet feature cache: round trips, incremental runs, crash safety,
//! identity, locking, corruption, class changes, and read-back by pyarrow/polars/DuckDB.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vggcache::cache::{
    CacheError, CacheIdentity, CacheWriter, FeatureCache, FeatureRow, ModelIdentity, ViewedRow,
    WriteOptions,
};
use vggcache::dataset::Split;
use vggcache::spec::PreprocessSpec;

use crate::common;

const DIM: usize = 64;

fn identity(model: &str, dim: usize) -> CacheIdentity {
    CacheIdentity {
        model: ModelIdentity {
            fingerprint: format!("{model:0<64}"),
            path: format!("models/{model}.onnx"),
            provenance: "test".into(),
            metadata: BTreeMap::new(),
        },
        preprocess: PreprocessSpec::caffe_bgr(),
        dim,
    }
}

fn classes(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Test rows owned: path, split, label, class, hash, features (ReLU of a gaussian-ish value).
#[derive(Clone, Debug)]
struct Row {
    path: String,
    split: Split,
    label: Option<u32>,
    class: Option<String>,
    hash: String,
    features: Vec<f32>,
}

impl Row {
    fn as_feature_row(&self) -> FeatureRow<'_> {
        FeatureRow {
            path: &self.path,
            split: self.split,
            label: self.label,
            class: self.class.as_deref(),
            content_hash: &self.hash,
            features: &self.features,
        }
    }
}

/// `n` rows named `{prefix}{i}` over classes `cls`; every 5th is unlabelled "test".
fn rows(prefix: &str, n: usize, cls: &[String], dim: usize, seed: u64) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let labelled = i % 5 != 4;
            let label = labelled.then(|| (i % cls.len()) as u32);
            Row {
                path: format!("{prefix}{i:04}.jpg"),
                split: if !labelled {
                    Split::Test
                } else if i % 3 == 0 {
                    Split::Val
                } else {
                    Split::Train
                },
                label,
                class: label.map(|l| cls[l as usize].clone()),
                hash: format!("{:016x}", rng.random::<u64>()),
                features: (0..dim)
                    .map(|_| (rng.random::<f32>() - 0.52).max(0.0) * 7.0)
                    .collect(),
            }
        })
        .collect()
}

fn append(w: &mut CacheWriter, rows: &[Row]) {
    let fr: Vec<FeatureRow> = rows.iter().map(Row::as_feature_row).collect();
    w.append_shard(&fr).expect("append_shard");
}

/// Checks that the cache in `dir` holds exactly `expected` (any order) and nothing else.
fn assert_cache_holds(dir: &Path, expected: &[Row], cls: &[String]) {
    let cache = FeatureCache::open(dir).expect("FeatureCache::open");
    assert_eq!(cache.classes(), cls);
    let all = cache.all().expect("all()");
    assert_eq!(all.len(), expected.len(), "row count");
    let unique: HashSet<&String> = all.paths.iter().collect();
    assert_eq!(unique.len(), all.len(), "paths are unique");
    let by_path: HashMap<&str, &Row> = expected.iter().map(|r| (r.path.as_str(), r)).collect();
    for (i, p) in all.paths.iter().enumerate() {
        let want = by_path
            .get(p.as_str())
            .unwrap_or_else(|| panic!("unexpected row {p}"));
        assert_eq!(all.splits[i], want.split, "split of {p}");
        assert_eq!(all.labels[i], want.label, "label of {p}");
        assert_eq!(
            all.features.row(i).as_slice().expect("contiguous row"),
            want.features.as_slice(),
            "features of {p}"
        );
    }
    assert_no_orphans(dir);
}

/// Every `*.parquet` in `dir` is listed in the manifest and no temp file is left.
fn assert_no_orphans(dir: &Path) {
    let cache = FeatureCache::open(dir).expect("open");
    let listed: HashSet<String> = cache
        .manifest()
        .shards
        .iter()
        .map(|s| s.file.clone())
        .collect();
    for e in fs::read_dir(dir).expect("read_dir") {
        let name = e.expect("entry").file_name().to_string_lossy().to_string();
        assert!(!name.ends_with(".tmp"), "temp file left: {name}");
        if name.ends_with(".parquet") {
            assert!(listed.contains(&name), "orphan shard: {name}");
        }
    }
}

#[test]
fn round_trip_splits_and_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let cls = classes(&["cat", "dog"]);
    let a = rows("a/", 23, &cls, DIM, 1);
    let b = rows("b/", 17, &cls, DIM, 2);
    let opts = WriteOptions {
        row_group_rows: 8,
        ..WriteOptions::default()
    };
    let mut w =
        CacheWriter::open_with(&dir, &identity("m1", DIM), &cls, false, opts).expect("open");
    assert!(w.existing().is_empty());
    append(&mut w, &a);
    append(&mut w, &b);
    let stats = w.finish().expect("finish");
    assert_eq!(stats.rows, 40);
    assert_eq!(stats.appended, 40);

    let all: Vec<Row> = a.iter().chain(&b).cloned().collect();
    assert_cache_holds(&dir, &all, &cls);

    let cache = FeatureCache::open(&dir).expect("open");
    assert_eq!(cache.dim(), DIM);
    assert_eq!(cache.len(), 40);
    assert_eq!(
        cache.manifest().fingerprint,
        identity("m1", DIM).fingerprint()
    );
    assert_eq!(
        cache.split_names(),
        vec![Split::Train, Split::Val, Split::Test]
    );
    // Cache order is append order.
    let full = cache.all().expect("all");
    let order: Vec<&str> = all.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(full.paths, order);

    let train = cache.split(Split::Train).expect("train");
    let want: Vec<&Row> = all.iter().filter(|r| r.split == Split::Train).collect();
    assert_eq!(train.len(), want.len());
    for (i, r) in want.iter().enumerate() {
        assert_eq!(train.paths[i], r.path);
        assert_eq!(train.labels[i], r.label);
        assert_eq!(train.features.row(i).to_vec(), r.features);
    }
    // A split without rows: rows 0 and 1 of `rows` are val and train, none is test.
    let small = tmp.path().join("small");
    let mut w = CacheWriter::open(&small, &identity("m1", DIM), &cls, false).expect("open");
    append(&mut w, &rows("s/", 2, &cls, DIM, 3));
    w.finish().expect("finish");
    match FeatureCache::open(&small).expect("open").split(Split::Test) {
        Err(CacheError::NoSuchSplit { split, present, .. }) => {
            assert_eq!((split.as_str(), present.as_str()), ("test", "train, val"));
        }
        other => panic!("expected NoSuchSplit, got {other:?}"),
    }

    // Batches of 7 rows (crossing row groups and shards) concatenate to all().
    let mut seen = 0;
    for batch in cache.batches(7) {
        let batch = batch.expect("batch");
        assert!(batch.len() <= 7 && !batch.is_empty());
        for i in 0..batch.len() {
            assert_eq!(batch.paths[i], full.paths[seen + i]);
            assert_eq!(batch.features.row(i), full.features.row(seen + i));
        }
        seen += batch.len();
    }
    assert_eq!(seen, 40);
}

/// A whole read of full-size VGG16 features (400 x 25,088 floats = 40 MB, above the 32 MiB
/// mmap threshold, so the matrix is a fresh mapping advised to use huge pages) is bit-exact,
/// whole and by split.
#[test]
fn full_size_features_read_back_exactly() {
    const VGG_DIM: usize = 25088;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let cls = classes(&["cat", "dog"]);
    let a = rows("a/", 250, &cls, VGG_DIM, 11);
    let b = rows("b/", 150, &cls, VGG_DIM, 12);
    let mut w = CacheWriter::open_with(
        &dir,
        &identity("m1", VGG_DIM),
        &cls,
        false,
        WriteOptions::default(),
    )
    .expect("open");
    append(&mut w, &a);
    append(&mut w, &b);
    w.finish().expect("finish");

    // Every row's split, label and features (`rows` makes no NaN and no -0.0, so equality is
    // bit-exactness), no orphan shard.
    let all: Vec<Row> = a.into_iter().chain(b).collect();
    assert_cache_holds(&dir, &all, &cls);
    let cache = FeatureCache::open(&dir).expect("open");
    let full = cache.all().expect("all");
    assert_eq!(full.features.dim(), (400, VGG_DIM));
    let order: Vec<&str> = all.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(full.paths, order, "cache order is append order");
    let train = cache.split(Split::Train).expect("train");
    let want: Vec<&Row> = all.iter().filter(|r| r.split == Split::Train).collect();
    assert_eq!(train.len(), want.len());
    for (i, r) in want.iter().enumerate() {
        assert_eq!(train.paths[i], r.path);
        assert_eq!(
            train.features.row(i).as_slice().expect("row"),
            &r.features[..]
        );
    }
}

#[test]
fn reopen_append_and_replace_changed_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let first = rows("x/", 12, &cls, DIM, 3);
    let mut w = CacheWriter::open(dir, &id, &cls, false).expect("open");
    append(&mut w, &first);
    drop(w); // no finish: every append is already committed

    let mut w = CacheWriter::open(dir, &id, &cls, false).expect("reopen");
    assert_eq!(w.existing().len(), 12);
    assert_eq!(w.existing()["x/0003.jpg"], first[3].hash);
    // New files, and two changed files (same path, new hash and features).
    let mut more = rows("y/", 5, &cls, DIM, 4);
    let mut changed = rows("x/", 2, &cls, DIM, 5);
    for r in &mut changed {
        r.hash = format!("changed-{}", r.hash);
    }
    more.extend(changed.clone());
    append(&mut w, &more);
    assert_eq!(w.existing()["x/0001.jpg"], changed[1].hash);
    let stats = w.finish().expect("finish");
    assert_eq!(stats.rows, 17);
    assert_eq!(stats.removed, 2);

    let mut expected: Vec<Row> = first[2..].to_vec();
    expected.extend(more);
    assert_cache_holds(dir, &expected, &cls);
}

#[test]
fn append_shards_lists_parallel_shards_in_one_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let first = rows("x/", 10, &cls, DIM, 7);
    let mut w = CacheWriter::open(dir, &id, &cls, false).expect("open");
    append(&mut w, &first);
    let shards_before = w.manifest().shards.len();

    // Three new shards (one empty, ignored) plus a changed row of an existing shard.
    let mut a = rows("a/", 7, &cls, DIM, 8);
    let b = rows("b/", 5, &cls, DIM, 9);
    let mut changed = first[4].clone();
    changed.hash = "changed".into();
    changed.features.iter_mut().for_each(|v| *v += 1.0);
    a.push(changed.clone());
    let groups: Vec<Vec<FeatureRow>> = vec![
        a.iter().map(Row::as_feature_row).collect(),
        Vec::new(),
        b.iter().map(Row::as_feature_row).collect(),
    ];
    w.append_shards(&groups).expect("append_shards");
    // The two new shards, and the rewrite of the shard that held the changed row.
    assert_eq!(w.manifest().shards.len(), shards_before + 2);
    assert_eq!(w.existing()["x/0004.jpg"], "changed");

    // A path twice across the shards of one call is refused and writes nothing.
    let dup = vec![vec![b[0].as_feature_row()], vec![b[0].as_feature_row()]];
    assert!(w.append_shards(&dup).is_err());
    drop(w);

    let mut expected: Vec<Row> = first
        .iter()
        .filter(|r| r.path != changed.path)
        .cloned()
        .collect();
    expected.extend(a);
    expected.extend(b);
    assert_cache_holds(dir, &expected, &cls);
}

#[test]
fn remove_paths_rewrites_affected_shards() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let a = rows("a/", 10, &cls, DIM, 6);
    let b = rows("b/", 10, &cls, DIM, 7);
    let c = rows("c/", 10, &cls, DIM, 8);
    let mut w = CacheWriter::open(dir, &id, &cls, false).expect("open");
    for part in [&a, &b, &c] {
        append(&mut w, part);
    }
    let shard_c = w.manifest().shards[2].file.clone();
    // All of b's rows (its shard vanishes), two of a's, one unknown path.
    let mut gone: HashSet<String> = b.iter().map(|r| r.path.clone()).collect();
    gone.insert(a[0].path.clone());
    gone.insert(a[9].path.clone());
    gone.insert("never/cached.jpg".into());
    assert_eq!(w.remove_paths(&gone).expect("remove"), 12);
    assert_eq!(w.manifest().shards.len(), 2, "b's shard is gone");
    assert_eq!(w.manifest().shards[1].file, shard_c, "c untouched");
    assert!(!w.existing().contains_key(&a[0].path));
    assert_eq!(w.remove_paths(&gone).expect("remove again"), 0);
    w.finish().expect("finish");

    let mut expected: Vec<Row> = a[1..9].to_vec();
    expected.extend(c);
    assert_cache_holds(dir, &expected, &cls);
}

#[test]
fn leftovers_of_a_crashed_run_are_cleaned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let a = rows("a/", 9, &cls, DIM, 9);
    let mut w = CacheWriter::open(dir, &id, &cls, false).expect("open");
    append(&mut w, &a);
    w.finish().expect("finish");
    let listed = FeatureCache::open(dir).expect("open").manifest().shards[0]
        .file
        .clone();
    // What a kill -9 can leave: a shard renamed but never listed, a half-written shard, a
    // half-written manifest, and the lock file of a dead writer.
    fs::copy(dir.join(&listed), dir.join("shard-g0001-000777.parquet")).expect("copy");
    fs::write(dir.join("shard-g0001-000778.parquet.tmp"), b"PAR1 half").expect("write");
    fs::write(dir.join("manifest.json.tmp"), b"{\"format_ver").expect("write");
    fs::write(
        dir.join("vggcache.lock"),
        b"writer pid 999999 since 2020-01-01\n",
    )
    .expect("write");
    fs::write(dir.join("notes.txt"), b"not ours").expect("write");

    let w = CacheWriter::open(dir, &id, &cls, false).expect("reopen after crash");
    assert_eq!(w.stats().cleaned_files, 3);
    assert_eq!(w.existing().len(), 9);
    w.finish().expect("finish");
    assert!(
        dir.join("notes.txt").exists(),
        "files that are not ours stay"
    );
    assert_cache_holds(dir, &a, &cls);
}

#[test]
fn identity_mismatch_is_refused_and_force_rebuilds_safely() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let (m1, m2) = (identity("m1", DIM), identity("m2", DIM));
    let old = rows("o/", 8, &cls, DIM, 10);
    let mut w = CacheWriter::open(dir, &m1, &cls, false).expect("open");
    append(&mut w, &old);
    w.finish().expect("finish");

    let err = CacheWriter::open(dir, &m2, &cls, false).expect_err("other model must be refused");
    let msg = err.to_string();
    assert!(matches!(err, CacheError::IdentityMismatch { .. }), "{msg}");
    assert!(msg.contains("m20000") && msg.contains("m10000"), "{msg}");
    assert!(msg.contains("--force"), "{msg}");
    // Preprocessing is part of the identity too.
    let mut torch = m1.clone();
    torch.preprocess = PreprocessSpec::torchvision_rgb();
    assert!(matches!(
        CacheWriter::open(dir, &torch, &cls, false),
        Err(CacheError::IdentityMismatch { .. })
    ));
    // A moved model file with the same bytes is the same identity.
    let mut moved = m1.clone();
    moved.model.path = "elsewhere/vgg.onnx".into();
    drop(CacheWriter::open(dir, &moved, &cls, false).expect("same fingerprint, other path"));

    // --force: rebuild staged beside the old cache, which stays readable until finish.
    let new = rows("n/", 6, &cls, DIM, 11);
    let mut w = CacheWriter::open(dir, &m2, &cls, true).expect("force");
    assert!(w.existing().is_empty());
    append(&mut w, &new[..3]);
    drop(w); // interrupted rebuild
    assert_cache_holds(dir, &old, &cls);
    // Staged shards are not `*.parquet` (globbing tools see only the old cache). Simulate a
    // `finish` interrupted after renaming one of them: the resume takes it back.
    let staged: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".parquet.staged"))
        .collect();
    assert_eq!(staged.len(), 1);
    fs::rename(&staged[0], staged[0].with_extension("")).expect("rename");
    // Resumed by the next --force run of the same identity.
    let mut w = CacheWriter::open(dir, &m2, &cls, true).expect("force again");
    assert_eq!(w.existing().len(), 3, "staged rebuild resumed");
    append(&mut w, &new[3..]);
    w.finish().expect("finish");
    assert_cache_holds(dir, &new, &cls);
    let cache = FeatureCache::open(dir).expect("open");
    assert_eq!(cache.manifest().model.fingerprint, m2.model.fingerprint);
    assert!(!dir.join("manifest.rebuild.json").exists());
}

#[test]
fn second_writer_fails_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat"]);
    let id = identity("m1", DIM);
    let w = CacheWriter::open(dir, &id, &cls, false).expect("first");
    let t = Instant::now();
    let err = CacheWriter::open(dir, &id, &cls, false).expect_err("second writer");
    assert!(t.elapsed() < Duration::from_secs(2), "fails fast");
    assert!(matches!(err, CacheError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("locked") && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
    // Readers are refused too while a writer may be deleting shards.
    assert!(matches!(
        FeatureCache::open(dir),
        Err(CacheError::Locked { .. })
    ));
    w.finish().expect("finish");
    let reader = FeatureCache::open(dir).expect("reader after writer");
    assert!(matches!(
        CacheWriter::open(dir, &id, &cls, false),
        Err(CacheError::Locked { .. })
    ));
    drop(reader);
    drop(CacheWriter::open(dir, &id, &cls, false).expect("free again"));
}

#[test]
fn corrupt_or_missing_shards_are_detected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let no_compaction = no_compaction();
    let (a, b, c) = (
        rows("a/", 6, &cls, DIM, 12),
        rows("b/", 6, &cls, DIM, 13),
        rows("c/", 6, &cls, DIM, 14),
    );
    let mut w = CacheWriter::open_with(dir, &id, &cls, false, no_compaction).expect("open");
    for part in [&a, &b, &c] {
        append(&mut w, part);
    }
    let files: Vec<PathBuf> = w
        .manifest()
        .shards
        .iter()
        .map(|s| dir.join(&s.file))
        .collect();
    w.finish().expect("finish");

    // Truncated shard.
    let bytes = fs::read(&files[0]).expect("read");
    fs::write(&files[0], &bytes[..bytes.len() / 2]).expect("truncate");
    let err = FeatureCache::open(dir).expect_err("truncated");
    assert!(matches!(err, CacheError::CorruptShard { .. }), "{err}");
    assert!(err.to_string().contains("bytes"), "{err}");
    // Same size, garbage footer.
    let mut garbled = bytes.clone();
    let n = garbled.len();
    garbled[n - 40..n - 8].fill(0xAB);
    fs::write(&files[0], &garbled).expect("garble");
    let err = FeatureCache::open(dir).expect_err("garbled footer");
    assert!(matches!(err, CacheError::CorruptShard { .. }), "{err}");
    fs::write(&files[0], &bytes).expect("restore");
    FeatureCache::open(dir).expect("restored");
    // Missing shard.
    fs::remove_file(&files[1]).expect("rm");
    let err = FeatureCache::open(dir).expect_err("missing");
    assert!(matches!(err, CacheError::MissingShard { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    // The writer drops the broken shard so its images get extracted again.
    let w = CacheWriter::open_with(dir, &id, &cls, false, no_compaction).expect("writer");
    assert_eq!(w.stats().dropped_shards.len(), 1, "{:?}", w.stats());
    assert_eq!(w.existing().len(), 12);
    w.finish().expect("finish");
    let mut expected = a.clone();
    expected.extend(c);
    assert_cache_holds(dir, &expected, &cls);
}

#[test]
fn bad_rows_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cls = classes(&["cat", "dog"]);
    let mut w = CacheWriter::open(tmp.path(), &identity("m1", DIM), &cls, false).expect("open");
    let good = rows("a/", 1, &cls, DIM, 15).remove(0);
    let cases: Vec<(Row, &str)> = vec![
        (
            Row {
                features: vec![0.5; DIM - 1],
                ..good.clone()
            },
            "expected 64 features, got 63",
        ),
        (
            Row {
                features: {
                    let mut f = good.features.clone();
                    f[5] = f32::NAN;
                    f
                },
                ..good.clone()
            },
            "feature 5 is NaN",
        ),
        (
            Row {
                label: Some(2),
                class: None,
                ..good.clone()
            },
            "label 2 but the cache has 2 classes",
        ),
        (
            Row {
                label: Some(0),
                class: Some("dog".into()),
                ..good.clone()
            },
            "label 0 is class 'cat'",
        ),
    ];
    for (row, want) in cases {
        let err = w
            .append_shard(&[row.as_feature_row()])
            .expect_err("bad row");
        assert!(err.to_string().contains(want), "{err} / {want}");
    }
    let twice = [good.as_feature_row(), good.as_feature_row()];
    assert!(w.append_shard(&twice).is_err());
    assert!(w.manifest().shards.is_empty(), "nothing written");
}

#[test]
fn class_list_change_remaps_labels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let two = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let data = rows("a/", 20, &two, DIM, 16);
    let mut w = CacheWriter::open(dir, &id, &two, false).expect("open");
    append(&mut w, &data);
    w.finish().expect("finish");

    // A new class sorts first: cat 0→1, dog 1→2, unlabelled rows stay unlabelled.
    let three = classes(&["bird", "cat", "dog"]);
    let w = CacheWriter::open(dir, &id, &three, false).expect("three classes");
    let labelled = data.iter().filter(|r| r.label.is_some()).count();
    assert_eq!(w.stats().relabelled, labelled);
    w.finish().expect("finish");
    let remapped: Vec<Row> = data
        .iter()
        .map(|r| Row {
            label: r.label.map(|l| l + 1),
            ..r.clone()
        })
        .collect();
    assert_cache_holds(dir, &remapped, &three);

    // A class that is gone: its rows go (their images are gone too).
    let cats = classes(&["cat"]);
    let w = CacheWriter::open(dir, &id, &cats, false).expect("one class");
    let dogs = data
        .iter()
        .filter(|r| r.class.as_deref() == Some("dog"))
        .count();
    assert_eq!(w.stats().removed, dogs);
    w.finish().expect("finish");
    let kept: Vec<Row> = data
        .iter()
        .filter(|r| r.class.as_deref() != Some("dog"))
        .map(|r| Row {
            label: r.label.map(|_| 0),
            ..r.clone()
        })
        .collect();
    assert_cache_holds(dir, &kept, &cats);
}

#[test]
fn finish_compacts_small_shards() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let opts = WriteOptions {
        compact_below_rows: 10,
        row_group_rows: 4,
        ..WriteOptions::default()
    };
    let data = rows("a/", 23, &cls, DIM, 17);
    let mut w = CacheWriter::open_with(dir, &identity("m1", DIM), &cls, false, opts).expect("open");
    for chunk in data.chunks(3) {
        append(&mut w, chunk);
    }
    assert_eq!(w.manifest().shards.len(), 8);
    let stats = w.finish().expect("finish");
    assert_eq!(stats.compacted_shards, 8);
    assert_eq!(
        stats.shards, 2,
        "two runs of 4 shards (12 and 11 rows): {stats:?}"
    );
    assert_cache_holds(dir, &data, &cls);
    // Order is kept.
    let all = FeatureCache::open(dir).expect("open").all().expect("all");
    let order: Vec<&str> = data.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(all.paths, order);
}

/// Child half of `killed_writer_resumes_without_loss`: appends shards of 4 rows forever
/// (the parent kills it). Does nothing unless VGGCACHE_TEST_CHILD_DIR is set.
#[test]
#[ignore = "run by killed_writer_resumes_without_loss as a child process"]
fn child_writer() {
    let Ok(dir) = std::env::var("VGGCACHE_TEST_CHILD_DIR") else {
        return;
    };
    let cls = classes(&["cat", "dog"]);
    let all = rows("k/", 400, &cls, 2048, 18);
    let mut w =
        CacheWriter::open(Path::new(&dir), &identity("m1", 2048), &cls, false).expect("child open");
    for chunk in all.chunks(4) {
        let todo: Vec<Row> = chunk
            .iter()
            .filter(|r| !w.existing().contains_key(&r.path))
            .cloned()
            .collect();
        append(&mut w, &todo);
    }
    w.finish().expect("child finish");
}

/// Names in `dir` ending in `suffix`.
fn names_ending(dir: &Path, suffix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs a child writer while a write is in flight (a `*.tmp` file, shard or manifest, exists),
/// round after round, until three kills have left a cut-short `*.tmp` behind; every reopen sees
/// only whole committed shards, fewer rows than the run's total, and the resumed run loses nothing.
#[test]
fn killed_writer_resumes_without_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let all = rows("k/", 400, &cls, 2048, 18);
    let exe = std::env::current_exe().expect("test binary");
    let (mut round, mut cut_short) = (0, 0);
    while cut_short < 3 {
        round += 1;
        assert!(
            round <= 15,
            "only {cut_short} of {} kills landed mid-write",
            round - 1
        );
        let before = names_ending(dir, ".parquet").len();
        let mut child = Command::new(&exe)
            .args(["cache::child_writer", "--exact", "--ignored", "--nocapture"])
            .env("VGGCACHE_TEST_CHILD_DIR", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        // Poll: at least two new shard files written, then a write in flight.
        let start = Instant::now();
        while child.try_wait().expect("try_wait").is_none()
            && start.elapsed() < Duration::from_secs(60)
            && (names_ending(dir, ".parquet").len() < before + 2
                || names_ending(dir, ".tmp").is_empty())
        {
            std::thread::yield_now();
        }
        child.kill().expect("kill -9"); // SIGKILL on Unix
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "round {round}: the writer finished before the kill"
        );
        let left = names_ending(dir, ".tmp");
        cut_short += usize::from(!left.is_empty());
        let w = CacheWriter::open(dir, &identity("m1", 2048), &cls, false).expect("reopen");
        let n = w.existing().len();
        eprintln!("round {round}: killed with {n} rows committed, in flight: {left:?}");
        assert!(n < all.len(), "round {round}: the run had finished");
        assert_eq!(n % 4, 0, "only whole shards survive");
        for (p, h) in w.existing() {
            let r = all.iter().find(|r| &r.path == p).expect("known row");
            assert_eq!(&r.hash, h);
        }
        assert!(
            names_ending(dir, ".tmp").is_empty(),
            "reopen deletes the cut-short files"
        );
    }
    // Complete the run in-process, resuming.
    let mut w = CacheWriter::open(dir, &identity("m1", 2048), &cls, false).expect("resume");
    let todo: Vec<Row> = all
        .iter()
        .filter(|r| !w.existing().contains_key(&r.path))
        .cloned()
        .collect();
    for chunk in todo.chunks(50) {
        append(&mut w, chunk);
    }
    w.finish().expect("finish");
    assert_cache_holds(dir, &all, &cls);
}

/// pyarrow, polars and DuckDB (all installed by `make setup`) each read the cache back: every row's
/// fields and every feature value equal what was written and what the Rust reader returns.
#[test]
fn python_readers_agree() {
    let test = "python_readers_agree";
    let Some(py) = common::python_with(test, &["pyarrow", "polars", "duckdb"]) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog", "horse"]);
    let data = rows("img/", 30, &cls, DIM, 19);
    let mut w = CacheWriter::open(dir, &identity("m1", DIM), &cls, false).expect("open");
    append(&mut w, &data[..17]);
    append(&mut w, &data[17..]);
    w.finish().expect("finish");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference/check_cache.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "check_cache.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let rust = FeatureCache::open(dir).expect("open").all().expect("all");
    let mut checked = Vec::new();
    for lib in ["pyarrow", "polars", "duckdb"] {
        let r = &report[lib];
        assert!(
            r.get("missing").is_none(),
            "{lib} not installed: {}",
            r["missing"]
        );
        assert!(r.get("error").is_none(), "{lib} failed: {}", r["error"]);
        eprintln!(
            "{lib}: features {} label {}",
            r["features_type"], r["label_type"]
        );
        let rows = r["rows"].as_object().expect("rows");
        assert_eq!(rows.len(), data.len(), "{lib} row count");
        assert_eq!(rust.len(), data.len(), "Rust reader row count");
        for (i, p) in rust.paths.iter().enumerate() {
            let got = rows.get(p).unwrap_or_else(|| panic!("{lib}: no row {p}"));
            let want = &data.iter().find(|d| &d.path == p).expect("row");
            assert_eq!(got["split"], want.split.as_str(), "{lib} {p}");
            assert_eq!(
                got["label"].as_u64(),
                want.label.map(u64::from),
                "{lib} {p}"
            );
            assert_eq!(got["class"].as_str(), want.class.as_deref(), "{lib} {p}");
            assert_eq!(got["content_hash"], want.hash.as_str(), "{lib} {p}");
            assert_eq!(got["n"], DIM, "{lib} {p}");
            // Every value, compared as f32 bits: the script widens f32 to f64, which JSON carries
            // to within one f64 ulp, and that rounds back to the same f32.
            let feats: Vec<f32> = got["features"]
                .as_array()
                .expect("features")
                .iter()
                .map(|v| v.as_f64().expect("feature value") as f32)
                .collect();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(
                bits(&feats),
                bits(&want.features),
                "{lib} {p}: features vs written"
            );
            let row = rust.features.row(i).to_vec();
            assert_eq!(
                bits(&feats),
                bits(&row),
                "{lib} {p}: features vs Rust reader"
            );
        }
        checked.push(lib);
    }
    assert_eq!(
        checked,
        ["pyarrow", "polars", "duckdb"],
        "all three readers ran"
    );
    assert_eq!(
        report["pyarrow"]["fixed_size_list"], true,
        "pyarrow sees FixedSizeList"
    );
}

/// Issue 30: what `extract` deletes when it opens a cache (an unlisted duplicate shard, a
/// never-committed `pending/` shard, an unlisted `*.parquet.staged`, a `manifest*.tmp`) is
/// printed: the count, each file, and why.
#[test]
fn extract_prints_every_leftover_it_deletes() {
    if crate::common::ort("cache::extract_prints_every_leftover_it_deletes").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let imgs = crate::sharded::images(tmp.path());
    let dir = tmp.path().join("cache");
    let tiny = crate::common::tiny_trunk();
    let o = crate::common::extract(&tiny, &imgs, &dir, &[]);
    assert!(o.status.success(), "{}", crate::common::text(&o));
    let listed = FeatureCache::open(&dir).expect("open").manifest().shards[0]
        .file
        .clone();
    let planted = [
        "shard-g0001-000777.parquet",
        "shard-g0001-000778.parquet.staged",
        "pending/shard-g0001-000779.parquet.pending",
        "manifest.json.tmp",
    ];
    fs::create_dir_all(dir.join("pending")).expect("mkdir");
    for p in &planted {
        fs::copy(dir.join(&listed), dir.join(p)).expect("copy");
    }
    let o = crate::common::extract(&tiny, &imgs, &dir, &[]);
    let t = crate::common::text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("deleted 4 file(s)"), "{t}");
    for p in &planted {
        let name = Path::new(p).file_name().unwrap().to_str().unwrap();
        let line = t
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not named: {t}"));
        assert!(line.contains('('), "no reason for {name}: {line}");
        assert!(!dir.join(p).exists(), "{p} still there");
    }
}

/// The writer's defaults without compaction: each appended shard stays a file of its own.
fn no_compaction() -> WriteOptions {
    WriteOptions {
        compact_below_rows: 0,
        ..WriteOptions::default()
    }
}

/// Whether the shard file has the `view` column (its footer's schema).
fn has_view_column(path: &Path) -> bool {
    let f = fs::File::open(path).expect("open shard");
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("footer")
        .schema()
        .column_with_name("view")
        .is_some()
}

#[test]
fn a_cache_that_gains_views_gives_every_shard_the_view_columns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cls = classes(&["cat", "dog"]);
    let id = identity("m1", DIM);
    let no_compaction = no_compaction();
    let (a, b) = (rows("a/", 6, &cls, DIM, 21), rows("b/", 6, &cls, DIM, 22));
    let mut w = CacheWriter::open_with(dir, &id, &cls, false, no_compaction).expect("open");
    append(&mut w, &a);
    append(&mut w, &b);
    let plain_shards: Vec<String> = w.manifest().shards.iter().map(|s| s.file.clone()).collect();
    w.finish().expect("finish");
    assert_eq!(plain_shards.len(), 2);
    assert!(plain_shards.iter().all(|f| !has_view_column(&dir.join(f))));

    // A later run adds one view of a/0000 in a shard of its own.
    let mut w = CacheWriter::open_with(dir, &id, &cls, false, no_compaction).expect("reopen");
    let recipe = serde_json::to_string(&vggcache::dataset::augment::train_recipe(&a[0].hash, 1, 0))
        .expect("recipe JSON");
    let view = ViewedRow {
        row: a[0].as_feature_row(),
        view: 1,
        recipe: Some(&recipe),
    };
    w.append_view_shards(&[vec![view]]).expect("views");
    w.finish().expect("finish");
    let cache = FeatureCache::open(dir).expect("open");
    let listed: Vec<String> = cache
        .manifest()
        .shards
        .iter()
        .map(|s| s.file.clone())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for f in &listed {
        assert!(has_view_column(&dir.join(f)), "{f} lacks the view column");
        assert!(
            !plain_shards.contains(f),
            "{f}: the plain shard was not rewritten"
        );
    }
    assert_eq!(cache.len(), 13);
    assert_eq!(cache.row_views().iter().filter(|&&v| v == 0).count(), 12);
    // The rewritten plain rows are the rows written, features bit for bit.
    let all = cache.all().expect("all");
    let want: HashMap<&str, &Row> = a.iter().chain(&b).map(|r| (r.path.as_str(), r)).collect();
    for i in (0..all.len()).filter(|&i| all.views[i] == 0) {
        let r = want[all.paths[i].as_str()];
        assert_eq!((all.splits[i], all.labels[i]), (r.split, r.label));
        assert_eq!(
            all.features.row(i).as_slice().unwrap(),
            r.features.as_slice()
        );
    }
    assert_no_orphans(dir);
}
