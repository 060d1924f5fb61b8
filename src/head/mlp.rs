//! The MLP itself: parameters in one flat buffer, forward, backward, and the fused gradient+Adam step.
//!
//! Layers: `Linear(dims[0]→dims[1]), ReLU, Dropout, …, Linear(dims[L-1]→dims[L])`. Weights are
//! stored `(d_out, d_in)` row-major (PyTorch's `nn.Linear` order), then the bias `(d_out,)`, layer
//! after layer, in one `Vec<f32>` whose layout the Adam moments share. Per kernel that order was
//! measured 1.3x faster than `(d_in, d_out)` for the first layer's forward product and 1.5x for its
//! weight gradient; a whole epoch on a quiet machine did not change (docs/BENCHMARKS.md, section 4).
//! Checkpoints and the ONNX export copy it in memory order. [`Mlp::layers`] hands out `(d_in, d_out)` views
//! (transposed, no copy). The first layer's input gradient is never computed.
//!
//! The weight gradient `dWᵀ = dzᵀ·a` is produced in tiles of [`TILE_ROWS`]` × `[`TILE_COLS`]
//! (512 KiB, inside L2) by a serial product inside a rayon task, and Adam updates that tile of
//! `W, m, v` immediately: the full gradient of the 100 M-weight first layer is never written to
//! memory, which saves two passes over 400 MB per step and one parameter-sized buffer.
//!
//! When the workspace chose the sparse path for the loaded batch ([`Workspace::sparse_path`]),
//! layer 1's forward product and weight gradient come from the batch's non-zeros instead
//! ([`super::sparse`], the standardization folded in); every other layer is unchanged.

use std::cell::RefCell;

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;

use super::adam::{Adam, AdamStep};
use super::dropout::dropout_in_place;
use super::linalg::{matmul, Threads};
use super::loss::softmax_cross_entropy;
use super::sparse::{self, GradSink, SparseRows};
use super::workspace::Workspace;
use super::HeadError;

/// Rows of the stored `(d_out, d_in)` weight gradient per rayon task (and per tile).
pub const TILE_ROWS: usize = 128;
/// Columns of the stored weight gradient per tile.
pub const TILE_COLS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    d_in: usize,
    d_out: usize,
    /// offset of `W: (d_out, d_in)` in the flat buffer
    w: usize,
    /// offset of `b: (d_out,)`
    b: usize,
}

impl Slot {
    fn w_range(&self) -> std::ops::Range<usize> {
        self.w..self.w + self.d_in * self.d_out
    }
    fn b_range(&self) -> std::ops::Range<usize> {
        self.b..self.b + self.d_out
    }
}

fn layout(dims: &[usize]) -> (Vec<Slot>, usize) {
    let mut off = 0;
    let mut slots = Vec::with_capacity(dims.len().saturating_sub(1));
    for pair in dims.windows(2) {
        let (d_in, d_out) = (pair[0], pair[1]);
        let w = off;
        let b = w + d_in * d_out;
        off = b + d_out;
        slots.push(Slot { d_in, d_out, w, b });
    }
    (slots, off)
}

/// A multi-layer perceptron with ReLU + dropout between linear layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    dims: Vec<usize>,
    slots: Vec<Slot>,
    params: Vec<f32>,
}

