//! Criterion benchmarks of the MLP head: one training epoch on synthetic 2,000 x 25,088 features and a step breakdown.
//!
//! `cargo bench --bench head` (env `HEAD_BENCH_ROWS` changes the 2,000 rows). Throughput is
//! reported as "elem/s" where one element is one floating-point operation of the matrix products,
//! so `Gelem/s` reads as GFLOP/s; the Adam benches count parameters (elements updated per second).
//! Inputs are built outside the timed region with fixed seeds. Thread count: rayon's default
//! (`RAYON_NUM_THREADS`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

criterion_group!(benches, bench_step, bench_epoch);
criterion_main!(benches);
