//! Training from a stream of row groups: a reader thread decodes row groups in a seeded permuted
//! order into a bounded shuffle buffer and sends mini-batches through a bounded channel
//! ([`StreamFeed`]); [`RowGroups`] is all it knows of the storage (no Parquet here).
//!
//! The shuffle. Each epoch the trainer draws a permutation `order` of the rows (as in memory);
//! row k's rank is its position in `order`. The reader visits the row groups in an order drawn
//! from `mix(seed, 3, epoch)` and pushes each selected row into the buffer; when the buffer is
//! full, it first emits a uniformly random buffered row (Ray Data's and tf.data's local shuffle).
//! When the input ends, the rows still buffered are emitted by rank. So a buffer holding every
//! row is never full, and the stream yields exactly `order`: the same batches, hence the same
//! weights, as training in memory with the same seed. Smaller buffers mix
//! `shuffle_buffer_rows / rows_per_group` row groups at a time.
//!
//! Memory (printed by [`MemoryPlan`]): the buffer (`shuffle_buffer_rows x D x 4` bytes), the
//! batches in flight (`prefetch_batches + 2` of `batch x D x 4`), one decoded row group, and the
//! model's parameters, gradients and two Adam moments (`4 x params x 4` bytes).

use std::ops::Range;

use crossbeam_channel::bounded;
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::feed::{Feed, Step};
use super::mlp::mix;
use super::scaler::{Standardizer, StandardizerSums};
use super::train::shuffle;
use super::workspace::Workspace;
use super::HeadError;

/// Rows stored as numbered groups (a Parquet file's row groups, or anything else) that can be
/// decoded one at a time, from any thread. Groups cover rows `0..` contiguously, in order.
pub trait RowGroups: Sync {
    /// Features per row, D.
    fn dim(&self) -> usize;
    /// Number of groups.
    fn groups(&self) -> usize;
    /// Global rows of group `g`: `first..first + rows`.
    fn group_rows(&self, g: usize) -> Range<usize>;
    /// Why a group could not be read (it names the file and what is wrong).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Decodes group `g` into `dest: (rows, D)` row-major (`dest.len() == rows * D`), finite
    /// values only.
    fn read_group(&self, g: usize, dest: &mut [f32]) -> Result<(), Self::Error>;
}

/// Settings of a stream. Defaults: a 4,096-row buffer (411 MB of VGG16 features) and 4 batches
/// decoded ahead of the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Rows the shuffle buffer holds (default 4096).
    pub shuffle_buffer_rows: usize,
    /// Mini-batches the reader may have ready before the trainer takes them (default 4).
    pub prefetch_batches: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            shuffle_buffer_rows: 4096,
            prefetch_batches: 4,
        }
    }
}

impl StreamConfig {
    /// Validates the settings: each at least 1, and each small enough that its buffer, at
    /// one 4-byte feature per row and one row per batch (the least any cache needs), fits in
    /// the memory this machine has available. [`MemoryPlan::check`] checks the real sizes once
    /// the cache is known.
    pub fn check(&self) -> Result<(), HeadError> {
        for (field, v, rows) in [
            (
                "shuffle_buffer_rows",
                self.shuffle_buffer_rows,
                self.shuffle_buffer_rows as u64,
            ),
            (
                "prefetch_batches",
                self.prefetch_batches,
                (self.prefetch_batches as u64).saturating_add(2),
            ),
        ] {
            if v == 0 {
                return Err(HeadError::Config {
                    field,
                    message: "must be >= 1, got 0".into(),
                });
            }
            let flag = format!("--{}", field.replace('_', "-"));
            crate::sysmem::fits(
                rows.saturating_mul(4),
                &format!("{flag} {v}: its rows alone, at one feature each,"),
            )
            .map_err(|m| HeadError::Config {
                field,
                message: format!("{m}; lower {flag}"),
            })?;
        }
        Ok(())
    }
}

