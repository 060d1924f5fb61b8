//! The logistic baseline's design matrix: `f32` features → row-major `f64`, optionally standardised.

use ndarray::{Array1, Array2, ArrayView2};

/// Per-feature training statistics, as scikit-learn's `StandardScaler`: `mean, std: (d,)`, population
/// std, a zero std replaced by 1 (constant columns are centred, not scaled).
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Per-feature mean of the training rows.
    pub mean: Array1<f64>,
    /// Per-feature standard deviation (constant features get 1).
    pub std: Array1<f64>,
}

impl Standardizer {
    /// Statistics of the columns of `x: (n, d)`, `n ≥ 1`, accumulated in `f64`.
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let n = x.nrows() as f64;
        let mut mean = Array1::<f64>::zeros(x.ncols());
        for row in x.rows() {
            mean.zip_mut_with(&row, |m, &v| *m += f64::from(v));
        }
        mean /= n;
        let mut var = Array1::<f64>::zeros(x.ncols());
        for row in x.rows() {
            ndarray::Zip::from(&mut var)
                .and(&row)
                .and(&mean)
                .for_each(|s, &v, &m| {
                    let c = f64::from(v) - m;
                    *s += c * c;
                });
        }
        let std = var.mapv(|s| {
            let sd = (s / n).sqrt();
            if sd > 0.0 {
                sd
            } else {
                1.0
            }
        });
        Self { mean, std }
    }
}

/// The one `f32 → f64` conversion: `x: (n, d)` → row-major `(n, d)` (the layout the patched
/// linfa-logistic's fused objective walks in cache-sized row blocks), standardised when `scaler`
/// is given.
pub fn design(x: ArrayView2<f32>, scaler: Option<&Standardizer>) -> Array2<f64> {
    let mut out = Array2::<f64>::zeros(x.raw_dim());
    ndarray::Zip::from(out.rows_mut())
        .and(x.rows())
        .par_for_each(|mut o, r| {
            o.zip_mut_with(&r, |o, &v| *o = f64::from(v));
            if let Some(s) = scaler {
                ndarray::Zip::from(&mut o)
                    .and(&s.mean)
                    .and(&s.std)
                    .for_each(|v, &m, &sd| *v = (*v - m) / sd);
            }
        });
    debug_assert!(out.is_standard_layout());
    out
}