impl Mlp {
    /// PyTorch's default `nn.Linear` initialisation (`kaiming_uniform_(a=√5)`, i.e. weights and
    /// biases `U(-1/√d_in, 1/√d_in)`), drawn from `seed`. `dims = [d, hidden…, classes]`.
    /// Drawn in parallel in 1 Mi-element chunks, each with its own RNG seeded from
    /// `(seed, chunk)`, so the values do not depend on the thread count.
    pub fn new(dims: &[usize], seed: u64) -> Mlp {
        assert!(
            dims.len() >= 2 && dims.iter().all(|&d| d > 0),
            "Mlp dims {dims:?}"
        );
        let (slots, n) = layout(dims);
        let mut params = vec![0.0f32; n];
        // bound of every element, by position: one value per layer's whole w+b range
        const CHUNK: usize = 1 << 20;
        for (l, slot) in slots.iter().enumerate() {
            let bound = 1.0 / (slot.d_in as f32).sqrt();
            let range = slot.w..slot.b + slot.d_out;
            params[range]
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, chunk)| {
                    let mut rng = StdRng::seed_from_u64(mix(seed, l as u64, c as u64));
                    for v in chunk.iter_mut() {
                        let u = (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0);
                        *v = (2.0 * u - 1.0) * bound;
                    }
                });
        }
        Mlp {
            dims: dims.to_vec(),
            slots,
            params,
        }
    }

    /// Build from explicit layers `(W: (d_in, d_out), b: (d_out,))`; each layer's `d_in` must
    /// equal the previous `d_out`.
    pub fn from_layers(layers: &[(Array2<f32>, Array1<f32>)]) -> Result<Mlp, HeadError> {
        let views: Vec<_> = layers.iter().map(|(w, b)| (w.t(), b.view())).collect();
        Mlp::from_layers_out_in(&views)
    }

    /// Build from layers in PyTorch's order `(W: (d_out, d_in), b: (d_out,))` (any strides).
    pub fn from_layers_out_in(
        layers: &[(ArrayView2<f32>, ArrayView1<f32>)],
    ) -> Result<Mlp, HeadError> {
        if layers.is_empty() {
            return Err(HeadError::InvalidModel("no layers".into()));
        }
        let mut dims = vec![layers[0].0.ncols()];
        for (i, (w, b)) in layers.iter().enumerate() {
            let (d_out, d_in) = w.dim();
            if d_in != *dims.last().unwrap_or(&0) || b.len() != d_out || d_in == 0 || d_out == 0 {
                return Err(HeadError::InvalidModel(format!(
                    "layer {i}: weight (d_in, d_out) = {:?} and bias ({},) do not follow the \
                     previous layer's output {}",
                    (d_in, d_out),
                    b.len(),
                    dims.last().copied().unwrap_or(0)
                )));
            }
            dims.push(d_out);
        }
        let (slots, n) = layout(&dims);
        let mut params = Vec::with_capacity(n);
        for (w, b) in layers {
            match w.as_slice() {
                Some(flat) => params.extend_from_slice(flat),
                None => params.extend(w.iter()),
            }
            params.extend(b.iter());
        }
        Ok(Mlp {
            dims,
            slots,
            params,
        })
    }

    /// `[d, hidden…, classes]`.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Total number of parameters.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }

    /// The flat parameter buffer (layer by layer: `W` row-major `(d_out, d_in)`, then `b`).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Mutable flat parameter buffer (same layout as [`Mlp::params`]).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Per layer, `(W: (d_in, d_out), b: (d_out,))` (`W` is a transposed view of the storage).
    pub fn layers(&self) -> Vec<(ArrayView2<'_, f32>, ArrayView1<'_, f32>)> {
        (0..self.slots.len())
            .map(|l| (self.w(l).reversed_axes(), self.b(l)))
            .collect()
    }

    /// Per layer, `(W: (d_out, d_in), b: (d_out,))` as stored (contiguous, PyTorch's order).
    pub(crate) fn layers_out_in(&self) -> Vec<(ArrayView2<'_, f32>, ArrayView1<'_, f32>)> {
        (0..self.slots.len())
            .map(|l| (self.w(l), self.b(l)))
            .collect()
    }

    /// `W_l: (d_out, d_in)`, row-major.
    fn w(&self, l: usize) -> ArrayView2<'_, f32> {
        let s = self.slots[l];
        ArrayView2::from_shape((s.d_out, s.d_in), &self.params[s.w_range()])
            .expect("slot shape matches the layout")
    }

    fn b(&self, l: usize) -> ArrayView1<'_, f32> {
        ArrayView1::from(&self.params[self.slots[l].b_range()])
    }

    /// `out = input · W_lᵀ + b_l`. Shapes: `input: (rows, d_in)`, `out: (rows, d_out)`.
    fn linear(&self, l: usize, input: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        let b = self.b(l);
        for mut row in out.axis_iter_mut(Axis(0)) {
            row.assign(&b);
        }
        matmul(input, self.w(l).t(), out, true, Threads::Pool);
    }

    /// Layer 1 from the batch's non-zeros ([`sparse::forward`]): `out: (rows, d_out)`.
    fn linear_sparse(&self, sp: &SparseRows, out: ArrayViewMut2<f32>, scratch: &mut Vec<f32>) {
        let slot = self.slots[0];
        sparse::forward(
            sp,
            &self.params[slot.w_range()],
            &self.params[slot.b_range()],
            out,
            scratch,
        );
    }

    /// Logits in eval mode (no dropout). `x: (n, d)` → `(n, classes)`, in chunks of 256 rows.
    pub fn forward_eval(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let n = x.nrows();
        let l_count = self.slots.len();
        let mut logits = Array2::<f32>::zeros((n, *self.dims.last().expect("dims")));
        for start in (0..n).step_by(super::EVAL_ROWS) {
            let end = (start + super::EVAL_ROWS).min(n);
            let mut cur = x.slice(s![start..end, ..]).to_owned();
            for l in 0..l_count {
                if l + 1 == l_count {
                    self.linear(l, cur.view(), logits.slice_mut(s![start..end, ..]));
                } else {
                    let mut next = Array2::<f32>::zeros((end - start, self.slots[l].d_out));
                    self.linear(l, cur.view(), next.view_mut());
                    next.mapv_inplace(|v| v.max(0.0));
                    cur = next;
                }
            }
        }
        logits
    }

    /// Training-mode forward pass of the `ws.rows()` rows loaded in `ws`: activations and logits
    /// are left in `ws`. Dropout masks come from `rng` (row-major, layer by layer).
    pub fn forward_train(&self, ws: &mut Workspace, dropout: f32, rng: &mut dyn RngCore) {
        assert_eq!(ws.dims, self.dims, "workspace built for other layer sizes");
        let rows = ws.rows;
        let l_count = self.slots.len();
        for l in 0..l_count {
            let (before, after) = ws.acts.split_at_mut(l);
            let input = if l == 0 {
                ws.x.slice(s![..rows, ..])
            } else {
                before[l - 1].slice(s![..rows, ..])
            };
            let sparse = l == 0 && ws.use_sparse;
            if l + 1 == l_count {
                let out = ws.logits.slice_mut(s![..rows, ..]);
                if sparse {
                    self.linear_sparse(&ws.sparse, out, &mut ws.scratch);
                } else {
                    self.linear(l, input, out);
                }
            } else {
                let mut out = after[0].slice_mut(s![..rows, ..]);
                if sparse {
                    self.linear_sparse(&ws.sparse, out.view_mut(), &mut ws.scratch);
                } else {
                    self.linear(l, input, out.view_mut());
                }
                out.mapv_inplace(|v| v.max(0.0));
                dropout_in_place(out, dropout, rng);
            }
        }
    }

    /// Mean cross-entropy of the logits in `ws` against `y` (`ws.rows()` labels); leaves
    /// `dlogits` in `ws`. Returns `(loss, correct)`.
    pub fn loss(&self, ws: &mut Workspace, y: &[usize]) -> (f64, usize) {
        let rows = ws.rows;
        let last = ws.dz.len() - 1;
        softmax_cross_entropy(
            ws.logits.slice(s![..rows, ..]),
            y,
            ws.dz[last].slice_mut(s![..rows, ..]),
        )
    }

    /// Backward pass writing every parameter's gradient into `grads` (same layout as
    /// [`Mlp::params`]). Uses the activations and `dlogits` left in `ws` by
    /// [`Mlp::forward_train`] and [`Mlp::loss`] with the same `dropout`.
    pub fn backward_collect(&mut self, ws: &mut Workspace, dropout: f32, grads: &mut [f32]) {
        assert_eq!(grads.len(), self.params.len(), "gradient buffer length");
        self.backward(ws, dropout, Sink::Collect(grads));
    }

    /// Backward pass fused with one Adam step (see the module doc).
    pub fn backward_adam(&mut self, ws: &mut Workspace, dropout: f32, adam: &mut Adam) {
        assert_eq!(
            adam.m.len(),
            self.params.len(),
            "Adam state built for another model"
        );
        let step = adam.begin_step();
        self.backward(
            ws,
            dropout,
            Sink::Adam {
                m: &mut adam.m,
                v: &mut adam.v,
                step,
            },
        );
    }

    /// One training step on the batch loaded in `ws`: forward, loss, backward fused with Adam.
    /// Returns `(mean loss, correct)` of the train-mode logits.
    pub fn train_step(
        &mut self,
        ws: &mut Workspace,
        y: &[usize],
        dropout: f32,
        adam: &mut Adam,
        rng: &mut dyn RngCore,
    ) -> (f64, usize) {
        self.forward_train(ws, dropout, rng);
        let out = self.loss(ws, y);
        self.backward_adam(ws, dropout, adam);
        out
    }

    fn backward(&mut self, ws: &mut Workspace, dropout: f32, mut sink: Sink<'_>) {
        let rows = ws.rows;
        let scale = if dropout > 0.0 {
            1.0 / (1.0 - dropout)
        } else {
            1.0
        };
        for l in (0..self.slots.len()).rev() {
            let slot = self.slots[l];
            let (dz_before, dz_after) = ws.dz.split_at_mut(l);
            let dz = dz_after[0].slice(s![..rows, ..]);
            // input gradient first, with the weights before this step's update
            if l > 0 {
                let mut da = dz_before[l - 1].slice_mut(s![..rows, ..]);
                matmul(dz, self.w(l), da.view_mut(), false, Threads::Pool);
                // through dropout and ReLU: the gradient passes where the kept activation is > 0
                let act = ws.acts[l - 1].slice(s![..rows, ..]);
                ndarray::Zip::from(&mut da).and(&act).for_each(|g, &a| {
                    *g = if a > 0.0 { *g * scale } else { 0.0 };
                });
            }
            let input = if l == 0 {
                ws.x.slice(s![..rows, ..])
            } else {
                ws.acts[l - 1].slice(s![..rows, ..])
            };
            // bias gradient: column sums of dz
            let db = &mut ws.db[..slot.d_out];
            db.fill(0.0);
            for row in dz.axis_iter(Axis(0)) {
                for (acc, &g) in db.iter_mut().zip(row.iter()) {
                    *acc += g;
                }
            }
            let (w_params, b_params) =
                self.params[slot.w..slot.b + slot.d_out].split_at_mut(slot.b - slot.w);
            if l == 0 && ws.use_sparse {
                let out = match &mut sink {
                    Sink::Collect(grads) => {
                        grads[slot.b_range()].copy_from_slice(db);
                        GradSink::Store(&mut grads[slot.w_range()])
                    }
                    Sink::Adam { m, v, step } => {
                        step.update(b_params, &mut m[slot.b_range()], &mut v[slot.b_range()], db);
                        GradSink::Adam {
                            w: w_params,
                            m: &mut m[slot.w_range()],
                            v: &mut v[slot.w_range()],
                            step: *step,
                        }
                    }
                };
                sparse::weight_grad(&ws.sparse, dz, db, out);
                continue;
            }
            match &mut sink {
                Sink::Collect(grads) => {
                    weight_grad_into(input, dz, &mut grads[slot.w_range()]);
                    grads[slot.b_range()].copy_from_slice(db);
                }
                Sink::Adam { m, v, step } => {
                    weight_grad_adam(
                        input,
                        dz,
                        w_params,
                        &mut m[slot.w_range()],
                        &mut v[slot.w_range()],
                        step,
                    );
                    step.update(b_params, &mut m[slot.b_range()], &mut v[slot.b_range()], db);
                }
            }
        }
    }
}

