//! Criterion benchmarks of the MLP head: one training epoch on synthetic 2,000 x 25,088 features and a step breakdown.
//!
//! `cargo bench --bench head` (env `HEAD_BENCH_ROWS` changes the 2,000 rows). Throughput is
//! reported as "elem/s" where one element is one floating-point operation of the matrix products,
//! so `Gelem/s` reads as GFLOP/s; the Adam benches count parameters (elements updated per second).
//! Inputs are built outside the timed region with fixed seeds. Thread count: rayon's default
//! (`RAYON_NUM_THREADS`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vggcache::head::{Adam, AdamConfig, Mlp, Workspace};

const D: usize = 25_088;
const HIDDEN: usize = 4_096;
const CLASSES: usize = 2;
const BATCH: usize = 64;

/// VGG-like features: about half exact zeros (post-ReLU), the rest positive.
fn features(rows: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, D), |_| {
        let u: f32 = rng.random();
        if u < 0.52 {
            0.0
        } else {
            -(1.0 - rng.random::<f32>()).ln() * 2.0
        }
    })
}

fn dims() -> [usize; 4] {
    [D, HIDDEN, HIDDEN, CLASSES]
}

/// FLOPs of the products of one step on `b` rows: forward, weight gradients, and the input
/// gradients of every layer but the first.
fn step_flops(b: usize) -> (u64, u64) {
    let d = dims();
    let fwd: usize = d.windows(2).map(|p| 2 * b * p[0] * p[1]).sum();
    let bwd = fwd
        + d.windows(2)
            .skip(1)
            .map(|p| 2 * b * p[0] * p[1])
            .sum::<usize>();
    (fwd as u64, bwd as u64)
}

fn bench_step(c: &mut Criterion) {
    let x = features(BATCH, 1);
    let y: Vec<usize> = (0..BATCH).map(|i| i % CLASSES).collect();
    let mut mlp = Mlp::new(&dims(), 0);
    let mut adam = Adam::new(AdamConfig::default(), mlp.n_params());
    let mut ws = Workspace::new(&dims(), BATCH);
    ws.set_batch(x.view());
    let mut rng = StdRng::seed_from_u64(2);
    let (fwd, bwd) = step_flops(BATCH);
    let mut g = c.benchmark_group("head_step_b64");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));

    g.throughput(Throughput::Elements(fwd));
    g.bench_function("forward_train", |bch| {
        bch.iter(|| mlp.forward_train(black_box(&mut ws), 0.5, &mut rng))
    });
    mlp.forward_train(&mut ws, 0.5, &mut rng);
    mlp.loss(&mut ws, &y);
    let mut grads = vec![0.0f32; mlp.n_params()];
    g.throughput(Throughput::Elements(bwd));
    g.bench_function("backward_gradients_only", |bch| {
        bch.iter(|| mlp.backward_collect(black_box(&mut ws), 0.5, &mut grads))
    });
    g.bench_function("backward_fused_with_adam", |bch| {
        bch.iter(|| mlp.backward_adam(black_box(&mut ws), 0.5, &mut adam))
    });
    g.throughput(Throughput::Elements(mlp.n_params() as u64));
    g.bench_function("adam_flat_fused_pass", |bch| {
        let mut params = mlp.params().to_vec();
        bch.iter(|| adam.step_flat(black_box(&mut params), &grads))
    });
    g.throughput(Throughput::Elements(fwd + bwd));
    g.bench_function("train_step", |bch| {
        bch.iter(|| mlp.train_step(black_box(&mut ws), &y, 0.5, &mut adam, &mut rng))
    });
    g.finish();
}

fn bench_epoch(c: &mut Criterion) {
    let rows: usize = std::env::var("HEAD_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let x = features(rows, 3);
    let y: Vec<usize> = (0..rows).map(|i| i % CLASSES).collect();
    let mut mlp = Mlp::new(&dims(), 0);
    let mut adam = Adam::new(AdamConfig::default(), mlp.n_params());
    let mut ws = Workspace::new(&dims(), BATCH);
    let mut rng = StdRng::seed_from_u64(4);
    let order: Vec<usize> = (0..rows).collect();
    let mut yb = Vec::with_capacity(BATCH);
    let flops: u64 = order
        .chunks(BATCH)
        .map(|b| {
            let (f, w) = step_flops(b.len());
            f + w
        })
        .sum();
    let mut g = c.benchmark_group("head_epoch");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(flops));
    g.bench_with_input(
        BenchmarkId::new("epoch_b64", format!("{rows}x{D}")),
        &rows,
        |bch, _| {
            bch.iter(|| {
                for batch in order.chunks(BATCH) {
                    ws.load_rows(x.view(), batch, None);
                    yb.clear();
                    yb.extend(batch.iter().map(|&i| y[i]));
                    black_box(mlp.train_step(&mut ws, &yb, 0.5, &mut adam, &mut rng));
                }
            })
        },
    );
    g.finish();
}

