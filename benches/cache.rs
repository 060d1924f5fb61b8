//! Benchmark of the feature cache: codec/row-group sweep (size vs raw float32, write and read
//! speed, pyarrow's read in the same run), then criterion timings of the default configuration.
//!
//! ```text
//! cargo bench --bench cache                                   # synthetic ReLU features
//! VGGCACHE_BENCH_FEATURES=/tmp/vgg.f32 cargo bench --bench cache   # real ones (scripts/bench/bench_features.py)
//! VGGCACHE_BENCH_CACHE=cache cargo bench --bench cache        # features of an existing cache
//! VGGCACHE_BENCH_SYNTH_ROWS=N sets the synthetic row count (default 1024);
//! VGGCACHE_BENCH_NO_SWEEP=1 skips the sweep (criterion timings only);
//! VGGCACHE_PYTHON=/path/to/python  (pyarrow; default .venv/bin/python) runs peers.py read beside it
//! ```
//! Synthetic features imitate VGG16 pool5 after ReLU: 512 channels x 7 x 7, a log-normal scale
//! per channel, a per-channel shift, overall about 52% exact zeros (the fraction measured on real
//! features: the peers' bench README beside peers.py, VGGCACHE_PEERS).

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vggcache::cache::{
    CacheIdentity, CacheWriter, Compression, FeatureCache, FeatureRow, ModelIdentity, WriteOptions,
};
use vggcache::spec::PreprocessSpec;

const DIM: usize = 25088;
const SYNTH_ROWS: usize = 1024;
/// Rows per `append_shard` call, as `extract` would hand them over.
const SHARD_ROWS: usize = 256;

/// Standard normal by Box-Muller.
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `(rows, 25088)` row-major synthetic ReLU features (see module doc).
fn synthetic(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (channels, spatial) = (512, 49);
    let params: Vec<(f32, f32)> = (0..channels)
        .map(|_| {
            (
                (0.8 * normal(&mut rng)).exp(),
                -0.0585 + 0.6 * normal(&mut rng),
            )
        })
        .collect();
    let mut out = Vec::with_capacity(rows * DIM);
    for _ in 0..rows {
        for &(scale, shift) in &params {
            for _ in 0..spatial {
                out.push((scale * (normal(&mut rng) + shift)).max(0.0));
            }
        }
    }
    out
}

/// Features to measure on, and where they come from.
fn features() -> (Vec<f32>, usize, String) {
    if let Ok(path) = std::env::var("VGGCACHE_BENCH_FEATURES") {
        let bytes = std::fs::read(&path).expect("VGGCACHE_BENCH_FEATURES is a raw float32 file");
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rows = v.len() / DIM;
        return (v, rows, format!("real VGG16 features from {path}"));
    }
    if let Ok(dir) = std::env::var("VGGCACHE_BENCH_CACHE") {
        let all = FeatureCache::open(Path::new(&dir))
            .and_then(|c| c.all())
            .expect("VGGCACHE_BENCH_CACHE is a readable cache");
        let rows = all.len();
        assert_eq!(
            all.features.ncols(),
            DIM,
            "bench expects 25088-dim features"
        );
        return (
            all.features.into_raw_vec_and_offset().0,
            rows,
            format!("features of cache {dir}"),
        );
    }
    let rows = std::env::var("VGGCACHE_BENCH_SYNTH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SYNTH_ROWS);
    (synthetic(rows, 7), rows, "synthetic ReLU features".into())
}

fn identity() -> CacheIdentity {
    CacheIdentity {
        model: ModelIdentity {
            fingerprint: "bench".into(),
            path: "bench.onnx".into(),
            provenance: "benches/cache.rs".into(),
            metadata: BTreeMap::new(),
        },
        preprocess: PreprocessSpec::caffe_bgr(),
        dim: DIM,
    }
}

struct Names {
    paths: Vec<String>,
    hashes: Vec<String>,
}

fn names(rows: usize) -> Names {
    Names {
        paths: (0..rows).map(|i| format!("train/cat/{i:06}.jpg")).collect(),
        hashes: (0..rows).map(|i| format!("{:064x}", i * 7919)).collect(),
    }
}

/// Writes a fresh cache in `dir` with `opts`; returns seconds. `round` shards of `SHARD_ROWS` go to
/// one `append_shards` call (encoded in parallel); 1 = `append_shard`, one shard at a time.
fn write(dir: &Path, opts: WriteOptions, feats: &[f32], n: &Names, round: usize) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let classes = vec!["cat".to_string(), "dog".to_string()];
    let t = Instant::now();
    let mut w = CacheWriter::open_with(dir, &identity(), &classes, false, opts).expect("open");
    let rows = feats.len() / DIM;
    let row = |i: usize| FeatureRow {
        path: &n.paths[i],
        split: if i.is_multiple_of(5) {
            vggcache::dataset::Split::Val
        } else {
            vggcache::dataset::Split::Train
        },
        label: Some((i % 2) as u32),
        class: None,
        content_hash: &n.hashes[i],
        features: &feats[i * DIM..(i + 1) * DIM],
    };
    for start in (0..rows).step_by(SHARD_ROWS * round) {
        let shards: Vec<Vec<FeatureRow>> = (start..(start + SHARD_ROWS * round).min(rows))
            .step_by(SHARD_ROWS)
            .map(|s| (s..(s + SHARD_ROWS).min(rows)).map(row).collect())
            .collect();
        if round == 1 {
            w.append_shard(&shards[0]).expect("append");
        } else {
            w.append_shards(&shards).expect("append_shards");
        }
    }
    w.finish().expect("finish");
    t.elapsed().as_secs_f64()
}

