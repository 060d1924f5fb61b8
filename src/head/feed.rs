//! [`Feed`]: the one way training reads rows, from a matrix in memory ([`InMemory`]) or from a
//! stream of row groups ([`super::stream::StreamFeed`]); the training loop sees only this trait.

use ndarray::{s, Array2, ArrayView2, Axis};

use super::scaler::{Standardizer, StandardizerSums};
use super::workspace::Workspace;
use super::HeadError;

/// One training step on the batch loaded into the workspace: `step(ws, y)` with `y: (rows,)`.
pub type Step<'s> = dyn FnMut(&mut Workspace, &[usize]) -> Result<(), HeadError> + 's;

/// A labelled set of rows the training loop can read. Rows are numbered `0..len()` in their
/// stored order; `labels()[k]` is row k's class.
pub trait Feed {
    /// Rows in the feed.
    fn len(&self) -> usize;
    /// True when the feed holds no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Features per row, D.
    fn dim(&self) -> usize;
    /// `(len,)`: the class of each row, in stored order.
    fn labels(&self) -> &[usize];
    /// Per-dimension mean and population std of every row, from one pass in stored order with
    /// f64 sums (bit-identical to [`Standardizer::fit`] over the same rows).
    fn standardizer(&mut self) -> Result<Standardizer, HeadError>;
    /// One epoch: the rows of `order` (a permutation of `0..len()`) in mini-batches of `batch`
    /// rows (the last may be shorter), each loaded into `ws` standardized by `scaler`, then
    /// `step(ws, y)` with `y: (rows,)`. An in-memory feed follows `order` exactly; a stream
    /// follows it when its shuffle buffer holds every row, else shuffles locally.
    fn epoch(
        &mut self,
        order: &[usize],
        batch: usize,
        scaler: Option<&Standardizer>,
        ws: &mut Workspace,
        step: &mut Step<'_>,
    ) -> Result<(), HeadError>;
    /// Every row in stored order, `chunk` rows at a time, standardized by `scaler`:
    /// `visit(x: (rows, d), y: (rows,))`.
    fn chunks(
        &mut self,
        chunk: usize,
        scaler: Option<&Standardizer>,
        visit: &mut dyn FnMut(ArrayView2<f32>, &[usize]),
    ) -> Result<(), HeadError>;
}

/// Rows `idx` of a matrix in memory: `x: (n, d)`, `y: (n,)`; feed row k is `x.row(idx[k])`.
#[derive(Debug, Clone)]
pub struct InMemory<'a> {
    x: ArrayView2<'a, f32>,
    idx: Vec<usize>,
    labels: Vec<usize>,
}

impl<'a> InMemory<'a> {
    /// The feed of rows `idx` of `x: (n, d)` with labels `y: (n,)` (every index `< n`).
    pub fn new(x: ArrayView2<'a, f32>, y: &[usize], idx: Vec<usize>) -> InMemory<'a> {
        assert_eq!(x.nrows(), y.len(), "InMemory: x rows vs labels");
        let labels = idx.iter().map(|&i| y[i]).collect();
        InMemory { x, idx, labels }
    }
}

impl Feed for InMemory<'_> {
    fn len(&self) -> usize {
        self.idx.len()
    }

    fn dim(&self) -> usize {
        self.x.ncols()
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }

    fn standardizer(&mut self) -> Result<Standardizer, HeadError> {
        let mut sums = StandardizerSums::new(self.dim());
        for &i in &self.idx {
            let row = self.x.row(i);
            match row.as_slice() {
                Some(v) => sums.add_row(v),
                None => sums.add_row(&row.to_vec()),
            }
        }
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
        let cap = batch.min(order.len());
        let mut rows = Vec::with_capacity(cap);
        let mut y = Vec::with_capacity(cap);
        for b in order.chunks(batch) {
            rows.clear();
            rows.extend(b.iter().map(|&k| self.idx[k]));
            y.clear();
            y.extend(b.iter().map(|&k| self.labels[k]));
            ws.load_rows(self.x, &rows, scaler);
            step(ws, &y)?;
        }
        Ok(())
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
        for (part, y) in self.idx.chunks(chunk).zip(self.labels.chunks(chunk)) {
            let rows = part.len();
            for (mut dst, &i) in xb.axis_iter_mut(Axis(0)).zip(part) {
                dst.assign(&self.x.row(i));
            }
            if let Some(sc) = scaler {
                sc.apply(xb.slice_mut(s![..rows, ..]));
            }
            visit(xb.slice(s![..rows, ..]), y);
        }
        Ok(())
    }
}

