//! Trunk-only throughput (img/s) on CPU beside onnxruntime-python on the same model and batch, same run.
//!
//! `cargo bench --bench trunk` (after `make model`). Env: VGGCACHE_BENCH_MODEL (default trunk
//! `vgg16` of the model store), VGGCACHE_BENCH_BATCHES (default "1,8,16,32"), VGGCACHE_BENCH_IMAGES
//! (images per measurement, default 32), VGGCACHE_BENCH_REPEATS (default 3). Runs alternate
//! vggcache / peer so drift on a shared machine hits both; medians are reported.
//! VGGCACHE_BENCH_DEVICE=cpu|cuda|auto (default cpu) picks the execution provider; the peer is CPU-only
//! and is skipped for cuda (scripts/gpu/gpu-check.sh measures PyTorch beside it on the GPU);
//! VGGCACHE_CUDA_NHWC=1 asks the CUDA provider for NHWC convolutions. VGGCACHE_BENCH_SESSIONS=N
//! (default 1) runs N sessions on N threads at once, as `extract --sessions N` does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vggcache::trunk::{Device, Trunk, TrunkOptions};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One timed measurement of `images` images in batches of `b`, split over the sessions `ts`
/// running on one thread each (after one warm-up batch per session).
fn ours(ts: &mut [Trunk], b: usize, images: usize) -> f64 {
    let (h, w) = ts[0].info().input_hw;
    // Same input recipe as the peer: uniform 0..255, fixed seed, built outside the timed region.
    let mut state = 0x2545F4914F6CDD1Du64;
    let x: Vec<f32> = (0..b * 3 * h * w)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 255.0
        })
        .collect();
    for t in ts.iter_mut() {
        std::hint::black_box(t.run(&x, b).expect("warm-up"));
    }
    let share = images.div_ceil(b).div_ceil(ts.len());
    let start = Instant::now();
    let n: usize = std::thread::scope(|s| {
        let x = &x;
        let runs: Vec<_> = ts
            .iter_mut()
            .map(|t| {
                s.spawn(move || {
                    for _ in 0..share {
                        std::hint::black_box(t.run(x, b).expect("run"));
                    }
                    share * b
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("bench thread"))
            .sum()
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn peer(py: &Path, model: &Path, b: usize, images: usize) -> Option<f64> {
    let script = common::peers()?;
    let out = Command::new(py)
        .arg(&script)
        .args([
            "trunk",
            &model.to_string_lossy(),
            "--batch",
            &b.to_string(),
            "--n",
            &images.to_string(),
        ])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["img_per_s"].as_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / test-mode discovery: nothing to list.
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = match std::env::var_os("VGGCACHE_BENCH_MODEL") {
        Some(m) => PathBuf::from(m),
        None => match vggcache::store::model_path(None, vggcache::store::DEFAULT_TRUNK) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("trunk bench skipped: {e}");
                return;
            }
        },
    };
    let batches: Vec<usize> = env_or("VGGCACHE_BENCH_BATCHES", "1,8,16,32")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let images: usize = env_or("VGGCACHE_BENCH_IMAGES", "32").parse().unwrap_or(32);
    let repeats: usize = env_or("VGGCACHE_BENCH_REPEATS", "3").parse().unwrap_or(3);
    let py = root.join(".venv/bin/python");
    let device = match env_or("VGGCACHE_BENCH_DEVICE", "cpu").as_str() {
        "cuda" => Device::Cuda,
        "auto" => Device::Auto,
        _ => Device::Cpu,
    };
    let has_peer = device == Device::Cpu && py.exists() && common::peers().is_some();
    if !has_peer {
        eprintln!(
            "note: peer skipped (needs .venv from `make setup` and the peers script: VGGCACHE_PEERS)"
        );
    }
    let opts = TrunkOptions {
        device,
        threads: 0,
        cuda_nhwc: std::env::var("VGGCACHE_CUDA_NHWC").is_ok_and(|v| v == "1"),
        ..Default::default()
    };
    let sessions: usize = env_or("VGGCACHE_BENCH_SESSIONS", "1")
        .parse()
        .unwrap_or(1)
        .max(1);
    let mut ts = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        match Trunk::load(&model, &opts) {
            Ok(t) => ts.push(t),
            Err(e) => {
                eprintln!("trunk bench skipped: {e}");
                return;
            }
        }
    }
    let t = &ts[0];
    let gflop = if t.info().dim == 25088 {
        15.47
    } else {
        f64::NAN
    };
    println!(
        "trunk-only, {} provider, {sessions} session(s), ONNX Runtime default threads, {} cores; model {}",
        t.provider().name(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        model.display()
    );
    println!("| batch | vggcache img/s | GFLOP/s | onnxruntime-python img/s | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    for &b in &batches {
        let n = images.max(b);
        let (mut a, mut p) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            a.push(ours(&mut ts, b, n));
            if has_peer {
                if let Some(x) = peer(&py, &model, b, n) {
                    p.push(x);
                }
            }
        }
        let ma = median(a);
        let (mp, ratio) = if p.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            let mp = median(p);
            (format!("{mp:.2}"), format!("{:.3}", ma / mp))
        };
        println!("| {b} | {ma:.2} | {:.0} | {mp} | {ratio} |", ma * gflop);
    }
}
