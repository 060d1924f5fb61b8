//! vggcache patch (see PATCH.md): cost and gradient of both objectives from one evaluation, memoised.
//!
//! argmin's L-BFGS asks the problem for `cost(p)` then `gradient(p)` at every line-search point, and
//! for `gradient(p)` again at the accepted point. Upstream evaluates `x · w` in each call and
//! `xᵀ · r` through a strided loop when `x` is row-major, about six passes over `x: (n, d)` per
//! iteration. Here one evaluation computes both, walking `x` in blocks of rows that stay in cache
//! (one pass over memory), in parallel over blocks, and [`Memo`] serves the repeated calls.
//!
//! The objectives are upstream's, unchanged: binary labels `y ∈ {-1, 1}`,
//! `cost = -Σ log σ(y_i z_i) + α/2 ‖w‖²`, `z = x · w + b`; multinomial one-hot `Y: (n, k)`,
//! `cost = -Σ Y ∘ log softmax(Z) + α/2 ‖W‖²`, `Z = X · W + b`. The intercept is not penalised.
//! Only the summation order differs, and the multinomial log-sum-exp subtracts each row's maximum
//! (upstream subtracts the maximum of the whole matrix and clamps row sums at 1e-15, which is
//! inexact for widely spread logits; where it does not clamp the two agree).

use std::sync::Mutex;

use ndarray::parallel::prelude::*;
use ndarray::{s, Array, Array1, Array2, ArrayView1, ArrayView2, Axis, Dimension};

use crate::float::Float;

/// Rows per block: 8 rows of 25,088 f64 features are 1.6 MB, cache-resident between the forward
/// (`z = x_i · w`) and backward (`g += r_i x_i`) use of each row.
const BLOCK_ROWS: usize = 8;

/// Groups the rows are split into for [`ordered_sum`]: a constant, so the summation order (and
/// hence every bit of the cost and gradient) does not depend on the thread count or on rayon's
/// work stealing. 16 groups keep two to sixteen cores busy.
const GROUPS: usize = 16;

/// A deterministic parallel fold over row blocks of `x: (n, d)` and `y: (n, ..)`: the rows are cut
/// into at most [`GROUPS`] contiguous groups (whole [`BLOCK_ROWS`] blocks), each group is folded
/// block by block from `zero()` on some thread, and the group results are combined in group order.
/// (rayon's `fold`/`reduce` split where work stealing happens to split, so the float sums, and
/// after many L-BFGS steps the fitted model, changed from run to run.)
fn ordered_sum<F, D, T>(
    x: ArrayView2<F>,
    y: ndarray::ArrayView<F, D>,
    zero: impl Fn() -> T + Sync,
    fold: impl Fn(T, ArrayView2<F>, ndarray::ArrayView<F, D>) -> T + Sync,
    combine: impl Fn(T, T) -> T,
) -> T
where
    F: Float,
    D: ndarray::RemoveAxis,
    T: Send,
{
    let blocks = x.nrows().div_ceil(BLOCK_ROWS).max(1);
    let group_rows = blocks.div_ceil(GROUPS) * BLOCK_ROWS;
    let parts: Vec<T> = x
        .axis_chunks_iter(Axis(0), group_rows)
        .into_par_iter()
        .zip(y.axis_chunks_iter(Axis(0), group_rows).into_par_iter())
        .map(|(xg, yg)| {
            xg.axis_chunks_iter(Axis(0), BLOCK_ROWS)
                .zip(yg.axis_chunks_iter(Axis(0), BLOCK_ROWS))
                .fold(zero(), |acc, (xb, yb)| fold(acc, xb, yb))
        })
        .collect();
    parts.into_iter().fold(zero(), combine)
}

/// The last parameters an objective was evaluated at, with its cost and gradient.
#[derive(Debug, Default)]
pub(crate) struct Memo<F, D: Dimension>(Mutex<Option<(Array<F, D>, F, Array<F, D>)>>);

impl<F: Float, D: Dimension> Memo<F, D> {
    /// `(cost, gradient)` at `p`: the stored pair when `p` equals the stored parameters, else
    /// `eval(p)`, stored.
    pub(crate) fn get(
        &self,
        p: &Array<F, D>,
        eval: impl FnOnce() -> (F, Array<F, D>),
    ) -> (F, Array<F, D>) {
        let mut memo = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((q, cost, grad)) = memo.as_ref() {
            if q == p {
                return (*cost, grad.clone());
            }
        }
        let (cost, grad) = eval();
        *memo = Some((p.clone(), cost, grad.clone()));
        (cost, grad)
    }
}