/// Peak resident set size of this process in MiB (Linux `ru_maxrss`).
fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `HEAD_BENCH_PROFILE=1 cargo bench --bench head`: alternate the step phases `rounds` times
/// (fused backward+Adam vs gradients then a flat Adam pass), then time epochs; print medians,
/// GFLOP/s and peak RSS. Alternating makes the comparison fair on a noisy shared machine.
fn profile() {
    use std::time::Instant;
    let rows: usize = std::env::var("HEAD_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let rounds = 7;
    let x = features(rows, 3);
    let y: Vec<usize> = (0..rows).map(|i| i % CLASSES).collect();
    let mut mlp = Mlp::new(&dims(), 0);
    let mut adam = Adam::new(AdamConfig::default(), mlp.n_params());
    let mut ws = Workspace::new(&dims(), BATCH);
    let mut rng = StdRng::seed_from_u64(4);
    let mut grads = vec![0.0f32; mlp.n_params()];
    let (fwd_f, bwd_f) = step_flops(BATCH);
    let (mut tf, mut tc, mut ta, mut tfu) = (vec![], vec![], vec![], vec![]);
    let idx: Vec<usize> = (0..BATCH).collect();
    for _ in 0..rounds {
        ws.load_rows(x.view(), &idx, None);
        let t = Instant::now();
        mlp.forward_train(&mut ws, 0.5, &mut rng);
        tf.push(t.elapsed().as_secs_f64());
        mlp.loss(&mut ws, &y[..BATCH]);
        let t = Instant::now();
        mlp.backward_collect(&mut ws, 0.5, &mut grads);
        tc.push(t.elapsed().as_secs_f64());
        let mut p = std::mem::take(&mut grads);
        let t = Instant::now();
        adam.step_flat(mlp.params_mut(), &p);
        ta.push(t.elapsed().as_secs_f64());
        std::mem::swap(&mut grads, &mut p);
        let t = Instant::now();
        mlp.backward_adam(&mut ws, 0.5, &mut adam);
        tfu.push(t.elapsed().as_secs_f64());
    }
    let (f, c, a, fu) = (median(tf), median(tc), median(ta), median(tfu));
    let gb = mlp.n_params() as f64 * 4.0 * 7.0 / 1e9;
    println!(
        "step b={BATCH}, medians of {rounds}, {} rayon threads",
        rayon::current_num_threads()
    );
    println!(
        "  forward (train)              {:7.1} ms  {:6.1} GFLOP/s",
        f * 1e3,
        fwd_f as f64 / f / 1e9
    );
    println!(
        "  backward, gradients only     {:7.1} ms  {:6.1} GFLOP/s",
        c * 1e3,
        bwd_f as f64 / c / 1e9
    );
    println!(
        "  Adam flat pass (p,g,m,v)     {:7.1} ms  {:6.1} GB/s",
        a * 1e3,
        gb / a
    );
    println!(
        "  backward fused with Adam     {:7.1} ms  (separate: {:.1} ms)",
        fu * 1e3,
        (c + a) * 1e3
    );
    drop(grads);
    let order: Vec<usize> = (0..rows).collect();
    let mut yb = Vec::with_capacity(BATCH);
    let epoch_flops: u64 = order
        .chunks(BATCH)
        .map(|b| {
            let (f, w) = step_flops(b.len());
            f + w
        })
        .sum();
    let mut te = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        for batch in order.chunks(BATCH) {
            ws.load_rows(x.view(), batch, None);
            yb.clear();
            yb.extend(batch.iter().map(|&i| y[i]));
            black_box(mlp.train_step(&mut ws, &yb, 0.5, &mut adam, &mut rng));
        }
        te.push(t.elapsed().as_secs_f64());
    }
    let e = median(te.clone());
    println!(
        "epoch {rows} x {D}, batch {BATCH}: median {e:.2} s of {:?}, {:.1} GFLOP/s overall",
        te.iter()
            .map(|t| (t * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        epoch_flops as f64 / e / 1e9
    );
    println!(
        "peak RSS {:.0} MiB (features {:.0} MiB, parameters {:.0} MiB)",
        peak_rss_mib(),
        (rows * D * 4) as f64 / 1048576.0,
        (mlp.n_params() * 4) as f64 / 1048576.0
    );
}

criterion_group!(benches, bench_step, bench_epoch);

fn main() {
    if std::env::var_os("HEAD_BENCH_PROFILE").is_some() {
        profile();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
