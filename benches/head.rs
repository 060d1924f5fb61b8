//! Criterion benchmarks of the MLP head: one training epoch on synthetic 2,000 x 25,088 features and a step breakdown.
//!
//! `cargo bench --bench head` (env `HEAD_BENCH_ROWS` changes the 2,000 rows).
//! `HEAD_BENCH_SPARSE=CACHE cargo bench --bench head`: layer 1 dense vs sparse on a real cache
//! (density, step phases, Adam's share, epochs, val accuracy over seeds); see [`sparse_bench`]. Throughput is
//! reported as "elem/s" where one element is one floating-point operation of the matrix products,
//! so `Gelem/s` reads as GFLOP/s; the Adam benches count parameters (elements updated per second).
//! Inputs are built outside the timed region with fixed seeds. Thread count: rayon's default
//! (`RAYON_NUM_THREADS`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vggcache::head::linalg::{gemm_into, matmul, Threads};
use vggcache::head::{Adam, AdamConfig, Mlp, SparsePolicy, Standardizer, Workspace};

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

/// One way of computing a product, for [`kernels`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernel {
    /// `gemm`, serial, in column blocks split over rayon (the head's current path).
    GemmSplit,
    /// `gemm` in its own rayon mode.
    GemmRayon,
    /// `matrixmultiply::sgemm` with its own threading (`MATMUL_NUM_THREADS`).
    Mm,
    /// `matrixmultiply::sgemm` in column blocks split over rayon.
    MmSplit,
}

/// `c = a · b` with kernel `k` on whole views (`a: (m, k)`, `b: (k, n)`, `c: (m, n)`).
fn product(kind: Kernel, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    match kind {
        Kernel::GemmSplit => matmul(a, b, c, false, Threads::Pool),
        Kernel::GemmRayon => gemm_into(
            a,
            b,
            c,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        ),
        Kernel::Mm => serial_mm(a, b, c),
        Kernel::MmSplit => mm_split(a, b, c, 2 * rayon::current_num_threads()),
    }
}

/// `matrixmultiply` in column blocks over rayon, split as the head's `matmul` splits for `gemm`.
fn mm_split(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>, parts: usize) {
    let n = b.ncols();
    if parts <= 1 || n < 32 {
        return serial_mm(a, b, c);
    }
    let left = parts / 2;
    let mid = ((n * left / parts).div_ceil(16) * 16).min(n);
    let (bl, br) = b.split_at(Axis(1), mid);
    let (cl, cr) = c.split_at(Axis(1), mid);
    rayon::join(
        || mm_split(a, bl, cl, left),
        || mm_split(a, br, cr, parts - left),
    );
}

fn serial_mm(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (cs, as_, bs) = (c.strides().to_vec(), a.strides(), b.strides());
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            as_[0],
            as_[1],
            b.as_ptr(),
            bs[0],
            bs[1],
            0.0,
            c.as_mut_ptr(),
            cs[0],
            cs[1],
        )
    }
}

