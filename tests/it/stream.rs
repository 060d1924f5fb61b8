//! Issue 19: training from a stream of row groups (`train-head --stream`, chosen automatically
//! over `--memory-budget`): the same weights as in memory when the shuffle buffer holds every
//! row, and a bounded peak RSS on a cache of 1 GB of features.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vggcache::cache::{CacheIdentity, CacheWriter, FeatureRow, ModelIdentity, WriteOptions};
use vggcache::dataset::Split;
use vggcache::head::FittedHead;
use vggcache::spec::PreprocessSpec;

use crate::common::text;

pub(crate) fn identity(dim: usize) -> CacheIdentity {
    CacheIdentity {
        model: ModelIdentity {
            fingerprint: format!("sha256:{:0<64}", "stream"),
            path: "models/stream.onnx".into(),
            provenance: "synthetic (tests/it/stream.rs)".into(),
            metadata: BTreeMap::new(),
        },
        preprocess: PreprocessSpec::caffe_bgr(),
        dim,
    }
}

pub(crate) fn classes() -> Vec<String> {
    vec!["cat".into(), "dog".into()]
}

/// Writes a synthetic cache of `n` rows x `dim` features into `dir` with `opts`, shards of
/// `shard_rows` rows written in parallel: row i is class `i % 2` (so row groups hold both), `val`
/// when `val_every > 0 && (i / 2) % val_every == 0` (both classes), features uniform in [0, 1) plus 0.5 on the first
/// 32 dimensions of class 1 (learnable). Rows are generated shard by shard (bounded memory).
pub(crate) fn synthetic_cache(
    dir: &Path,
    n: usize,
    dim: usize,
    val_every: usize,
    shard_rows: usize,
    opts: WriteOptions,
) {
    let cls = classes();
    let mut w = CacheWriter::open_with(dir, &identity(dim), &cls, false, opts).unwrap();
    let mut rng = StdRng::seed_from_u64(19);
    // Several shards per append: encoded in parallel, at most `per_append * shard_rows` rows held.
    let per_append = 4;
    let mut start = 0;
    while start < n {
        let end = (start + per_append * shard_rows).min(n);
        let names: Vec<(String, String)> = (start..end)
            .map(|i| (format!("img/{i:06}.jpg"), format!("{i:016x}")))
            .collect();
        let feats: Vec<Vec<f32>> = (start..end)
            .map(|i| {
                (0..dim)
                    .map(|j| rng.random::<f32>() + if i % 2 == 1 && j < 32 { 0.5 } else { 0.0 })
                    .collect()
            })
            .collect();
        let rows: Vec<FeatureRow> = (start..end)
            .map(|i| {
                let k = i - start;
                FeatureRow {
                    path: &names[k].0,
                    split: if val_every > 0 && (i / 2) % val_every == 0 {
                        Split::Val
                    } else {
                        Split::Train
                    },
                    label: Some((i % 2) as u32),
                    class: None,
                    content_hash: &names[k].1,
                    features: &feats[k],
                }
            })
            .collect();
        let shards: Vec<Vec<FeatureRow>> = rows.chunks(shard_rows).map(<[_]>::to_vec).collect();
        w.append_shards(&shards).unwrap();
        start = end;
    }
    w.finish().unwrap();
}

fn vggcache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
}

/// `train-head` on `cache` into `runs/name` with `extra` flags; returns the run folder and output.
fn train_head(cache: &Path, runs: &Path, name: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = vggcache()
        .arg("train-head")
        .arg("--features")
        .arg(cache)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--name", name])
        .args(extra)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "train-head {extra:?}: {t}");
    (runs.join(name), t)
}

fn head(run: &Path) -> FittedHead {
    FittedHead::load(&run.join("head.safetensors")).unwrap().0
}

/// Parameters and standardizer of two heads, bit for bit.
fn same_weights(a: &FittedHead, b: &FittedHead) -> bool {
    let bits = |h: &FittedHead| -> (Vec<u32>, Vec<u32>) {
        let p = h.mlp().params().iter().map(|x| x.to_bits()).collect();
        let s = h.scaler().map_or(Vec::new(), |(m, s)| {
            m.iter().chain(s.iter()).map(|x| x.to_bits()).collect()
        });
        (p, s)
    };
    bits(a) == bits(b)
}

