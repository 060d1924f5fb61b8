//! Parallel decode + preprocess of many files into `(n, 3, H, W)` batches on a bounded queue.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, unbounded, Receiver};

use super::augment::{self, ViewRecipe};
use super::decode::{check_spec, decode_rgb8, preprocess_into, DecodeLimits};
use crate::spec::PreprocessSpec;

/// How [`spawn_pipeline`] runs.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Images per [`PipelineMsg::Batch`] (the last one may be smaller). Must be > 0.
    pub batch_size: usize,
    /// Decoding threads. Must be > 0.
    pub workers: usize,
    /// Finished batches that may wait for the consumer; with the images in flight this bounds
    /// memory to about `(queue_batches + 2) * batch_size + workers` image tensors.
    pub queue_batches: usize,
    /// Limits on the size of an image file and its decoded pixels.
    pub limits: DecodeLimits,
    /// Batch tensors the consumer hands back once it is done with them: the batcher refills
    /// them instead of allocating (a batch-256 tensor is 154 MB, whose fresh pages would be
    /// faulted in again for every batch). `None`: every batch gets a new tensor.
    pub recycle: Option<Receiver<Vec<f32>>>,
}

impl Default for PipelineConfig {
    /// Batch 16, one worker per available core, 2 queued batches, default limits.
    fn default() -> Self {
        Self {
            batch_size: 16,
            workers: thread::available_parallelism().map_or(2, |n| n.get()),
            queue_batches: 2,
            limits: DecodeLimits::default(),
            recycle: None,
        }
    }
}

/// One file to decode; `id` is the caller's (e.g. an index into its entry list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// The caller's id of the item.
    pub id: usize,
    /// The image file.
    pub path: PathBuf,
}

/// What the pipeline delivers, in the order of the input items.
#[derive(Debug)]
pub enum PipelineMsg {
    /// `tensor: (ids.len(), 3, H, W)`; row `i` is the image of `ids[i]`.
    Batch {
        /// Item ids, one per row of `tensor`.
        ids: Vec<usize>,
        /// Row-major `(ids.len(), 3, H, W)` float32.
        tensor: Vec<f32>,
    },
    /// The item could not be decoded; `reason` is one line for the skip list.
    Skip {
        /// The caller's id of the item.
        id: usize,
        /// Why, in one line.
        reason: String,
    },
}

/// Result of one item from a worker: its position in `items` and its tensor or skip reason.
struct Done {
    seq: usize,
    result: Result<Vec<f32>, String>,
}

/// Decode and preprocess `items` on `cfg.workers` threads and deliver them as batches of
/// `cfg.batch_size` (the last partial) and skips, in input order, so batch composition is
/// deterministic for a given item list. Every id comes back exactly once, in a `Batch` or a `Skip`;
/// the channel closes after the last message. Work runs ahead of the consumer by at most
/// `cfg.queue_batches` batches; dropping the receiver stops the threads.
///
/// Panics if `batch_size` or `workers` is 0 or the spec fails [`check_spec`] (check it first).
pub fn spawn_pipeline(
    items: Vec<WorkItem>,
    spec: PreprocessSpec,
    cfg: PipelineConfig,
) -> Receiver<PipelineMsg> {
    spawn_pipeline_views(items, Vec::new(), spec, cfg)
}

