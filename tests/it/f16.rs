//! Issue 19: float16 feature caches (`extract --feature-dtype f16`): Parquet FLOAT16
//! (`FixedSizeList<Float16>`), half the size, read back as the f16-rounded f32 values by vggcache,
//! pyarrow and DuckDB; out-of-range values refused; f32 caches written before the field existed
//! still open.

use std::path::{Path, PathBuf};
use std::process::Command;

use half::f16;
use vggcache::cache::{
    CacheError, CacheWriter, FeatureCache, FeatureDtype, FeatureRow, WriteOptions, MANIFEST_FILE,
};
use vggcache::dataset::Split;

use crate::common::{self, text};
use crate::stream::{classes, identity, synthetic_cache};

fn opts(dtype: FeatureDtype) -> WriteOptions {
    WriteOptions {
        row_group_rows: 64,
        ..WriteOptions::for_dtype(dtype)
    }
}

fn shard_bytes(dir: &Path) -> u64 {
    FeatureCache::open(dir)
        .unwrap()
        .manifest()
        .shards
        .iter()
        .map(|s| s.bytes)
        .sum()
}

/// The same 512 x 2,048 synthetic rows as f32 and f16 caches in `dir/f32`, `dir/f16`.
fn pair(dir: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join("f32"), dir.join("f16"));
    synthetic_cache(&a, 512, 2048, 4, 128, opts(FeatureDtype::F32));
    synthetic_cache(&b, 512, 2048, 4, 128, opts(FeatureDtype::F16));
    (a, b)
}

#[test]
fn f16_cache_is_half_the_size_and_reads_back_the_rounded_values() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    let ratio = shard_bytes(&b) as f64 / shard_bytes(&a) as f64;
    assert!(ratio <= 0.52, "f16 / f32 cache size {ratio:.3}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["feature_dtype"], "f16", "{manifest}");
    let (x32, x16) = (
        FeatureCache::open(&a).unwrap(),
        FeatureCache::open(&b).unwrap(),
    );
    assert_eq!(x16.manifest().feature_dtype, FeatureDtype::F16);
    x16.verify().unwrap();
    let (all32, all16) = (x32.all().unwrap(), x16.all().unwrap());
    assert_eq!(all32.paths, all16.paths);
    assert_eq!(all32.labels, all16.labels);
    let mut max_err = 0f32;
    for (x, y) in all32.features.iter().zip(all16.features.iter()) {
        assert_eq!(f16::from_f32(*x).to_f32().to_bits(), y.to_bits());
        max_err = max_err.max((x - y).abs());
    }
    assert!(
        max_err > 0.0 && max_err < 1e-3,
        "max rounding error {max_err}"
    );
    // Splits, row groups and batches read through the same path.
    assert_eq!(x16.split(Split::Val).unwrap().len(), 128);
    assert_eq!(
        x16.batches(100).map(|b| b.unwrap().len()).sum::<usize>(),
        512
    );
}

#[test]
fn values_beyond_the_f16_range_are_counted_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cls = classes();
    let mut w = CacheWriter::open_with(
        dir.path(),
        &identity(4),
        &cls,
        false,
        opts(FeatureDtype::F16),
    )
    .unwrap();
    static GOOD: [f32; 4] = [1.0, 65504.0, -65504.0, 0.0];
    static BAD: [f32; 4] = [70000.0, 1.0, -1e6, 2.0];
    let row = |path: &'static str, features: &'static [f32]| FeatureRow {
        path,
        split: Split::Train,
        label: Some(0),
        class: None,
        content_hash: "00",
        features,
    };
    let rows = [
        row("a.jpg", &GOOD),
        row("b.jpg", &BAD),
        row("c.jpg", &[1e5, 0.0, 0.0, 0.0]),
    ];
    let err = w.append_shard(&rows).unwrap_err();
    assert!(
        matches!(&err, CacheError::F16Range { count: 3, max, first } if *max == 1e6 && first == "b.jpg"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("float16") && msg.contains("--feature-dtype f32"),
        "{msg}"
    );
    // 65504 is f16's largest finite value: stored exactly.
    w.append_shard(&rows[..1]).unwrap();
    w.finish().unwrap();
    let c = FeatureCache::open(dir.path()).unwrap().all().unwrap();
    assert_eq!(c.features.row(0).to_vec(), GOOD.to_vec());
}

