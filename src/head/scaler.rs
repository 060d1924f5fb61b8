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
        let mut sums = StandardizerSums::new(x.ncols());
        for &r in rows {
            let row = x.row(r);
            match row.as_slice() {
                Some(v) => sums.add_row(v),
                None => sums.add_row(&row.to_vec()),
            }
        }
        sums.finish()
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

/// Running f64 sums of `x` and `x²` per dimension: [`Standardizer::fit`] in one pass over rows
/// that arrive one at a time (a stream). Rows added in the same order give the same bits as
/// [`Standardizer::fit`] over those rows.
#[derive(Debug, Clone)]
pub struct StandardizerSums {
    /// `(d,)`
    sum: Vec<f64>,
    /// `(d,)`
    sq: Vec<f64>,
    rows: usize,
}

impl StandardizerSums {
    /// Empty sums for `d` dimensions.
    pub fn new(d: usize) -> StandardizerSums {
        StandardizerSums {
            sum: vec![0.0; d],
            sq: vec![0.0; d],
            rows: 0,
        }
    }

    /// Adds one row `(d,)`.
    pub fn add_row(&mut self, row: &[f32]) {
        assert_eq!(row.len(), self.sum.len(), "standardizer sums: row width");
        for ((s, q), &v) in self.sum.iter_mut().zip(self.sq.iter_mut()).zip(row) {
            let v = f64::from(v);
            *s += v;
            *q += v * v;
        }
        self.rows += 1;
    }

    /// Mean and population std of the rows added (std 1 where the variance is zero).
    pub fn finish(&self) -> Standardizer {
        let n = self.rows.max(1) as f64;
        let mean: Array1<f32> = self.sum.iter().map(|s| (s / n) as f32).collect();
        let std: Array1<f32> = self
            .sum
            .iter()
            .zip(&self.sq)
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
}