/// [`spawn_pipeline`] where item `i` is the view `views[i]` of its image (see
/// [`augment::apply`], applied to the decoded image before the resize); an item past the end
/// of `views`, or with `None`, is the plain image.
pub fn spawn_pipeline_views(
    items: Vec<WorkItem>,
    views: Vec<Option<ViewRecipe>>,
    spec: PreprocessSpec,
    cfg: PipelineConfig,
) -> Receiver<PipelineMsg> {
    assert!(cfg.batch_size > 0, "pipeline batch_size must be > 0");
    assert!(cfg.workers > 0, "pipeline workers must be > 0");
    if let Err(e) = check_spec(&spec) {
        panic!("spawn_pipeline called with an unchecked spec: {e}");
    }
    let (out_tx, out_rx) = bounded::<PipelineMsg>(cfg.queue_batches.max(1));
    if items.is_empty() {
        return out_rx;
    }
    let n = items.len();
    let len = spec.tensor_len();
    // Items a worker may start beyond the next one to deliver: bounds the reorder buffer.
    let window = cfg.batch_size + cfg.workers * 2;
    let (credit_tx, credit_rx) = bounded::<()>(window);
    for _ in 0..window {
        credit_tx
            .send(())
            .expect("credit channel has room for the window");
    }
    let (done_tx, done_rx) = bounded::<Done>(window);
    // Per-image buffers handed back by the assembler for reuse (at most `window` exist).
    let (pool_tx, pool_rx) = unbounded::<Vec<f32>>();
    let items = Arc::new(items);
    let views = Arc::new(views);
    let next = Arc::new(AtomicUsize::new(0));
    let spec = Arc::new(spec);

    for w in 0..cfg.workers {
        let (items, views, next, spec) = (items.clone(), views.clone(), next.clone(), spec.clone());
        let (credit_rx, done_tx, pool_rx) = (credit_rx.clone(), done_tx.clone(), pool_rx.clone());
        let limits = cfg.limits;
        thread::Builder::new()
            .name(format!("vggcache-decode-{w}"))
            .spawn(move || {
                // Stops when credits run out for good (assembler gone) or items are exhausted.
                while credit_rx.recv().is_ok() {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= items.len() {
                        break;
                    }
                    let path = &items[seq].path;
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        let mut img = decode_rgb8(path, &limits)?;
                        if let Some(Some(recipe)) = views.get(seq) {
                            img = augment::apply(&img, recipe);
                        }
                        let mut buf = pool_rx.try_recv().unwrap_or_default();
                        buf.resize(len, 0.0);
                        preprocess_into(&img, &spec, &mut buf);
                        Ok(buf)
                    }))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(format!("decoder panicked: {what}"))
                    });
                    if done_tx.send(Done { seq, result }).is_err() {
                        break;
                    }
                }
            })
            .expect("cannot spawn a decode thread");
    }
    drop((done_tx, credit_rx, pool_rx));

    let batch_size = cfg.batch_size;
    let recycle = cfg.recycle;
    // An empty tensor with room for one batch: a handed-back one when there is one.
    let fresh_tensor = move || match recycle.as_ref().and_then(|r| r.try_recv().ok()) {
        Some(mut t) => {
            t.clear();
            t.reserve(batch_size * len);
            t
        }
        None => Vec::with_capacity(batch_size * len),
    };
    thread::Builder::new()
        .name("vggcache-batcher".into())
        .spawn(move || {
            let mut pending: BTreeMap<usize, Result<Vec<f32>, String>> = BTreeMap::new();
            let mut next_out = 0;
            let mut ids = Vec::with_capacity(batch_size);
            let mut tensor = fresh_tensor();
            while next_out < n {
                let Ok(done) = done_rx.recv() else {
                    return; // workers gone: only when the consumer hung up
                };
                pending.insert(done.seq, done.result);
                while let Some(result) = pending.remove(&next_out) {
                    let id = items[next_out].id;
                    next_out += 1;
                    let _ = credit_tx.try_send(());
                    match result {
                        Ok(buf) => {
                            ids.push(id);
                            tensor.extend_from_slice(&buf);
                            let _ = pool_tx.send(buf);
                        }
                        Err(reason) => {
                            if out_tx.send(PipelineMsg::Skip { id, reason }).is_err() {
                                return;
                            }
                        }
                    }
                    if ids.len() == batch_size || (next_out == n && !ids.is_empty()) {
                        let msg = PipelineMsg::Batch {
                            ids: std::mem::replace(&mut ids, Vec::with_capacity(batch_size)),
                            tensor: std::mem::replace(&mut tensor, fresh_tensor()),
                        };
                        if out_tx.send(msg).is_err() {
                            return;
                        }
                    }
                }
            }
            // All delivered: dropping credit_tx lets idle workers exit.
        })
        .expect("cannot spawn the batching thread");
    out_rx
}