/// Binary objective: `x: (n, d)` row-major, `y: (n,)` in {-1, 1}, `w: (d,)` or `(d + 1,)` (last
/// entry the intercept) → `(cost, gradient shaped as w)`.
pub(crate) fn logistic_cost_grad<F: Float>(
    x: ArrayView2<F>,
    y: &Array1<F>,
    alpha: F,
    w: &Array1<F>,
) -> (F, Array1<F>) {
    let d = x.ncols();
    let params = w.slice(s![..d]);
    let b = if w.len() == d + 1 { w[d] } else { F::zero() };
    let zero = || (F::zero(), Array1::<F>::zeros(d), F::zero());
    let (loss, mut gw, gb) = ordered_sum(
        x,
        y.view(),
        zero,
        |(mut loss, mut gw, mut gb), xb, yb| {
            for (row, &yi) in xb.rows().into_iter().zip(yb) {
                let yz = yi * (row.dot(&params) + b);
                loss -= crate::log_logistic(yz);
                // d/dz of -log σ(y z) = y (σ(y z) - 1)
                let r = yi * (crate::logistic(yz) - F::one());
                gb += r;
                gw.scaled_add(r, &row);
            }
            (loss, gw, gb)
        },
        |a, b| (a.0 + b.0, a.1 + &b.1, a.2 + b.2),
    );
    gw.scaled_add(alpha, &params);
    let cost = loss + F::cast(0.5) * alpha * params.dot(&params);
    let grad = if w.len() == d + 1 {
        let mut g = Array1::zeros(d + 1);
        g.slice_mut(s![..d]).assign(&gw);
        g[d] = gb;
        g
    } else {
        gw
    };
    (cost, grad)
}

/// Multinomial objective: `x: (n, d)` row-major, `y: (n, k)` one-hot, `w: (d, k)` or `(d + 1, k)`
/// (last row the intercepts) → `(cost, gradient shaped as w)`.
pub(crate) fn multi_logistic_cost_grad<F: Float>(
    x: ArrayView2<F>,
    y: &Array2<F>,
    alpha: F,
    w: &Array2<F>,
) -> (F, Array2<F>) {
    let (d, k) = (x.ncols(), w.ncols());
    let params = w.slice(s![..d, ..]);
    let b: Array1<F> = if w.nrows() == d + 1 {
        w.row(d).to_owned()
    } else {
        Array1::zeros(k)
    };
    // Class-major weights (k, d): each class's weights contiguous, as each row of x.
    let wt = params.t().as_standard_layout().into_owned();
    let zero = || (F::zero(), Array2::<F>::zeros((k, d)), Array1::<F>::zeros(k));
    let (loss, gt, gb) = ordered_sum(
        x,
        y.view(),
        zero,
        |(mut loss, mut gt, mut gb), xb, yb: ArrayView2<F>| {
            let mut z = Array1::<F>::zeros(k);
            for (row, yi) in xb.rows().into_iter().zip(yb.rows()) {
                for (j, zj) in z.iter_mut().enumerate() {
                    *zj = row.dot(&wt.row(j)) + b[j];
                }
                loss += row_loss_softmax(&mut z, yi);
                // z now holds softmax(z) - y_i, the gradient of the loss in z.
                for (j, &r) in z.iter().enumerate() {
                    gb[j] += r;
                    gt.row_mut(j).scaled_add(r, &row);
                }
            }
            (loss, gt, gb)
        },
        |a, b| (a.0 + b.0, a.1 + &b.1, a.2 + &b.2),
    );
    let mut grad = Array2::zeros(w.raw_dim());
    let mut gw = grad.slice_mut(s![..d, ..]);
    gw.assign(&gt.t());
    gw.scaled_add(alpha, &params);
    if w.nrows() == d + 1 {
        grad.row_mut(d).assign(&gb);
    }
    let reg = F::cast(0.5) * alpha * crate::elem_dot(&params, &params);
    (loss + reg, grad)
}

/// `-Σ_j y_j log softmax(z)_j` for one row; leaves `softmax(z) - y` in `z`. `z, y: (k,)`.
fn row_loss_softmax<F: Float>(z: &mut Array1<F>, y: ArrayView1<F>) -> F {
    let max = z.iter().copied().fold(F::neg_infinity(), F::max);
    let lse = max + z.iter().map(|&v| (v - max).exp()).sum::<F>().ln();
    let mut loss = F::zero();
    for (zj, &yj) in z.iter_mut().zip(y) {
        let log_p = *zj - lse;
        loss -= yj * log_p;
        *zj = log_p.exp() - yj;
    }
    loss
}
