//! [`Workspace`]: the buffers one training or evaluation step of the MLP reuses.

use ndarray::{s, Array2, ArrayView2, Axis};

use super::scaler::Standardizer;

/// Reusable per-step buffers for a given batch size: the input batch, the activations, `dz` of
/// every layer, and the bias gradient. Nothing is allocated per step.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(super) dims: Vec<usize>,
    pub(super) rows: usize,
    /// `(batch, d)`
    pub(super) x: Array2<f32>,
    /// per hidden layer `(batch, h_l)`: after ReLU and dropout
    pub(super) acts: Vec<Array2<f32>>,
    /// `(batch, classes)`
    pub(super) logits: Array2<f32>,
    /// per layer `(batch, d_out)`: gradient of the loss w.r.t. the layer's pre-activation
    pub(super) dz: Vec<Array2<f32>>,
    pub(super) db: Vec<f32>,
}

impl Workspace {
    /// Buffers for batches of up to `batch` rows of a model with layer sizes `dims`.
    pub fn new(dims: &[usize], batch: usize) -> Workspace {
        let l = dims.len() - 1;
        Workspace {
            dims: dims.to_vec(),
            rows: 0,
            x: Array2::zeros((batch, dims[0])),
            acts: (1..l).map(|i| Array2::zeros((batch, dims[i]))).collect(),
            logits: Array2::zeros((batch, dims[l])),
            dz: (1..=l).map(|i| Array2::zeros((batch, dims[i]))).collect(),
            db: vec![0.0; dims[1..].iter().copied().max().unwrap_or(0)],
        }
    }

    /// Rows of the batch currently loaded.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Capacity in rows.
    pub fn capacity(&self) -> usize {
        self.x.nrows()
    }

    /// Gather rows `idx` of `x: (n, d)` as the batch, standardized by `scaler` if given.
    pub fn load_rows(&mut self, x: ArrayView2<f32>, idx: &[usize], scaler: Option<&Standardizer>) {
        assert!(
            idx.len() <= self.capacity(),
            "batch of {} > capacity {}",
            idx.len(),
            self.capacity()
        );
        for (mut dst, &i) in self.x.axis_iter_mut(Axis(0)).zip(idx) {
            dst.assign(&x.row(i));
        }
        self.rows = idx.len();
        if let Some(sc) = scaler {
            sc.apply(self.x.slice_mut(s![..self.rows, ..]));
        }
    }

    /// Load `x: (rows, d)` as the batch, standardized by `scaler` if given (the same arithmetic
    /// as [`Workspace::load_rows`]).
    pub fn load_matrix(&mut self, x: ArrayView2<f32>, scaler: Option<&Standardizer>) {
        self.set_batch(x);
        if let Some(sc) = scaler {
            sc.apply(self.x.slice_mut(s![..self.rows, ..]));
        }
    }

    /// Load `x: (rows, d)` as the batch, as is.
    pub fn set_batch(&mut self, x: ArrayView2<f32>) {
        let rows = x.nrows();
        assert!(
            rows <= self.capacity(),
            "batch of {rows} > capacity {}",
            self.capacity()
        );
        self.x.slice_mut(s![..rows, ..]).assign(&x);
        self.rows = rows;
    }

    /// The logits of the last forward pass: `(rows, classes)`.
    pub fn logits(&self) -> ArrayView2<'_, f32> {
        self.logits.slice(s![..self.rows, ..])
    }
}
