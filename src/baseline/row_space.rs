//! Exact row-space fits of the L2-penalised logistic regression when rows are fewer than features.
//!
//! With the intercept unpenalised, the optimal weights (and every L-BFGS iterate from zero, whose
//! gradients `Xᵀ·r + αw` all lie in the row space) are `w = Xᵀβ` for the fit rows `X: (n, d)`.
//! With the Gram matrix `K = X·Xᵀ` factored by a pivoted Cholesky `K ≈ L·Lᵀ` (`L: (n, r)`, rank
//! `r`, the pivot rows' block `L₁: (r, r)` lower triangular), the map `z ↦ w = X₁ᵀ·L₁⁻ᵀ·z` (`X₁`
//! the pivot rows) is orthonormal (`‖w‖ = ‖z‖`) and sends the features `Z = L` to the same logits
//! (`X·w = L·z`). So fitting linfa on `Z: (n, r)` minimises the same objective along the same path
//! in exact arithmetic, at `r/d` of the cost per L-BFGS step; other rows' logits come from their
//! Gram block: `X_val·w = K[val, pivots]·β`, `β = L₁⁻ᵀ·z`.
//!
//! **When.** [`pays`]: at most half as many rows as features (each L-BFGS step then costs at most
//! half a direct one, and the rank `r ≤ n`), and at most [`MAX_ROWS`] rows. The one-off costs are
//! the Gram product (`n²d` flops in one matrix product, `n² · 8` bytes: 128 MiB at the cap) and an
//! unblocked factorisation per fit set (`n·r²/2` flops); both are below a direct C search's
//! ~80 fits of hundreds of `4·n·d·classes`-flop evaluations by far (timed at 131 rows, not yet
//! near the cap). Otherwise the direct fit on `X`.
//!
//! **One fit alone** ([`pays_once`]) shares its Gram product with nothing, and that product's
//! `n²d` multiply-adds cost about `n / 16` of the direct fit's memory-bound L-BFGS evaluations
//! (each streams `X` twice); fits take 30-90 evaluations, so a single fit goes to row space only
//! up to [`ONE_FIT_MAX_ROWS`] rows (at 2,000 rows a lone row-space fit took 27 s where
//! scikit-learn's took 5: docs/BENCHMARKS.md section 17).
//!
//! Deterministic: the Gram product is one matrixmultiply product (its threads split the output's
//! rows and columns, never the inner sum) and the factorisation runs in a fixed order.

use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Largest row count fitted in row space (module doc).
pub const MAX_ROWS: usize = 4096;

/// The pivoted Cholesky stops once the largest remaining pivot (a squared residual row norm) is
/// below this fraction of the largest diagonal entry of `K`: the rows left are, to `1e-5` of the
/// largest row norm, combinations of the pivots.
const REL_EPS: f64 = 1e-10;

/// Largest row count of a lone fit (one that shares no Gram product) fitted in row space.
pub const ONE_FIT_MAX_ROWS: usize = 512;

/// Whether the fits of a search over `n` rows of `d` features, sharing one Gram product, run in
/// row space (module doc).
pub fn pays(n: usize, d: usize) -> bool {
    n <= d / 2 && n <= MAX_ROWS
}

/// Whether one lone fit of `n` rows of `d` features runs in row space (module doc).
pub fn pays_once(n: usize, d: usize) -> bool {
    pays(n, d) && n <= ONE_FIT_MAX_ROWS
}

/// `K = X·Xᵀ: (n, n)` of a row-major design `x: (n, d)`, exactly symmetric.
pub fn gram(x: ArrayView2<f64>) -> Array2<f64> {
    let mut k = x.dot(&x.t());
    let n = k.nrows();
    for i in 0..n {
        for j in 0..i {
            let v = k[[i, j]];
            k[[j, i]] = v;
        }
    }
    k
}

/// A pivoted Cholesky factor `K ≈ L·Lᵀ` of a positive semi-definite `K: (n, n)`.
#[derive(Debug, Clone)]
pub struct Factor {
    /// Row indices (into `K`) of the pivots, in pivot order: `r` of them.
    pub pivots: Vec<usize>,
    /// `L: (n, r)` in `K`'s row order; `L[pivots[i], j] = 0` for `j > i`.
    pub l: Array2<f64>,
}

impl Factor {
    /// Factors `k: (n, n)` (symmetric positive semi-definite), stopping at the rank where the
    /// largest remaining pivot falls below [`REL_EPS`] times the largest diagonal entry. An all-zero
    /// `k` gives rank 0.
    pub fn new(k: ArrayView2<f64>) -> Self {
        let n = k.nrows();
        let mut resid: Vec<f64> = (0..n).map(|i| k[[i, i]]).collect();
        let max_diag = resid.iter().fold(0f64, |m, &v| m.max(v));
        let floor = REL_EPS * max_diag;
        // Columns of L, each (n,), built one per pivot.
        let mut cols: Vec<Vec<f64>> = Vec::new();
        let mut pivots = Vec::new();
        let mut used = vec![false; n];
        // The unused row with the largest residual pivot, the first on ties.
        let next = |resid: &[f64], used: &[bool]| {
            resid.iter().enumerate().filter(|(i, _)| !used[*i]).fold(
                None::<(usize, f64)>,
                |b, (i, &v)| match b {
                    Some((_, bv)) if bv >= v => b,
                    _ => Some((i, v)),
                },
            )
        };
        while let Some((p, dp)) = next(&resid, &used) {
            if dp.is_nan() || dp <= floor || max_diag <= 0.0 {
                break;
            }
            used[p] = true;
            let s = dp.sqrt();
            // L[:, j] = (K[:, p] - Σ_{q<j} L[:, q]·L[p, q]) / s, exact zeros on earlier pivots.
            let mut col: Vec<f64> = k.column(p).to_vec();
            for c in &cols {
                let f = c[p];
                if f != 0.0 {
                    for (o, &v) in col.iter_mut().zip(c) {
                        *o -= v * f;
                    }
                }
            }
            for (i, o) in col.iter_mut().enumerate() {
                *o = if used[i] && i != p { 0.0 } else { *o / s };
            }
            col[p] = s;
            for (i, r) in resid.iter_mut().enumerate() {
                if !used[i] {
                    *r -= col[i] * col[i];
                }
            }
            pivots.push(p);
            cols.push(col);
        }
        let r = cols.len();
        let mut l = Array2::<f64>::zeros((n, r));
        for (j, c) in cols.iter().enumerate() {
            l.column_mut(j).assign(&Array1::from(c.clone()));
        }
        Self { pivots, l }
    }

    /// Rank `r` of the factor.
    pub fn rank(&self) -> usize {
        self.pivots.len()
    }

    /// `β = L₁⁻ᵀ·z` for `z: (r, c)` (one column per output), `L₁ = L[pivots, :]` lower
    /// triangular: the coefficients of the pivot rows that give the same weights `w = X₁ᵀ·β`.
    pub fn back(&self, z: ArrayView2<f64>) -> Array2<f64> {
        let r = self.rank();
        let l1 = self.l.select(Axis(0), &self.pivots);
        let mut beta = z.to_owned();
        for mut col in beta.columns_mut() {
            // Solve L₁ᵀ·b = z (upper triangular), last row first.
            for i in (0..r).rev() {
                let mut v = col[i];
                for j in i + 1..r {
                    v -= l1[[j, i]] * col[j];
                }
                col[i] = v / l1[[i, i]];
            }
        }
        beta
    }
}
