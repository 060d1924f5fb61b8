//! Per-dimension standardization `(x - mean) / std`, fitted on the train split and stored with the head.

use ndarray::{Array1, ArrayView2, ArrayViewMut2, Axis, Zip};

/// Mean and standard deviation per feature dimension. Dimensions with zero variance (e.g. a ReLU
/// feature that is zero for every train image) get std 1, so they map to `x - mean`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// `(d,)`
    pub mean: Array1<f32>,
    /// `(d,)`, every entry `> 0`
    pub std: Array1<f32>,
}

impl Standardizer {
    /// Fit on the rows `rows` of `x: (n, d)` (population std, accumulated in f64).
    pub fn fit(x: ArrayView2<f32>, rows: &[usize]) -> Standardizer {
        let d = x.ncols();
        let mut sum = vec![0.0f64; d];
        let mut sq = vec![0.0f64; d];
        for &r in rows {
            for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(x.row(r).iter()) {
                let v = f64::from(v);
                *s += v;
                *q += v * v;
            }
        }
        let n = rows.len().max(1) as f64;
        let mean: Array1<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Array1<f32> = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let m = s / n;
                let var = (q / n - m * m).max(0.0);
                let sd = var.sqrt() as f32;
                if sd > 1e-12 && sd.is_finite() {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Standardizer { mean, std }
    }

    /// Feature dimension `d`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Standardize `x: (batch, d)` in place.
    pub fn apply(&self, mut x: ArrayViewMut2<f32>) {
        assert_eq!(
            x.ncols(),
            self.dim(),
            "standardizer: expected {} columns",
            self.dim()
        );
        for mut row in x.axis_iter_mut(Axis(0)) {
            Zip::from(&mut row)
                .and(&self.mean)
                .and(&self.std)
                .for_each(|v, &m, &s| *v = (*v - m) / s);
        }
    }
}