/// Val accuracy printed on the line of `epoch`, in the `val_acc` column of the epoch table.
fn val_acc_at(out: &str, epoch: usize) -> f64 {
    let header: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("epoch "))
        .unwrap_or_else(|| panic!("no epoch table in {out}"))
        .split_whitespace()
        .collect();
    let col = header
        .iter()
        .position(|h| *h == "val_acc")
        .expect("a val_acc column");
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() == header.len() && w[0] == epoch.to_string())
        .and_then(|w| w[col].parse().ok())
        .unwrap_or_else(|| panic!("no epoch {epoch} line in {out}"))
}

const SMALL: &[&str] = &[
    "--hidden",
    "16",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--lr",
    "1e-3",
];

#[test]
fn a_buffer_holding_every_row_gives_the_in_memory_weights() {
    let dir = tempfile::tempdir().unwrap();
    for (cache, val_every) in [("with-val", 5), ("held-out", 0)] {
        let cache = dir.path().join(cache);
        let opts = WriteOptions {
            row_group_rows: 16,
            compact_below_rows: 0,
            ..WriteOptions::default()
        };
        // 400 rows in 5 shards of 80, row groups of 16: 25 groups in the stream.
        synthetic_cache(&cache, 400, 96, val_every, 80, opts);
        let runs = dir.path().join(format!("runs-{val_every}"));
        let (mem, _) = train_head(&cache, &runs, "memory", SMALL);
        let full = [SMALL, &["--stream", "--shuffle-buffer-rows", "100000"]].concat();
        let (streamed, out) = train_head(&cache, &runs, "stream-all", &full);
        assert!(out.contains("stream memory:"), "{out}");
        assert!(
            same_weights(&head(&mem), &head(&streamed)),
            "{val_every}: a buffer of every row must give the in-memory weights"
        );
        // The same metrics too (val streamed in the same chunks).
        let csv = |run: &Path| fs::read_to_string(run.join("metrics.csv")).unwrap();
        // every column but the last (seconds)
        let strip = |s: String| -> Vec<Vec<String>> {
            s.lines()
                .map(|l| l.split(',').take(5).map(String::from).collect())
                .collect()
        };
        assert_eq!(strip(csv(&mem)), strip(csv(&streamed)));
        // A small buffer shuffles locally: other batches, other weights, still a working head.
        let small = [SMALL, &["--stream", "--shuffle-buffer-rows", "24"]].concat();
        let (local, out) = train_head(&cache, &runs, "stream-24", &small);
        assert!(!same_weights(&head(&mem), &head(&local)), "{out}");
        let val_acc = val_acc_at(&out, 3);
        assert!(
            val_acc > 0.8,
            "small-buffer stream val accuracy {val_acc}: {out}"
        );
    }
}

#[test]
fn over_the_memory_budget_train_head_streams_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    synthetic_cache(&cache, 120, 64, 4, 60, WriteOptions::default());
    let runs = dir.path().join("runs");
    let (_, out) = train_head(
        &cache,
        &runs,
        "auto",
        &[SMALL, &["--memory-budget", "8K"]].concat(),
    );
    assert!(
        out.contains("streaming: the train and val features take")
            && out.contains("--memory-budget"),
        "{out}"
    );
    assert!(out.contains("stream memory: shuffle buffer"), "{out}");
    let (_, out) = train_head(&cache, &runs, "fits", SMALL);
    assert!(!out.contains("stream"), "{out}");
}