/// Median seconds of `reps` full reads (`FeatureCache::open` + `all()`).
fn read(dir: &Path, reps: usize) -> f64 {
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            let all = FeatureCache::open(dir).and_then(|c| c.all()).expect("read");
            black_box(&all.features);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn python() -> Option<PathBuf> {
    std::env::var("VGGCACHE_PYTHON")
        .map(PathBuf::from)
        .ok()
        .or_else(|| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            p.exists().then_some(p)
        })
}

/// `peers.py read DIR` (pyarrow's read of the whole cache), median GB/s of 3 runs.
fn pyarrow_read(dir: &Path) -> Option<f64> {
    let py = python()?;
    let peers = common::peers()?;
    let mut v: Vec<f64> = (0..3)
        .filter_map(|_| {
            let out = Command::new(&py)
                .arg(&peers)
                .arg("read")
                .arg(dir)
                .output()
                .ok()?;
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            json["gb_per_s"].as_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn cache_bytes(dir: &Path) -> u64 {
    FeatureCache::open(dir)
        .expect("open")
        .manifest()
        .shards
        .iter()
        .map(|s| s.bytes)
        .sum()
}

fn main() {
    let (feats, rows, source) = features();
    let raw = (rows * DIM * 4) as f64;
    let zeros = feats.iter().filter(|&&x| x == 0.0).count() as f64 / feats.len() as f64;
    let work = std::env::temp_dir().join(format!("vggcache-bench-{}", std::process::id()));
    let n = names(rows);
    println!(
        "# cache sweep: {source}, {rows} rows x {DIM}, raw float32 {:.1} MB, zero fraction {zeros:.3}",
        raw / 1e6
    );
    println!(
        "{:<22} {:>7} {:>10} {:>13} {:>13} {:>13}",
        "codec", "rg rows", "size/raw", "write MB/s", "read GB/s", "pyarrow GB/s"
    );
    let base = WriteOptions::default();
    let mut configs: Vec<(WriteOptions, String)> = Vec::new();
    for (c, bss) in [
        (Compression::None, false),
        (Compression::Snappy, false),
        (Compression::Lz4, false),
        (Compression::Zstd(1), false),
        (Compression::Zstd(3), false),
        (Compression::Lz4, true),
        (Compression::Zstd(1), true),
        (Compression::Zstd(3), true),
    ] {
        let name = format!("{}{}", c.name(), if bss { " +BSS" } else { "" });
        configs.push((
            WriteOptions {
                compression: c,
                byte_stream_split: bss,
                ..base
            },
            name,
        ));
    }
    for rg in [32, 1024] {
        configs.push((
            WriteOptions {
                row_group_rows: rg,
                ..base
            },
            format!("{} (default)", base.compression.name()),
        ));
    }
    let dir = work.join("sweep");
    if std::env::var_os("VGGCACHE_BENCH_NO_SWEEP").is_some() {
        configs.clear();
    }
    for (opts, name) in &configs {
        let wt = write(&dir, *opts, &feats, &n, 1);
        let size = cache_bytes(&dir) as f64;
        let rt = read(&dir, 3);
        let py = pyarrow_read(&dir).map_or("n/a".to_string(), |g| format!("{g:.2}"));
        println!(
            "{:<22} {:>7} {:>10.3} {:>13.0} {:>13.2} {:>13}",
            name,
            opts.row_group_rows,
            size / raw,
            raw / wt / 1e6,
            raw / rt / 1e9,
            py
        );
    }

    // One shard at a time vs a round of shards encoded in parallel (what `extract` does), alternating.
    let threads = rayon::current_num_threads().clamp(1, 8);
    let (mut one, mut par) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        one.push(raw / write(&work.join("one"), base, &feats, &n, 1) / 1e6);
        par.push(raw / write(&work.join("par"), base, &feats, &n, threads) / 1e6);
    }
    one.sort_by(f64::total_cmp);
    par.sort_by(f64::total_cmp);
    println!(
        "write MB/s (median of 3, default options): append_shard {:.0}, append_shards x{threads} {:.0}, ratio {:.2}",
        one[1],
        par[1],
        par[1] / one[1]
    );

    // Criterion timings of the default configuration.
    let dir = work.join("default");
    write(&dir, base, &feats, &n, 1);
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Bytes(raw as u64));
    g.bench_function("read_all (open + all, default options)", |b| {
        b.iter(|| {
            let all = FeatureCache::open(&dir)
                .and_then(|c| c.all())
                .expect("read");
            black_box(all.features.len())
        })
    });
    g.bench_function("batches(256) (default options)", |b| {
        b.iter(|| {
            let cache = FeatureCache::open(&dir).expect("open");
            let mut rows = 0;
            for batch in cache.batches(256) {
                rows += batch.expect("batch").len();
            }
            black_box(rows)
        })
    });
    let wdir = work.join("write");
    g.bench_function("write (default options, fsync per shard)", |b| {
        b.iter(|| write(&wdir, base, &feats, &n, 1))
    });
    g.finish();
    c.final_summary();
    let _ = std::fs::remove_dir_all(&work);
}