/// User + system CPU seconds of this process so far (all threads).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `HEAD_BENCH_KERNELS=1`: each product of one batch-64 step timed alone, per kernel and
/// layout. Kernels are interleaved within each of 5 rounds (fair under a varying load); medians of
/// wall time, and GFLOP per CPU-second (kernel efficiency, less sensitive to other processes).
fn kernels() {
    use std::time::Instant;
    let rounds = 5;
    let x = features(BATCH, 1);
    let mut rng = StdRng::seed_from_u64(9);
    let mut rand =
        |r: usize, c: usize| Array2::from_shape_fn((r, c), |_| rng.random::<f32>() - 0.5);
    let w1 = rand(D, HIDDEN);
    let w1t = w1.t().as_standard_layout().to_owned();
    let w2 = rand(HIDDEN, HIDDEN);
    let w2t = w2.t().as_standard_layout().to_owned();
    let h = rand(BATCH, HIDDEN).mapv(|v| v.max(0.0));
    let dz = rand(BATCH, HIDDEN);
    let mut c = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut g1 = Array2::<f32>::zeros((D, HIDDEN));
    let mut g2 = Array2::<f32>::zeros((HIDDEN, HIDDEN));
    println!(
        "kernels, {} rayon threads, MATMUL_NUM_THREADS={:?}, medians of {rounds} interleaved rounds",
        rayon::current_num_threads(),
        std::env::var("MATMUL_NUM_THREADS").ok()
    );
    let f1 = 2.0 * (BATCH * D * HIDDEN) as f64;
    let f2 = 2.0 * (BATCH * HIDDEN * HIDDEN) as f64;
    let kinds = [
        Kernel::GemmSplit,
        Kernel::GemmRayon,
        Kernel::Mm,
        Kernel::MmSplit,
    ];
    type Job<'a> = Box<dyn FnMut(Kernel) + 'a>;
    let (xv, hv, dzv) = (x.view(), h.view(), dz.view());
    let (w1v, w1tv, w2v, w2tv) = (w1.view(), w1t.view(), w2.view(), w2t.view());
    let mut c2 = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut c3 = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut c4 = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut c5 = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut c6 = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut g1b = Array2::<f32>::zeros((HIDDEN, D));
    let mut c1t = Array2::<f32>::zeros((HIDDEN, BATCH));
    let mut c1r = Array2::<f32>::zeros((BATCH, HIDDEN));
    let mut jobs: Vec<(&str, f64, Job)> = vec![(
        "fwd1 x·W1, W (D,H)",
        f1,
        Box::new(|k| product(k, xv, w1v, c.view_mut())),
    )];
    jobs.push((
        "fwd1 x·W1tᵀ, W stored (H,D)",
        f1,
        Box::new(|k| product(k, xv, w1tv.t(), c2.view_mut())),
    ));
    jobs.push((
        "fwd1 W1t·xᵀ into (H,B), W (H,D)",
        f1,
        Box::new(|k| product(k, w1tv, xv.t(), c1t.view_mut())),
    ));
    jobs.push((
        "fwd1 W1t·xᵀ into (B,H)ᵀ (the head)",
        f1,
        Box::new(|k| product(k, w1tv, xv.t(), c1r.view_mut().reversed_axes())),
    ));
    jobs.push((
        "fwd2 h·W2",
        f2,
        Box::new(|k| product(k, hv, w2v, c3.view_mut())),
    ));
    jobs.push((
        "fwd2 h·W2tᵀ",
        f2,
        Box::new(|k| product(k, hv, w2tv.t(), c4.view_mut())),
    ));
    jobs.push((
        "in2 dz·W2ᵀ, W (H,H)",
        f2,
        Box::new(|k| product(k, dzv, w2v.t(), c5.view_mut())),
    ));
    jobs.push((
        "in2 dz·W2t, W stored transposed",
        f2,
        Box::new(|k| product(k, dzv, w2tv, c6.view_mut())),
    ));
    jobs.push((
        "wg1 xᵀ·dz whole (D,H)",
        f1,
        Box::new(|k| product(k, xv.t(), dzv, g1.view_mut())),
    ));
    jobs.push((
        "wg1 dzᵀ·x into (H,D)",
        f1,
        Box::new(|k| product(k, dzv.t(), xv, g1b.view_mut())),
    ));
    jobs.push((
        "wg2 hᵀ·dz whole (H,H)",
        f2,
        Box::new(|k| product(k, hv.t(), dzv, g2.view_mut())),
    ));
    for (name, flops, job) in jobs.iter_mut() {
        let mut wall = vec![vec![]; kinds.len()];
        let mut cpu = vec![vec![]; kinds.len()];
        for &k in &kinds {
            job(k); // warm-up
        }
        for _ in 0..rounds {
            for (i, &k) in kinds.iter().enumerate() {
                let (t, c0) = (Instant::now(), cpu_seconds());
                job(k);
                wall[i].push(t.elapsed().as_secs_f64());
                cpu[i].push(cpu_seconds() - c0);
            }
        }
        for (i, k) in kinds.iter().enumerate() {
            let (w, c) = (median(wall[i].clone()), median(cpu[i].clone()));
            println!(
                "  {name:<34} {:<10} {:8.1} ms {:6.1} GFLOP/s {:6.1} GFLOP/cpu-s",
                format!("{k:?}"),
                w * 1e3,
                *flops / w / 1e9,
                *flops / c / 1e9
            );
        }
    }
    println!(
        "  uptime: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

/// `HEAD_BENCH_WRITE_CACHE=DIR`: write a synthetic two-class cache for `scripts/bench/bench_head.sh`:
/// `HEAD_BENCH_ROWS` train rows (default 4,000) and a tenth as many val rows, D = 25,088
/// ReLU-of-Gaussian features (about 50% exact zeros); class 1 has its Gaussian mean shifted by
/// +0.25 on the first 1,024 dimensions so the task is learnable. Seeded: same bytes every time.
fn write_synthetic_cache(dir: &std::path::Path) {
    use std::collections::BTreeMap;
    use vggcache::cache::{CacheIdentity, CacheWriter, FeatureRow, ModelIdentity};
    use vggcache::spec::PreprocessSpec;
    let train: usize = std::env::var("HEAD_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000);
    let rows = train + train / 10;
    let identity = CacheIdentity {
        model: ModelIdentity {
            fingerprint: "synthetic-relu-gaussian".into(),
            path: "synthetic".into(),
            provenance: "benches/head.rs write_synthetic_cache".into(),
            metadata: BTreeMap::new(),
        },
        preprocess: PreprocessSpec::caffe_bgr(),
        dim: D,
    };
    let classes = vec!["a".to_string(), "b".to_string()];
    let _ = std::fs::remove_dir_all(dir);
    let mut w = CacheWriter::open(dir, &identity, &classes, false).expect("open the cache writer");
    let mut rng = StdRng::seed_from_u64(11);
    const SHARD: usize = 256;
    for start in (0..rows).step_by(SHARD) {
        let end = (start + SHARD).min(rows);
        let labels: Vec<u32> = (start..end).map(|i| (i % 2) as u32).collect();
        let mut feats = vec![0.0f32; (end - start) * D];
        for (r, row) in feats.chunks_mut(D).enumerate() {
            let shift = if labels[r] == 1 { 0.25 } else { 0.0 };
            for (j, v) in row.iter_mut().enumerate() {
                // Box-Muller: one standard normal per draw pair (the second is dropped)
                let u1: f32 = 1.0 - rng.random::<f32>();
                let u2: f32 = rng.random();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                let m = if j < 1024 { shift } else { 0.0 };
                *v = (z + m).max(0.0);
            }
        }
        let paths: Vec<String> = (start..end)
            .map(|i| format!("synthetic/{i:06}.jpg"))
            .collect();
        let hashes: Vec<String> = (start..end).map(|i| format!("{i:064x}")).collect();
        let batch: Vec<FeatureRow> = (0..end - start)
            .map(|r| FeatureRow {
                path: &paths[r],
                split: if start + r < train {
                    vggcache::dataset::Split::Train
                } else {
                    vggcache::dataset::Split::Val
                },
                label: Some(labels[r]),
                class: None,
                content_hash: &hashes[r],
                features: &feats[r * D..(r + 1) * D],
            })
            .collect();
        w.append_shard(&batch).expect("append a shard");
    }
    let stats = w.finish().expect("finish the cache");
    println!(
        "wrote {} rows ({train} train) x {D} to {} ({:.0} MB)",
        stats.rows,
        dir.display(),
        stats.bytes as f64 / 1e6
    );
}

criterion_group!(benches, bench_step, bench_epoch);

fn main() {
    if let Some(dir) = std::env::var_os("HEAD_BENCH_SPARSE") {
        sparse_bench(std::path::Path::new(&dir));
        return;
    }
    if let Some(dir) = std::env::var_os("HEAD_BENCH_WRITE_CACHE") {
        write_synthetic_cache(std::path::Path::new(&dir));
        return;
    }
    if std::env::var_os("HEAD_BENCH_KERNELS").is_some() {
        kernels();
        return;
    }
    if std::env::var_os("HEAD_BENCH_PROFILE").is_some() {
        profile();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `HEAD_BENCH_SPARSE=CACHE`: layer 1 dense vs sparse on the train split of a real cache, with
/// train-head's defaults (layers, batch 64, dropout 0.5, Adam lr 1e-4, standardized unless
/// `HEAD_BENCH_STANDARDIZE=0`). Prints: the raw features' density per batch and of the union of
/// non-zero columns per batch; medians of the step phases per path, alternated (forward,
/// gradients only, a flat Adam pass over every parameter, the fused backward + Adam, the whole
/// step), Adam's share of the step; medians of `HEAD_BENCH_EPOCHS` (3) epochs per path,
/// alternated; with `HEAD_BENCH_SEEDS=k` (default 3, 0 skips), k seeds of `HEAD_BENCH_TRAIN_EPOCHS`
/// (5) epochs per path from the same initialisation, and the val split's accuracy of each.
fn sparse_bench(dir: &std::path::Path) {
    use std::time::Instant;
    use vggcache::cache::FeatureCache;
    use vggcache::dataset::Split;
    let cache = FeatureCache::open(dir).expect("open the cache");
    let load = |split| {
        let data = cache.split(split).expect("read a split");
        let y: Vec<usize> = data
            .labels
            .iter()
            .map(|l| l.expect("labelled rows") as usize)
            .collect();
        (data.features, y)
    };
    let (x, y) = load(Split::Train);
    let (xv, yv) = load(Split::Val);
    let (n, d) = x.dim();
    let classes = cache.classes().len();
    let dims = [d, HIDDEN, HIDDEN, classes];
    let all: Vec<usize> = (0..n).collect();
    let scaler = (std::env::var("HEAD_BENCH_STANDARDIZE").as_deref() != Ok("0"))
        .then(|| Standardizer::fit(x.view(), &all));
    let sc = scaler.as_ref();
    let mut rng = StdRng::seed_from_u64(4);
    let mut order = all.clone();
    let shuffle = |order: &mut Vec<usize>, rng: &mut StdRng| {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
    };
    shuffle(&mut order, &mut rng);
    println!(
        "cache {} : {n} train x {d}, {} val, {} rayon threads, standardized {}, load {}",
        dir.display(),
        yv.len(),
        rayon::current_num_threads(),
        scaler.is_some(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // density per batch: of the entries, and of the union of non-zero columns
    let (mut dens, mut union) = (vec![], vec![]);
    for b in order.chunks(BATCH) {
        let mut cols = vec![false; d];
        let mut nnz = 0usize;
        for &i in b {
            for (j, &v) in x.row(i).iter().enumerate() {
                if v != 0.0 {
                    nnz += 1;
                    cols[j] = true;
                }
            }
        }
        dens.push(nnz as f64 / (b.len() * d) as f64);
        union.push(cols.iter().filter(|&&c| c).count() as f64 / d as f64);
    }
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        format!("mean {mean:.4} min {lo:.4} max {hi:.4}")
    };
    println!(
        "  density of the raw features per batch of {BATCH}: {}",
        stats(&dens)
    );
    println!(
        "  union of non-zero columns per batch:        {}",
        stats(&union)
    );

    let yb: Vec<usize> = order[..BATCH].iter().map(|&i| y[i]).collect();
    let policies = [SparsePolicy::Dense, SparsePolicy::Sparse];
    let rounds = env_usize("HEAD_BENCH_ROUNDS", 5);
    let mut mlp = Mlp::new(&dims, 0);
    let mut adam = Adam::new(
        AdamConfig {
            lr: 1e-4,
            ..AdamConfig::default()
        },
        mlp.n_params(),
    );
    let mut grads = vec![0.0f32; mlp.n_params()];
    let mut wss: Vec<Workspace> = policies
        .iter()
        .map(|&p| {
            let mut ws = Workspace::new(&dims, BATCH);
            ws.set_sparse_policy(p);
            ws.load_rows(x.view(), &order[..BATCH], sc);
            ws
        })
        .collect();
    // [path][phase]: forward, gradients, flat Adam, fused backward+Adam, step, load
    let mut t = vec![vec![vec![]; 6]; 2];
    for _ in 0..rounds {
        for (p, ws) in wss.iter_mut().enumerate() {
            let s = Instant::now();
            ws.load_rows(x.view(), &order[..BATCH], sc);
            t[p][5].push(s.elapsed().as_secs_f64());
            let s = Instant::now();
            mlp.forward_train(ws, 0.5, &mut rng);
            t[p][0].push(s.elapsed().as_secs_f64());
            mlp.loss(ws, &yb);
            let s = Instant::now();
            mlp.backward_collect(ws, 0.5, &mut grads);
            t[p][1].push(s.elapsed().as_secs_f64());
            let mut params = mlp.params().to_vec();
            let s = Instant::now();
            adam.step_flat(&mut params, &grads);
            t[p][2].push(s.elapsed().as_secs_f64());
            drop(params);
            let s = Instant::now();
            mlp.backward_adam(ws, 0.5, &mut adam);
            t[p][3].push(s.elapsed().as_secs_f64());
            let s = Instant::now();
            black_box(mlp.train_step(ws, &yb, 0.5, &mut adam, &mut rng));
            t[p][4].push(s.elapsed().as_secs_f64());
        }
    }
    drop(grads);
    let med: Vec<Vec<f64>> = t
        .iter()
        .map(|ph| ph.iter().map(|v| median(v.clone()) * 1e3).collect())
        .collect();
    println!("  step of {BATCH} rows, medians of {rounds} alternated rounds (ms):");
    println!("    path    load  forward  gradients  flat-Adam  backward+Adam   step  Adam share");
    for (p, m) in med.iter().enumerate() {
        println!(
            "    {:<6} {:5.1} {:8.1} {:10.1} {:10.1} {:14.1} {:6.1} {:9.0}%",
            format!("{:?}", policies[p]).to_lowercase(),
            m[5],
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            100.0 * m[2] / (m[0] + m[1] + m[2])
        );
    }
    println!(
        "    (Adam share: a flat Adam pass over all {} parameters / (forward + gradients + that pass))",
        mlp.n_params()
    );

    let epochs = env_usize("HEAD_BENCH_EPOCHS", 3);
    let mut te = vec![vec![]; 2];
    for _ in 0..epochs {
        shuffle(&mut order, &mut rng);
        for (p, ws) in wss.iter_mut().enumerate() {
            let s = Instant::now();
            for b in order.chunks(BATCH) {
                ws.load_rows(x.view(), b, sc);
                let yb: Vec<usize> = b.iter().map(|&i| y[i]).collect();
                black_box(mlp.train_step(ws, &yb, 0.5, &mut adam, &mut rng));
            }
            te[p].push(s.elapsed().as_secs_f64());
        }
    }
    let (ed, es) = (median(te[0].clone()), median(te[1].clone()));
    println!(
        "  epoch of {n} rows, medians of {epochs} alternated: dense {ed:.2} s, sparse {es:.2} s \
         ({:.2}x the dense time)",
        es / ed
    );
    drop(wss);
    drop(adam);

    let seeds = env_usize("HEAD_BENCH_SEEDS", 3);
    let train_epochs = env_usize("HEAD_BENCH_TRAIN_EPOCHS", 5);
    let mut xvs = xv.clone();
    if let Some(sc) = sc {
        sc.apply(xvs.view_mut());
    }
    for seed in 0..seeds as u64 {
        let mut line = format!("  seed {seed}, {train_epochs} epochs: val accuracy");
        for policy in policies {
            let mut mlp = Mlp::new(&dims, seed);
            let cfg = AdamConfig {
                lr: 1e-4,
                ..AdamConfig::default()
            };
            let mut adam = Adam::new(cfg, mlp.n_params());
            let mut ws = Workspace::new(&dims, BATCH);
            ws.set_sparse_policy(policy);
            let mut rng = StdRng::seed_from_u64(seed + 100);
            let mut order = all.clone();
            let s = Instant::now();
            for _ in 0..train_epochs {
                shuffle(&mut order, &mut rng);
                for b in order.chunks(BATCH) {
                    ws.load_rows(x.view(), b, sc);
                    let yb: Vec<usize> = b.iter().map(|&i| y[i]).collect();
                    mlp.train_step(&mut ws, &yb, 0.5, &mut adam, &mut rng);
                }
            }
            let secs = s.elapsed().as_secs_f64();
            let logits = mlp.forward_eval(xvs.view());
            let correct = logits
                .axis_iter(Axis(0))
                .zip(&yv)
                .filter(|(l, &c)| {
                    l.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|m| m.0)
                        == Some(c)
                })
                .count();
            line += &format!(
                "  {}: {:.3} ({secs:.1} s)",
                format!("{policy:?}").to_lowercase(),
                correct as f64 / yv.len() as f64
            );
        }
        println!("{line}");
    }
}