/// What a streamed training run holds in memory, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The shuffle buffer: `rows x D x 4`.
    pub buffer: u64,
    /// Batches in flight: `(prefetch + 2) x batch x D x 4` (queued, being filled, being trained on).
    pub prefetch: u64,
    /// One decoded row group `group_rows x D x 4`, plus the same again for the decoder's pages.
    pub decode: u64,
    /// Parameters, gradients, Adam's m and v: `4 x params x 4`.
    pub model: u64,
    /// The step's activations: `batch x (D + 2 x sum of layer widths) x 4`.
    pub activations: u64,
}

impl MemoryPlan {
    /// The plan for `cfg`, feature width `dim`, mini-batches of `batch`, the widest row group
    /// `group_rows`, and a model of layer sizes `dims` (`[D, hidden.., C]`).
    pub fn new(
        cfg: &StreamConfig,
        dim: usize,
        batch: usize,
        group_rows: usize,
        dims: &[usize],
    ) -> Self {
        // Saturating: flags can ask for more than a u64 counts; `check` refuses those.
        let row = (dim as u64).saturating_mul(4);
        MemoryPlan {
            buffer: (cfg.shuffle_buffer_rows as u64).saturating_mul(row),
            prefetch: (cfg.prefetch_batches as u64)
                .saturating_add(2)
                .saturating_mul(batch as u64)
                .saturating_mul(row),
            decode: (group_rows as u64).saturating_mul(row).saturating_mul(2),
            model: super::bounds::model_bytes(dims),
            activations: super::bounds::step_bytes(dims, batch),
        }
    }

    /// Sum of the parts.
    pub fn total(&self) -> u64 {
        [self.prefetch, self.decode, self.model, self.activations]
            .into_iter()
            .fold(self.buffer, u64::saturating_add)
    }

    /// Refuses a plan beyond the memory this machine has available, naming the setting whose
    /// part is the largest.
    pub fn check(&self) -> Result<(), HeadError> {
        crate::sysmem::fits(self.total(), &format!("the stream ({self})")).map_err(|m| {
            let parts = [
                (self.buffer, "shuffle_buffer_rows", "--shuffle-buffer-rows"),
                (self.prefetch, "prefetch_batches", "--prefetch-batches"),
                (self.model, "hidden", "--hidden"),
                (self.activations, "batch_size", "--batch-size"),
                (self.decode, "shuffle_buffer_rows", "the cache's row groups"),
            ];
            let (_, field, flag) = parts.into_iter().max_by_key(|p| p.0).unwrap_or(parts[0]);
            HeadError::Config {
                field,
                message: format!("{m}; the largest part comes from {flag}: lower it"),
            }
        })
    }
}

impl std::fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        write!(
            f,
            "shuffle buffer {:.0} MB + prefetch {:.0} MB + row-group decode {:.0} MB + model \
             (params, grads, Adam m, v) {:.0} MB + activations {:.0} MB = {:.0} MB",
            mb(self.buffer),
            mb(self.prefetch),
            mb(self.decode),
            mb(self.model),
            mb(self.activations),
            mb(self.total())
        )
    }
}

/// The rows `rows` (global indices into a [`RowGroups`], ascending) with their labels, read as a
/// stream. Feed row k is global row `rows[k]`.
pub struct StreamFeed<'a, R: RowGroups> {
    src: &'a R,
    /// `(len,)` ascending global rows.
    rows: Vec<usize>,
    labels: Vec<usize>,
    /// Groups holding selected rows: `(group, range of feed rows it holds)`, in group order.
    parts: Vec<(usize, Range<usize>)>,
    cfg: StreamConfig,
    seed: u64,
    epoch: u64,
}

