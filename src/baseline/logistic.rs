//! L2-regularised logistic regression through linfa-logistic, on `f32` features with `usize` labels.
//!
//! # Matching scikit-learn's `C`
//!
//! linfa-logistic 0.8 minimises (see `logistic_loss` / `multi_logistic_loss` in its `lib.rs`)
//!
//! ```text
//! sum_i logloss_i(w, b) + alpha/2 * ||w||^2        (intercept b not penalised)
//! ```
//!
//! and scikit-learn's `LogisticRegression(penalty="l2", C)` minimises
//! `C * sum_i logloss_i(w, b) + 1/2 * ||w||^2` (intercept not penalised either, lbfgs solver).
//! Dividing the latter by `C` gives the same minimiser as linfa with **`alpha = 1 / C`**. Both use the
//! full `C`-column softmax for more than two classes (sklearn's default `multinomial` for lbfgs), and a
//! single sigmoid for two classes. So `--C 1` (sklearn's default) is `l2 = 1.0` here, linfa's default.
//!
//! Stopping differs: sklearn stops when max-abs of the gradient of the *mean* objective is below
//! `tol`; linfa stops when the L2 norm of the gradient of the *summed* objective is below its
//! `gradient_tolerance`. [`LogisticParams::tol`] is per-sample like sklearn's: linfa receives
//! `tol * n`. (The L2 norm is ≥ the max-abs, so this stops no earlier than sklearn would.)
//!
//! One linfa quirk worth knowing: its multinomial log-sum-exp subtracts the maximum of the whole
//! logit matrix, not of each row, and clamps the row sums at 1e-15; with very spread-out logits
//! (unscaled features, tiny `alpha`) the multi-class loss can become inexact. `standardize = true`
//! keeps logits tame. The binary path does not have this issue.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_logistic::{
    FittedLogisticRegression, LogisticRegression, MultiFittedLogisticRegression,
    MultiLogisticRegression,
};
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::{check_labels, BaselineError, Classifier};

/// Unchecked settings for [`fit_logistic`]; checked when fitting.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticParams {
    /// linfa's `alpha`: L2 penalty weight on the summed log loss; `alpha = 1 / C` for scikit-learn's
    /// `C`. Default 1.0 (= sklearn's default `C = 1`, and linfa's default). Must be finite, ≥ 0.
    pub l2: f64,
    /// L-BFGS iteration cap. Default 1000, the `max_iter` of the scikit-learn peer
    /// (`../shared/bench/peers.py logreg`); linfa's and sklearn's own default is 100.
    pub max_iter: u64,
    /// Scale each feature to zero mean and unit variance (training statistics, population std,
    /// constant columns left unscaled, as sklearn's `StandardScaler`) before fitting. Default `false`,
    /// as the peer fits raw features; the penalty then acts on the scaled weights.
    pub standardize: bool,
    /// Per-sample gradient tolerance (see the module doc); linfa gets `tol * n_train`. Default 1e-4,
    /// sklearn's default `tol`. Must be finite, > 0.
    pub tol: f64,
}

impl Default for LogisticParams {
    fn default() -> Self {
        Self {
            l2: 1.0,
            max_iter: 1000,
            standardize: false,
            tol: 1e-4,
        }
    }
}

impl LogisticParams {
    /// The `l2` (linfa `alpha`) that matches scikit-learn's `C`: `1 / C`.
    pub fn l2_from_sklearn_c(c: f64) -> f64 {
        1.0 / c
    }
}

/// linfa's fitted model: one sigmoid for two classes, a softmax otherwise.
#[derive(Debug, Clone)]
enum Fitted {
    Binary(FittedLogisticRegression<f64, usize>),
    Multi(MultiFittedLogisticRegression<f64, usize>),
}

/// A fitted logistic regression; see [`fit_logistic`].
#[derive(Debug, Clone)]
pub struct FittedLogistic {
    fitted: Fitted,
    /// `(mean, std)` per feature, `(d,)` each, when fitted with `standardize`.
    scaler: Option<(Array1<f64>, Array1<f64>)>,
    n_features: usize,
    n_classes: usize,
}