#[test]
fn a_cache_of_the_other_dtype_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_cache(dir.path(), 40, 8, 4, 20, opts(FeatureDtype::F32));
    let err = CacheWriter::open_with(
        dir.path(),
        &identity(8),
        &classes(),
        false,
        opts(FeatureDtype::F16),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::DtypeMismatch {
                expected: "f16",
                found: "f32",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--force"), "{err}");
    // With force it is rebuilt as f16 (empty until rows are appended).
    let w = CacheWriter::open_with(
        dir.path(),
        &identity(8),
        &classes(),
        true,
        opts(FeatureDtype::F16),
    )
    .unwrap();
    w.finish().unwrap();
    assert_eq!(
        FeatureCache::open(dir.path())
            .unwrap()
            .manifest()
            .feature_dtype,
        FeatureDtype::F16
    );
}

/// `tests/fixtures/cache_f32_before_dtype/`: a cache written by vggcache before `feature_dtype`
/// existed (commit 44eb38e, `vggcache extract --model tests/fixtures/tiny_trunk.onnx` on 8 small
/// images). Its manifest checksum is the sha256 of the serialised struct, so it opens only if an
/// f32 manifest still serialises byte for byte as it did.
#[test]
fn an_f32_cache_written_before_the_dtype_field_still_opens() {
    let fixture = common::fixture("cache_f32_before_dtype");
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&fixture).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let before = std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
    assert!(!String::from_utf8_lossy(&before).contains("feature_dtype"));
    let c = FeatureCache::open(dir.path()).unwrap();
    assert_eq!(c.manifest().feature_dtype, FeatureDtype::F32);
    c.verify().unwrap();
    assert_eq!(c.all().unwrap().len(), 8);
    drop(c);
    // A writer opening it (as a re-run of extract does) keeps it an f32 cache without the field.
    let m = FeatureCache::open(dir.path()).unwrap().manifest().clone();
    let ident = m.identity();
    let w = CacheWriter::open(dir.path(), &ident, &m.classes, false).unwrap();
    w.finish().unwrap();
    let after = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
    assert!(!after.contains("feature_dtype"), "{after}");
    FeatureCache::open(dir.path()).unwrap().verify().unwrap();
}

/// A small f16 cache and the f16-rounded values every reader must see, by path, as a JSON file
/// (`{path: [values]}`) beside it.
fn f16_cache_and_expected(dir: &Path) -> (PathBuf, PathBuf) {
    let cache = dir.join("cache");
    synthetic_cache(&cache, 40, 16, 4, 20, opts(FeatureDtype::F16));
    let all = FeatureCache::open(&cache).unwrap().all().unwrap();
    let map: serde_json::Map<String, serde_json::Value> = all
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), all.features.row(i).to_vec().into()))
        .collect();
    let expected = dir.join("expected.json");
    std::fs::write(&expected, serde_json::to_string(&map).unwrap()).unwrap();
    (cache, expected)
}

fn run_python(py: &Path, code: &str, cache: &Path, expected: &Path) {
    let o = Command::new(py)
        .args(["-c", code])
        .arg(cache)
        .arg(expected)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ok 40 rows"),
        "{}",
        text(&o)
    );
}

#[test]
fn pyarrow_reads_an_f16_cache() {
    let Some(py) = common::python_with("pyarrow_reads_an_f16_cache", &["pyarrow", "numpy"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cache, expected) = f16_cache_and_expected(dir.path());
    let code = r#"
import sys, glob, json, numpy as np, pyarrow as pa, pyarrow.parquet as pq
t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(sys.argv[1] + '/*.parquet'))])
ty = t.schema.field('features').type
assert pa.types.is_fixed_size_list(ty) and ty.value_type == pa.float16() and ty.list_size == 16, ty
want = json.load(open(sys.argv[2]))
feats = t['features'].combine_chunks().flatten().to_numpy().reshape(-1, 16)
assert feats.dtype == np.float16, feats.dtype
for p, row in zip(t['path'].to_pylist(), feats):
    assert np.array_equal(row.astype(np.float32), np.array(want[p], dtype=np.float32)), p
