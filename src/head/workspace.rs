//! [`Workspace`]: the buffers one training or evaluation step of the MLP reuses.

use ndarray::{s, Array2, ArrayView2, Axis};

use super::scaler::Standardizer;
use super::sparse::{SparsePolicy, SparseRows, AUTO_MAX_DENSITY};

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
    /// the batch's non-zeros (raw features, see [`super::sparse`]); built unless the policy is dense
    pub(super) sparse: SparseRows,
    pub(super) policy: SparsePolicy,
    /// whether layer 1 runs the sparse kernels on the loaded batch
    pub(super) use_sparse: bool,
    /// `(h1 · (batch + 1))`: the sparse forward's partial products
    pub(super) scratch: Vec<f32>,
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
            sparse: SparseRows::default(),
            policy: SparsePolicy::default(),
            use_sparse: false,
            scratch: Vec::new(),
        }
    }

    /// Choose layer 1's kernel for the batches loaded from now on (default [`SparsePolicy::Auto`]).
    pub fn set_sparse_policy(&mut self, policy: SparsePolicy) {
        self.policy = policy;
    }

    /// Non-zeros / entries of the loaded batch's raw features (before standardization); `None`
    /// under [`SparsePolicy::Dense`], which does not index them.
    pub fn density(&self) -> Option<f64> {
        (self.policy != SparsePolicy::Dense).then(|| self.sparse.density())
    }

    /// Whether layer 1 runs the sparse kernels on the loaded batch.
    pub fn sparse_path(&self) -> bool {
        self.use_sparse
    }

    /// Index the raw batch `x[..rows]` (before standardization) and choose the kernel.
    fn index(&mut self, scaler: Option<&Standardizer>) {
        self.use_sparse = match self.policy {
            SparsePolicy::Dense => false,
            policy => {
                self.sparse.load(self.x.slice(s![..self.rows, ..]), scaler);
                policy == SparsePolicy::Sparse || self.sparse.density() < AUTO_MAX_DENSITY
            }
        };
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
        self.index(scaler);
        if let Some(sc) = scaler {
            sc.apply(self.x.slice_mut(s![..self.rows, ..]));
        }
    }

    /// Load `x: (rows, d)` as the batch, standardized by `scaler` if given (the same arithmetic
    /// as [`Workspace::load_rows`]).
    pub fn load_matrix(&mut self, x: ArrayView2<f32>, scaler: Option<&Standardizer>) {
        self.set_raw(x);
        self.index(scaler);
        if let Some(sc) = scaler {
            sc.apply(self.x.slice_mut(s![..self.rows, ..]));
        }
    }

    /// Load `x: (rows, d)` as the batch, as is.
    pub fn set_batch(&mut self, x: ArrayView2<f32>) {
        self.set_raw(x);
        self.index(None);
    }

    fn set_raw(&mut self, x: ArrayView2<f32>) {
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