/// Fits logistic regression on `x: (n, d)` with labels `y: (n,)` in `0..n_classes`.
///
/// Binary `LogisticRegression` when `n_classes == 2`, `MultiLogisticRegression` otherwise; `x` is
/// converted to `f64` (and standardised if asked) here, once. Classes absent from `y` get
/// probability 0.
///
/// Errors: row/label count mismatch, empty set, label out of range, fewer than two distinct labels,
/// non-finite feature, invalid `l2`/`tol`, or a linfa failure.
pub fn fit_logistic(
    p: &LogisticParams,
    x: ArrayView2<f32>,
    y: &[usize],
    n_classes: usize,
) -> Result<FittedLogistic, BaselineError> {
    let (n, d) = x.dim();
    check_labels(y, n_classes, Some(n))?;
    if !(p.l2.is_finite() && p.l2 >= 0.0) {
        return Err(BaselineError::InvalidParam {
            name: "l2",
            value: p.l2,
            expected: "expected a finite value >= 0 (alpha = 1/C)",
        });
    }
    if !(p.tol.is_finite() && p.tol > 0.0) {
        return Err(BaselineError::InvalidParam {
            name: "tol",
            value: p.tol,
            expected: "expected a finite value > 0",
        });
    }
    if let Some(((row, col), &value)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(BaselineError::NonFinite { row, col, value });
    }
    if y.iter().all(|&l| l == y[0]) {
        return Err(BaselineError::SingleClass(y[0]));
    }

    let scaler = p.standardize.then(|| column_mean_std(x));
    let records = to_f64(x, scaler.as_ref());
    let targets = Array1::from(y.to_vec());
    let dataset = DatasetBase::new(records, targets);
    let tol = p.tol * n as f64;

    let fitted = if n_classes == 2 {
        let model = LogisticRegression::<f64>::default()
            .alpha(p.l2)
            .max_iterations(p.max_iter)
            .gradient_tolerance(tol)
            .fit(&dataset)?;
        Fitted::Binary(model)
    } else {
        let model = MultiLogisticRegression::<f64>::default()
            .alpha(p.l2)
            .max_iterations(p.max_iter)
            .gradient_tolerance(tol)
            .fit(&dataset)?;
        Fitted::Multi(model)
    };
    Ok(FittedLogistic {
        fitted,
        scaler,
        n_features: d,
        n_classes,
    })
}