print('ok', len(want), 'rows')
"#;
    run_python(&py, code, &cache, &expected);
}

#[test]
fn duckdb_reads_an_f16_cache() {
    let Some(py) = common::python_with("duckdb_reads_an_f16_cache", &["duckdb", "numpy"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cache, expected) = f16_cache_and_expected(dir.path());
    let code = r#"
import sys, json, duckdb, numpy as np
rows = duckdb.sql(f"SELECT path, features FROM read_parquet('{sys.argv[1]}/*.parquet') ORDER BY path").fetchall()
want = json.load(open(sys.argv[2]))
assert len(rows) == len(want), len(rows)
for p, f in rows:
    assert np.array_equal(np.array(f, dtype=np.float32), np.array(want[p], dtype=np.float32)), (p, f[:4], want[p][:4])
print('ok', len(rows), 'rows')
"#;
    run_python(&py, code, &cache, &expected);
}

/// The codec of every `features` column chunk of every shard the manifest of `cache` lists.
fn feature_codecs(cache: &Path) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let m = FeatureCache::open(cache).unwrap().manifest().clone();
    assert!(!m.shards.is_empty(), "{} lists no shard", cache.display());
    let mut codecs = Vec::new();
    for s in &m.shards {
        let file = std::fs::File::open(cache.join(&s.file)).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        for rg in reader.metadata().row_groups() {
            for col in rg.columns() {
                if col.column_path().string().starts_with("features") {
                    codecs.push(format!("{}: {:?}", s.file, col.compression()));
                }
            }
        }
    }
    codecs
}

/// Issue 30: `extract --feature-dtype f16` writes zstd(1) shards (docs/cache-format.md: 0.46x the f32 cache on
/// real VGG16 features, LZ4_RAW only 0.63x), in its first write and in the rewrite of a later run,
/// checked in the Parquet footers of a cache of real (sparse, ReLU) VGG16 features: on the dense
/// random features of the test above LZ4 and zstd hardly differ, so its size check cannot see it.
#[test]
fn f16_extract_writes_zstd_shards_on_real_vgg16_features() {
    let test = "f16_extract_writes_zstd_shards_on_real_vgg16_features";
    let Some(data) = common::test_data(test, "catsdogs/train") else {
        return;
    };
    let Some(model) = common::default_model(test, "vgg16") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    for class in ["cat", "dog"] {
        let to = images.join(class);
        std::fs::create_dir_all(&to).unwrap();
        for f in common::first_images(&data.join(class), 6) {
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let cache = dir.path().join("cache");
    let o = common::extract(&model, &images, &cache, &["--feature-dtype", "f16"]);
    assert!(o.status.success(), "{}", text(&o));
    let x = FeatureCache::open(&cache).unwrap();
    assert_eq!(x.manifest().feature_dtype, FeatureDtype::F16);
    let all = x.all().unwrap();
    assert_eq!(all.paths.len(), 12);
    let zeros =
        all.features.iter().filter(|v| **v == 0.0).count() as f64 / all.features.len() as f64;
    assert!(
        zeros > 0.5,
        "real VGG16 ReLU features are sparse, got {zeros:.2} zeros"
    );
    drop(x);
    let codecs = feature_codecs(&cache);
    assert!(
        codecs.iter().all(|c| c.ends_with("ZSTD(ZstdLevel(1))")),
        "first write: {codecs:?}"
    );
    // Two images gone: the next run rewrites the shard holding them.
    let gone = common::first_images(&images.join("cat"), 2);
    for f in &gone {
        std::fs::remove_file(f).unwrap();
    }
    let o = common::extract(&model, &images, &cache, &["--feature-dtype", "f16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(FeatureCache::open(&cache).unwrap().len(), 10);
    let rewritten = feature_codecs(&cache);
    assert_ne!(codecs, rewritten, "the second run rewrote no shard");
    assert!(
        rewritten.iter().all(|c| c.ends_with("ZSTD(ZstdLevel(1))")),
        "rewrite: {rewritten:?}"
    );
}
