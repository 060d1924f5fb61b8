//! Decode + resize + normalise throughput (img/s) on the real catsdogs images (`VGGCACHE_TEST_DATA`,
//! benches/common): one thread, and the pipeline on all cores. `scripts/bench/bench_decode.py` runs
//! this beside PIL with the same number of processes, alternating, and prints the ratios
//! (docs/BENCHMARKS.md section 1).

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use vggcache::dataset::{
    decode_rgb8, discover, preprocess_into, spawn_pipeline, DecodeLimits, PipelineConfig,
    PipelineMsg, WorkItem,
};
use vggcache::spec::PreprocessSpec;

fn main() {
    let Some(root) = common::test_data("decode bench", "catsdogs") else {
        return;
    };
    let ds = discover(&root, 0.0).expect("catsdogs is an ImageFolder");
    let paths: Vec<_> = ds.entries.iter().map(|e| e.abs_path.clone()).collect();
    let spec = PreprocessSpec::caffe_bgr();
    let limits = DecodeLimits::default();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!("decode bench: {} images, {cores} cores", paths.len());

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .configure_from_args();

    // One thread: every 5th image (200), decode + resize + normalise into a reused tensor.
    let subset: Vec<_> = paths.iter().step_by(5).cloned().collect();
    let decoded: Vec<_> = subset
        .iter()
        .map(|p| decode_rgb8(p, &limits).expect("real image decodes"))
        .collect();
    let mut out = vec![0f32; spec.tensor_len()];
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(subset.len() as u64));
    g.bench_function("decode+resize+normalise, 1 thread", |b| {
        b.iter(|| {
            for p in &subset {
                let img = decode_rgb8(p, &limits).expect("real image decodes");
                preprocess_into(&img, &spec, &mut out);
                black_box(&out);
            }
        })
    });
    g.bench_function("decode only, 1 thread", |b| {
        b.iter(|| {
            for p in &subset {
                black_box(decode_rgb8(p, &limits).expect("real image decodes"));
            }
        })
    });
    g.bench_function("resize+normalise only, 1 thread", |b| {
        b.iter(|| {
            for img in &decoded {
                preprocess_into(img, &spec, &mut out);
                black_box(&out);
            }
        })
    });
    // The pipeline over all images, batches of 16, one worker per core.
    g.throughput(Throughput::Elements(paths.len() as u64));
    g.bench_function(format!("pipeline, {cores} workers, all images"), |b| {
        b.iter(|| {
            let items = paths
                .iter()
                .enumerate()
                .map(|(id, p)| WorkItem {
                    id,
                    path: p.clone(),
                })
                .collect();
            let cfg = PipelineConfig {
                batch_size: 16,
                workers: cores,
                queue_batches: 2,
                limits,
                recycle: None,
            };
            let mut n = 0;
            for msg in spawn_pipeline(items, spec.clone(), cfg) {
                if let PipelineMsg::Batch { ids, tensor } = msg {
                    n += ids.len();
                    black_box(&tensor);
                }
            }
            assert_eq!(n, paths.len());
        })
    });
    g.finish();
    c.final_summary();
}