/// Training mean and population std of each column of `x: (n, d)`, in f64; a zero std becomes 1.
fn column_mean_std(x: ArrayView2<f32>) -> (Array1<f64>, Array1<f64>) {
    let n = x.nrows() as f64;
    let mut mean = Array1::<f64>::zeros(x.ncols());
    for row in x.rows() {
        mean.zip_mut_with(&row, |m, &v| *m += v as f64);
    }
    mean /= n;
    let mut var = Array1::<f64>::zeros(x.ncols());
    for row in x.rows() {
        ndarray::Zip::from(&mut var)
            .and(&row)
            .and(&mean)
            .for_each(|s, &v, &m| {
                let c = v as f64 - m;
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
    (mean, std)
}

/// The one f32 → f64 conversion: `x: (n, d)` → `(n, d)`, standardised when `scaler` is given.
fn to_f64(x: ArrayView2<f32>, scaler: Option<&(Array1<f64>, Array1<f64>)>) -> Array2<f64> {
    match scaler {
        None => x.mapv(f64::from),
        Some((mean, std)) => {
            let mut out = x.mapv(f64::from);
            for mut row in out.rows_mut() {
                ndarray::Zip::from(&mut row)
                    .and(mean)
                    .and(std)
                    .for_each(|v, &m, &s| *v = (*v - m) / s);
            }
            out
        }
    }
}

impl FittedLogistic {
    /// Feature count `d` the model was fitted on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of output columns of [`Classifier::predict_proba`].
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The model as one linear layer on raw features followed by softmax:
    /// `predict_proba(x) = softmax(x · w + b)` with `w: (d, n_classes)`, `b: (n_classes,)`, the
    /// standardisation folded in. Binary models put the sigmoid's weights on the positive class's
    /// column and zeros on the other (`sigmoid(z) = softmax([0, z])[1]`). Classes absent from the
    /// training labels get a zero column and a bias of -1e4: probability exactly 0 for any logits
    /// above -9000, and still finite, so the layer exports to ONNX as is.
    pub fn linear_layer(&self) -> (Array2<f64>, Array1<f64>) {
        let d = self.n_features;
        let mut w = Array2::<f64>::zeros((d, self.n_classes));
        let mut b = Array1::<f64>::from_elem(self.n_classes, ABSENT_BIAS);
        match &self.fitted {
            Fitted::Binary(m) => {
                let labels = m.labels();
                w.column_mut(labels.pos.class).assign(m.params());
                b[labels.pos.class] = m.intercept();
                b[labels.neg.class] = 0.0;
            }
            Fitted::Multi(m) => {
                for (j, &class) in m.classes().iter().enumerate() {
                    w.column_mut(class).assign(&m.params().column(j));
                    b[class] = m.intercept()[j];
                }
            }
        }
        if let Some((mean, std)) = &self.scaler {
            // z = ((x - mean) / std) · w + b = x · (w / std) + (b - (mean / std) · w)
            for (mut row, (&m, &s)) in w.rows_mut().into_iter().zip(mean.iter().zip(std)) {
                row /= s;
                b.scaled_add(-m, &row);
            }
        }
        (w, b)
    }
}

/// Bias given to classes absent from the training labels in [`FittedLogistic::linear_layer`].
const ABSENT_BIAS: f64 = -1e4;

impl Classifier for FittedLogistic {
    fn name(&self) -> &str {
        "logistic"
    }

    /// `x: (n, d)` → `(n, n_classes)` from linfa's own `predict_probabilities`.
    fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let (n, d) = x.dim();
        assert_eq!(
            d, self.n_features,
            "FittedLogistic::predict_proba: model fitted on {} features, got {d}",
            self.n_features
        );
        let x64 = to_f64(x, self.scaler.as_ref());
        let mut out = Array2::<f32>::zeros((n, self.n_classes));
        match &self.fitted {
            Fitted::Binary(m) => {
                let labels = m.labels();
                let p_pos = m.predict_probabilities(&x64);
                for (mut row, &p) in out.rows_mut().into_iter().zip(&p_pos) {
                    row[labels.pos.class] = p as f32;
                    row[labels.neg.class] = (1.0 - p) as f32;
                }
            }
            Fitted::Multi(m) => {
                let p = m.predict_probabilities(&x64);
                for (j, &class) in m.classes().iter().enumerate() {
                    out.column_mut(class)
                        .assign(&p.index_axis(Axis(1), j).mapv(|v| v as f32));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn softmax_rows(z: &Array2<f64>) -> Array2<f64> {
        let mut p = z.clone();
        for mut row in p.rows_mut() {
            let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            row.mapv_inplace(|v| (v - m).exp());
            let s = row.sum();
            row /= s;
        }
        p
    }

    /// The folded linear layer reproduces linfa's probabilities, binary and multi, with and
    /// without standardisation, and with a class absent from training.
    #[test]
    fn linear_layer_matches_predict_proba() {
        let x = array![
            [0.0f32, 1.0, 5.0],
            [1.0, 0.5, 4.0],
            [2.0, 0.0, 6.0],
            [3.0, -1.0, 5.5],
            [4.0, -1.5, 4.5],
            [5.0, -2.0, 5.0]
        ];
        let cases: [(&[usize], usize); 3] = [
            (&[1, 1, 1, 0, 0, 1], 2),
            (&[0, 0, 2, 2, 3, 3], 4),
            (&[0, 1, 1, 2, 2, 2], 3),
        ];
        for (y, n_classes) in cases {
            for standardize in [false, true] {
                let p = LogisticParams {
                    l2: 0.5,
                    standardize,
                    ..Default::default()
                };
                let m = fit_logistic(&p, x.view(), y, n_classes).expect("fit");
                let proba = m.predict_proba(x.view());
                let (w, b) = m.linear_layer();
                let z = x.mapv(f64::from).dot(&w) + &b;
                let reference = softmax_rows(&z);
                for (a, r) in proba.iter().zip(reference.iter()) {
                    assert!(
                        (*a as f64 - r).abs() < 1e-6,
                        "{a} vs {r} ({y:?}, {standardize})"
                    );
                }
                for row in proba.rows() {
                    assert!((row.sum() - 1.0).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn data_errors() {
        let x = array![[0.0f32], [1.0]];
        let p = LogisticParams::default();
        assert!(matches!(
            fit_logistic(&p, x.view(), &[0], 2),
            Err(BaselineError::RowMismatch { rows: 2, labels: 1 })
        ));
        assert!(matches!(
            fit_logistic(&p, x.view(), &[1, 1], 2),
            Err(BaselineError::SingleClass(1))
        ));
        let bad = array![[0.0f32], [f32::NAN]];
        assert!(matches!(
            fit_logistic(&p, bad.view(), &[0, 1], 2),
            Err(BaselineError::NonFinite { row: 1, col: 0, .. })
        ));
        let neg = LogisticParams {
            l2: -1.0,
            ..Default::default()
        };
        assert!(matches!(
            fit_logistic(&neg, x.view(), &[0, 1], 2),
            Err(BaselineError::InvalidParam { name: "l2", .. })
        ));
    }
}