/// Where the backward pass sends the gradients.
enum Sink<'a> {
    /// Store them (layout of the parameter buffer).
    Collect(&'a mut [f32]),
    /// Apply one Adam step with them, tile by tile.
    Adam {
        m: &'a mut [f32],
        v: &'a mut [f32],
        step: AdamStep,
    },
}

/// `g = dzᵀ · a`. Shapes: `a: (rows, d_in)`, `dz: (rows, d_out)`, `g: (d_out·d_in)` row-major.
fn weight_grad_into(a: ArrayView2<f32>, dz: ArrayView2<f32>, g: &mut [f32]) {
    let d_in = a.ncols();
    g.par_chunks_mut(TILE_ROWS * d_in)
        .enumerate()
        .for_each(|(i, gc)| {
            let r0 = i * TILE_ROWS;
            let nr = gc.len() / d_in;
            let gv = ArrayViewMut2::from_shape((nr, d_in), gc).expect("tile shape");
            matmul(
                dz.slice(s![.., r0..r0 + nr]).t(),
                a,
                gv,
                false,
                Threads::Serial,
            );
        });
}

thread_local! {
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dW = dzᵀ · a` tile by tile, each tile applied to `w, m, v` by Adam while in cache.
/// Shapes: `a: (rows, d_in)`, `dz: (rows, d_out)`, `w, m, v: (d_out·d_in)` row-major.
fn weight_grad_adam(
    a: ArrayView2<f32>,
    dz: ArrayView2<f32>,
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    step: &AdamStep,
) {
    let d_in = a.ncols();
    let chunk = TILE_ROWS * d_in;
    w.par_chunks_mut(chunk)
        .zip(m.par_chunks_mut(chunk))
        .zip(v.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(i, ((wc, mc), vc))| {
            let r0 = i * TILE_ROWS;
            let nr = wc.len() / d_in;
            let dzt = dz.slice(s![.., r0..r0 + nr]);
            TILE.with(|buf| {
                let mut buf = buf.borrow_mut();
                for c0 in (0..d_in).step_by(TILE_COLS) {
                    let ct = TILE_COLS.min(d_in - c0);
                    if buf.len() < nr * ct {
                        buf.resize(nr * ct, 0.0);
                    }
                    let tile = &mut buf[..nr * ct];
                    let tv = ArrayViewMut2::from_shape((nr, ct), &mut *tile).expect("tile shape");
                    matmul(
                        dzt.t(),
                        a.slice(s![.., c0..c0 + ct]),
                        tv,
                        false,
                        Threads::Serial,
                    );
                    for r in 0..nr {
                        let o = r * d_in + c0;
                        step.update(
                            &mut wc[o..o + ct],
                            &mut mc[o..o + ct],
                            &mut vc[o..o + ct],
                            &tile[r * ct..(r + 1) * ct],
                        );
                    }
                }
            });
        });
}

/// SplitMix64-style mixing of a seed with two indices (for per-chunk RNG seeds).
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(b.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