/// Peak resident memory (KiB, `VmHWM` of `/proc/PID/status`, polled every 10 ms until the child
/// exits), its exit code, and its wall time. Not `getrusage`: a child's `ru_maxrss` counts the
/// parent's resident memory at the spawn (the address space it ran in until `exec`), here the
/// test's own gigabyte of cache writing.
fn run_measured(mut cmd: Command, log: &Path) -> (u64, i32, f64) {
    let f = fs::File::create(log).unwrap();
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = fs::read_to_string(&status_file) {
            let hwm = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    (
        peak,
        status.code().unwrap_or(-1),
        t0.elapsed().as_secs_f64(),
    )
}

/// Where the 1 GB cache goes: under the target folder (the test binary's), not /tmp.
fn big_tempdir() -> tempfile::TempDir {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let base = target.join("vggcache-big-tests");
    fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// The bound: 10,000 x 25,088 float32 features (1.0 GB; about 1 GB on disk, uniform
/// noise does not compress), a hidden-64 head, a 1,024-row buffer, 4 batches of 64 prefetched.
/// Expected peak: buffer 103 MB + batches 39 MB + two 256-row groups decoding 51 MB + model 26 MB
/// + activations 6 MB, plus the binary and the cache's row index: under 350 MB.
const RSS_BOUND_MB: u64 = 350;

#[test]
fn streaming_a_1gb_cache_stays_under_the_memory_bound() {
    let dir = big_tempdir();
    let cache = dir.path().join("cache");
    let t0 = Instant::now();
    synthetic_cache(&cache, 10_000, 25_088, 10, 1_000, WriteOptions::default());
    let built = t0.elapsed().as_secs_f64();
    let bytes: u64 = fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(bytes > 900_000_000, "cache is {bytes} bytes");
    let mut cmd = vggcache();
    cmd.arg("train-head")
        .arg("--features")
        .arg(&cache)
        .arg("--runs-dir")
        .arg(dir.path().join("runs"))
        .args([
            "--name",
            "big",
            "--hidden",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "64",
        ])
        .args(["--lr", "1e-3"])
        .args(["--shuffle-buffer-rows", "1024", "--memory-budget", "256M"]);
    let log = dir.path().join("train.log");
    let (kib, code, secs) = run_measured(cmd, &log);
    let out = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{out}");
    let mb = kib * 1024 / 1_000_000;
    eprintln!(
        "1 GB stream: cache {:.2} GB built in {built:.1} s; train-head peak RSS {mb} MB \
         (bound {RSS_BOUND_MB} MB), {secs:.1} s\n{out}",
        bytes as f64 / 1e9
    );
    assert!(
        out.contains("streaming: the train and val features take"),
        "{out}"
    );
    assert!(
        out.contains("stream memory: shuffle buffer 103 MB"),
        "{out}"
    );
    assert!(
        mb < RSS_BOUND_MB,
        "peak RSS {mb} MB over the bound {RSS_BOUND_MB} MB\n{out}"
    );
    // It learned: the class signal is in 32 of 25,088 dimensions.
    let acc = val_acc_at(&out, 1);
    assert!(acc > 0.7, "val accuracy {acc}\n{out}");
}

/// Measurement, not a check (`#[ignore]`d; `scripts/bench/bench_stream_synth.sh` runs it): the 1 GB
/// synthetic cache of the test above, train-head with a hidden-64 head for one epoch, in memory
/// (`--memory-budget 8G`) and streamed (`--stream`, 1,024-row buffer), alternating for
/// `VGGCACHE_BENCH_ROUNDS` rounds (default 2); prints each run's epoch line, wall time and peak RSS.
#[test]
#[ignore]
fn bench_synthetic_streamed_vs_in_memory() {
    let dir = big_tempdir();
    let cache = dir.path().join("cache");
    synthetic_cache(&cache, 10_000, 25_088, 10, 1_000, WriteOptions::default());
    let rounds: usize = std::env::var("VGGCACHE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let common = [
        "--hidden",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--lr",
        "1e-3",
    ];
    for round in 0..rounds {
        for (mode, extra) in [
            ("memory", &["--memory-budget", "8G"][..]),
            ("stream", &["--stream", "--shuffle-buffer-rows", "1024"][..]),
        ] {
            let mut cmd = vggcache();
            cmd.arg("train-head")
                .arg("--features")
                .arg(&cache)
                .arg("--runs-dir")
                .arg(dir.path().join("runs"))
                .args(["--name", &format!("{mode}{round}")])
                .args(common)
                .args(extra);
            let log = dir.path().join(format!("{mode}{round}.log"));
            let (kib, code, secs) = run_measured(cmd, &log);
            let out = fs::read_to_string(&log).unwrap();
            assert_eq!(code, 0, "{out}");
            let epoch = out
                .lines()
                .find(|l| l.trim_start().starts_with('1') && l.split_whitespace().count() >= 6)
                .unwrap_or("(no epoch line)");
            let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "round {round} {mode}: wall {secs:.1} s, peak RSS {} MB, epoch line: {}, load {}",
                kib * 1024 / 1_000_000,
                epoch.trim(),
                load.trim()
            );
        }
    }
}