impl<'a, R: RowGroups> StreamFeed<'a, R> {
    /// A feed of global rows `rows` (strictly ascending, each inside a group) with `labels`.
    pub fn new(
        src: &'a R,
        rows: Vec<usize>,
        labels: Vec<usize>,
        cfg: StreamConfig,
        seed: u64,
    ) -> StreamFeed<'a, R> {
        assert_eq!(rows.len(), labels.len(), "StreamFeed: rows vs labels");
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "StreamFeed: rows ascending"
        );
        let mut parts = Vec::new();
        let mut k = 0;
        for g in 0..src.groups() {
            let span = src.group_rows(g);
            let start = k;
            while k < rows.len() && rows[k] < span.end {
                assert!(
                    rows[k] >= span.start,
                    "StreamFeed: row {} in no group",
                    rows[k]
                );
                k += 1;
            }
            if k > start {
                parts.push((g, start..k));
            }
        }
        assert_eq!(k, rows.len(), "StreamFeed: rows beyond the last group");
        StreamFeed {
            src,
            rows,
            labels,
            parts,
            cfg,
            seed,
            epoch: 0,
        }
    }

    /// Rows of the largest group this feed reads.
    pub fn max_group_rows(&self) -> usize {
        self.parts
            .iter()
            .map(|(g, _)| self.src.group_rows(*g).len())
            .max()
            .unwrap_or(0)
    }

    /// Decodes part `p` into `block` and calls `row(k, x)` for each feed row k it holds.
    fn read_part(
        &self,
        p: usize,
        block: &mut Vec<f32>,
        row: &mut dyn FnMut(usize, &[f32]) -> bool,
    ) -> Result<bool, HeadError> {
        let d = self.src.dim();
        let (g, ks) = (self.parts[p].0, self.parts[p].1.clone());
        let span = self.src.group_rows(g);
        block.resize(span.len() * d, 0.0);
        self.src
            .read_group(g, block)
            .map_err(|e| HeadError::Stream(Box::new(e)))?;
        for k in ks {
            let at = self.rows[k] - span.start;
            if !row(k, &block[at * d..(at + 1) * d]) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every row in stored order through `row(k, x)` (stops early when it returns false).
    fn scan(&self, row: &mut dyn FnMut(usize, &[f32]) -> bool) -> Result<(), HeadError> {
        let mut block = Vec::new();
        for p in 0..self.parts.len() {
            if !self.read_part(p, &mut block, row)? {
                break;
            }
        }
        Ok(())
    }

    /// The reader of one epoch: the shuffle described in the module doc, emitting batches of
    /// `batch` rows (features `(rows, D)` row-major, labels) to `emit` until it returns false.
    fn shuffle_epoch(
        &self,
        rank: &[u32],
        batch: usize,
        epoch: u64,
        emit: &mut dyn FnMut(Vec<f32>, Vec<usize>) -> bool,
    ) -> Result<(), HeadError> {
        let d = self.src.dim();
        let cap = self.cfg.shuffle_buffer_rows.min(self.rows.len()).max(1);
        let mut rng = StdRng::seed_from_u64(mix(self.seed, 3, epoch));
        let mut visit: Vec<usize> = (0..self.parts.len()).collect();
        shuffle(&mut visit, &mut rng);
        // The buffer: `keys[i]` is the feed row in slot i, `slab[i*d..(i+1)*d]` its features.
        let mut slab: Vec<f32> = Vec::with_capacity(cap * d);
        let mut keys: Vec<usize> = Vec::with_capacity(cap);
        // A batch never holds more rows than the feed has (`batch` may be far larger).
        let batch_cap = batch.min(self.rows.len()).max(1);
        let (mut xb, mut yb) = (
            Vec::with_capacity(batch_cap * d),
            Vec::with_capacity(batch_cap),
        );
        let mut open = true;
        let mut push_out = |x: &[f32], k: usize, open: &mut bool| {
            xb.extend_from_slice(x);
            yb.push(self.labels[k]);
            if yb.len() == batch {
                let x = std::mem::replace(&mut xb, Vec::with_capacity(batch_cap * d));
                let y = std::mem::replace(&mut yb, Vec::with_capacity(batch_cap));
                *open = emit(x, y);
            }
        };
        let mut block = Vec::new();
        for &p in &visit {
            let done = self.read_part(p, &mut block, &mut |k, x| {
                if keys.len() == cap {
                    let j = (rng.next_u64() % cap as u64) as usize;
                    push_out(&slab[j * d..(j + 1) * d], keys[j], &mut open);
                    let last = keys.len() - 1;
                    slab.copy_within(last * d.., j * d);
                    slab.truncate(last * d);
                    keys.swap_remove(j);
                }
                slab.extend_from_slice(x);
                keys.push(k);
                open
            })?;
            if !done || !open {
                return Ok(());
            }
        }
        drop(block);
        let mut slots: Vec<usize> = (0..keys.len()).collect();
        slots.sort_unstable_by_key(|&i| rank[keys[i]]);
        for i in slots {
            push_out(&slab[i * d..(i + 1) * d], keys[i], &mut open);
            if !open {
                return Ok(());
            }
        }
        if !yb.is_empty() {
            emit(xb, yb);
        }
        Ok(())
    }
}

impl<R: RowGroups> Feed for StreamFeed<'_, R> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn dim(&self) -> usize {
        self.src.dim()
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }

    fn standardizer(&mut self) -> Result<Standardizer, HeadError> {
        let mut sums = StandardizerSums::new(self.dim());
        self.scan(&mut |_, x| {
            sums.add_row(x);
            true
        })?;
        Ok(sums.finish())
    }

    fn epoch(
        &mut self,
        order: &[usize],
        batch: usize,
        scaler: Option<&Standardizer>,
        ws: &mut Workspace,
        step: &mut Step<'_>,
    ) -> Result<(), HeadError> {
        assert_eq!(
            order.len(),
            self.rows.len(),
            "order is a permutation of the feed"
        );
        let d = self.dim();
        let mut rank = vec![0u32; order.len()];
        for (p, &k) in order.iter().enumerate() {
            rank[k] = u32::try_from(p).expect("a stream holds fewer than 2^32 rows");
        }
        self.epoch += 1;
        let epoch = self.epoch;
        let (tx, rx) =
            bounded::<Result<(Vec<f32>, Vec<usize>), HeadError>>(self.cfg.prefetch_batches);
        let this = &*self;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let sent = this
                    .shuffle_epoch(&rank, batch, epoch, &mut |x, y| tx.send(Ok((x, y))).is_ok());
                if let Err(e) = sent {
                    let _ = tx.send(Err(e));
                }
            });
            let result: Result<(), HeadError> = (|| {
                for msg in rx.iter() {
                    let (x, y) = msg?;
                    let xv = ArrayView2::from_shape((y.len(), d), &x).expect("batch is rows x D");
                    ws.load_matrix(xv, scaler);
                    step(ws, &y)?;
                }
                Ok(())
            })();
            drop(rx);
            result
        })
    }

    fn chunks(
        &mut self,
        chunk: usize,
        scaler: Option<&Standardizer>,
        visit: &mut dyn FnMut(ArrayView2<f32>, &[usize]),
    ) -> Result<(), HeadError> {
        let d = self.dim();
        let cap = chunk.min(self.len()).max(1);
        let mut xb = Array2::<f32>::zeros((cap, d));
        let mut yb = Vec::with_capacity(cap);
        let labels = &self.labels;
        let mut flush = |xb: &mut Array2<f32>, yb: &mut Vec<usize>| {
            let rows = yb.len();
            let mut part = xb.slice_mut(ndarray::s![..rows, ..]);
            if let Some(sc) = scaler {
                sc.apply(part.view_mut());
            }
            visit(part.view(), yb);
            yb.clear();
        };
        self.scan(&mut |k, x| {
            xb.row_mut(yb.len())
                .as_slice_mut()
                .expect("a fresh Array2 row is contiguous")
                .copy_from_slice(x);
            yb.push(labels[k]);
            if yb.len() == cap {
                flush(&mut xb, &mut yb);
            }
            true
        })?;
        if !yb.is_empty() {
            flush(&mut xb, &mut yb);
        }
        Ok(())
    }
}