/// Images seen through their views: `x: (n, d)` holds every view row; image k's rows are
/// `groups[k]` (its plain view first), its class `labels[k]`. Feed row k is image k: each epoch
/// reads one of its views, drawn uniformly with a generator seeded by `seed` and the epoch's
/// number, so an epoch costs one row per image, as without views. [`Feed::chunks`] (evaluation)
/// and [`Feed::standardizer`] read the plain views only, so the scaler is the plain run's.
#[derive(Debug, Clone)]
pub struct ViewFeed<'a> {
    x: ArrayView2<'a, f32>,
    groups: Vec<Vec<usize>>,
    labels: Vec<usize>,
    plain: InMemory<'a>,
    seed: u64,
    epochs: u64,
}

impl<'a> ViewFeed<'a> {
    /// The feed of images `groups` (each non-empty, every index `< n`) of `x: (n, d)` with
    /// classes `labels: (groups,)`; views drawn from `seed`.
    pub fn new(
        x: ArrayView2<'a, f32>,
        groups: Vec<Vec<usize>>,
        labels: Vec<usize>,
        seed: u64,
    ) -> ViewFeed<'a> {
        assert_eq!(groups.len(), labels.len(), "ViewFeed: one label per image");
        assert!(
            groups.iter().all(|g| !g.is_empty()),
            "ViewFeed: every image has a row"
        );
        let mut y = vec![0; x.nrows()];
        for (g, &l) in groups.iter().zip(&labels) {
            for &r in g {
                y[r] = l;
            }
        }
        let plain = InMemory::new(x, &y, groups.iter().map(|g| g[0]).collect());
        ViewFeed {
            x,
            groups,
            labels,
            plain,
            seed,
            epochs: 0,
        }
    }

    /// The row of `x` image `k` shows in epoch `epoch`.
    pub fn view_of(&self, k: usize, epoch: u64) -> usize {
        let g = &self.groups[k];
        let pick = super::mlp::mix(self.seed, epoch, k as u64) % g.len() as u64;
        g[pick as usize]
    }
}

impl Feed for ViewFeed<'_> {
    fn len(&self) -> usize {
        self.groups.len()
    }

    fn dim(&self) -> usize {
        self.x.ncols()
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }

    fn standardizer(&mut self) -> Result<Standardizer, HeadError> {
        self.plain.standardizer()
    }

    fn epoch(
        &mut self,
        order: &[usize],
        batch: usize,
        scaler: Option<&Standardizer>,
        ws: &mut Workspace,
        step: &mut Step<'_>,
    ) -> Result<(), HeadError> {
        let epoch = self.epochs;
        self.epochs += 1;
        let mut rows = Vec::with_capacity(batch.min(order.len()));
        let mut y = Vec::with_capacity(batch.min(order.len()));
        for b in order.chunks(batch) {
            rows.clear();
            rows.extend(b.iter().map(|&k| self.view_of(k, epoch)));
            y.clear();
            y.extend(b.iter().map(|&k| self.labels[k]));
            ws.load_rows(self.x, &rows, scaler);
            step(ws, &y)?;
        }
        Ok(())
    }

    fn chunks(
        &mut self,
        chunk: usize,
        scaler: Option<&Standardizer>,
        visit: &mut dyn FnMut(ArrayView2<f32>, &[usize]),
    ) -> Result<(), HeadError> {
        self.plain.chunks(chunk, scaler, visit)
    }
}
