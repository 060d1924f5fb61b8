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
//! # Stopping ([`StopTest`])
//!
//! sklearn (scipy's L-BFGS-B, `gtol = tol`) stops when the largest absolute component of the
//! gradient of the *mean* objective is at most `tol`; that objective is linfa's *summed* one divided
//! by `n`. [`LogisticParams::tol`] is per-sample like sklearn's: linfa receives `tol * n` on
//! - the **L2 norm** of its gradient by default ([`StopTest::SummedL2`], upstream linfa's rule): up
//!   to `√p` times stricter than sklearn's test, so fits run further toward the optimum (2-3x
//!   sklearn's iterations on 25,088 features), and the norm is the same in row space, so a row-space
//!   fit stops where the direct fit stops;
//! - the **max-abs** of its gradient with [`StopTest::ScikitLearn`] (`GradientNorm::MaxAbs`, added
//!   by the vendored patch): sklearn's test exactly. Such fits take the direct path (the max-abs of
//!   a rotated gradient is another number). Not the default: on catsdogs-gray the looser stop
//!   scored 1.5 points under the L2 rule (docs/BENCHMARKS.md section 22).
//!
//! # Speed: the vendored patch
//!
//! linfa-logistic is patched (`vendor/linfa-logistic/PATCH.md`): cost and gradient come from one
//! walk over the row-major `f64` design matrix, memoised across argmin's repeated calls at the same
//! point, and the fitted model reports its iteration count and whether it converged. The objective,
//! the solver (argmin L-BFGS, More-Thuente line search, memory 10) and the stopping rule are
//! upstream's. Standardised features need far fewer iterations than raw ones, but raw features are the
//! default: they score as well or better on every set measured (docs/BENCHMARKS.md section 14).

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_logistic::{
    FitInfo, FittedLogisticRegression, GradientNorm, LogisticRegression,
    MultiFittedLogisticRegression, MultiLogisticRegression,
};
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::row_space::{self, Factor};
use super::standardize::{design, Standardizer};
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
    /// constant columns left unscaled, as sklearn's `StandardScaler`) before fitting; the
    /// statistics are folded into the weights afterwards ([`FittedLogistic::linear_layer`]).
    /// The penalty then acts on the scaled weights (sklearn's
    /// `make_pipeline(StandardScaler(), LogisticRegression(C))`). Default `false` (raw features,
    /// sklearn's `LogisticRegression()`): standardising gives the many mostly-zero pool5 features
    /// unit variance, and on the digits set that cost 2.8 points (docs/BENCHMARKS.md section 14);
    /// it fits in fewer L-BFGS iterations.
    pub standardize: bool,
    /// Per-sample gradient tolerance, scikit-learn's `tol` (see the module doc): linfa gets
    /// `tol * n_train` on the norm [`LogisticParams::stop`] names. Default 1e-4, sklearn's default
    /// `tol`. Must be finite, > 0.
    pub tol: f64,
    /// Which gradient test ends a fit. Default [`StopTest::SummedL2`].
    pub stop: StopTest,
}

/// Which gradient test ends a fit (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopTest {
    /// L2 norm of the summed objective's gradient ≤ `tol·n` (upstream linfa's rule): stricter
    /// than scikit-learn's, and the same in row space.
    #[default]
    SummedL2,
    /// Max-abs of the mean objective's gradient ≤ `tol` (scikit-learn's lbfgs, scipy's `gtol`);
    /// fits take the direct path.
    ScikitLearn,
}

impl StopTest {
    /// Whether a fit under this test may run in row space (only the L2 norm is the same there).
    pub(super) fn row_space_ok(self) -> bool {
        self == StopTest::SummedL2
    }

    fn norm(self) -> GradientNorm {
        match self {
            StopTest::SummedL2 => GradientNorm::L2,
            StopTest::ScikitLearn => GradientNorm::MaxAbs,
        }
    }
}

impl Default for LogisticParams {
    fn default() -> Self {
        Self {
            l2: 1.0,
            max_iter: 1000,
            standardize: false,
            tol: 1e-4,
            stop: StopTest::SummedL2,
        }
    }
}

impl LogisticParams {
    /// The `l2` (linfa `alpha`) that matches scikit-learn's `C`: `1 / C`.
    pub fn l2_from_sklearn_c(c: f64) -> f64 {
        1.0 / c
    }
}

/// linfa's fitted model: one sigmoid for two classes, a softmax otherwise; or, from a row-space
/// fit ([`super::row_space`]), its weights mapped back in [`FittedLogistic::linear_layer`]'s layout.
#[derive(Debug, Clone)]
enum Fitted {
    Binary(FittedLogisticRegression<f64, usize>),
    Multi(MultiFittedLogisticRegression<f64, usize>),
    /// `softmax(x · w + b)`, `w: (d, n_classes)` and `b: (n_classes,)` on the fitted design.
    Linear {
        w: Array2<f64>,
        b: Array1<f64>,
        info: FitInfo,
    },
}

impl Fitted {
    fn fit_info(&self) -> &FitInfo {
        match self {
            Fitted::Binary(m) => m.fit_info(),
            Fitted::Multi(m) => m.fit_info(),
            Fitted::Linear { info, .. } => info,
        }
    }

    /// linfa's parameter layout: `(d + 1,)` binary, `(d + 1, present classes)` multinomial,
    /// intercepts last.
    #[cfg(test)]
    fn coefficients(&self) -> ndarray::ArrayD<f64> {
        match self {
            Fitted::Binary(m) => {
                let mut p = m.params().to_vec();
                p.push(m.intercept());
                Array1::from(p).into_dyn()
            }
            Fitted::Multi(m) => {
                let (d, k) = m.params().dim();
                let mut p = Array2::<f64>::zeros((d + 1, k));
                p.slice_mut(ndarray::s![..d, ..]).assign(m.params());
                p.row_mut(d).assign(m.intercept());
                p.into_dyn()
            }
            Fitted::Linear { w, b, .. } => {
                let mut p = w.clone();
                p.push_row(b.view())
                    .expect("b has one entry per column of w");
                p.into_dyn()
            }
        }
    }
}

/// A fitted logistic regression; see [`fit_logistic`].
#[derive(Debug, Clone)]
pub struct FittedLogistic {
    fitted: Fitted,
    /// Training statistics, when fitted with `standardize`.
    scaler: Option<Standardizer>,
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
    check_fit(p, x, y, n_classes)?;
    let scaler = p.standardize.then(|| Standardizer::fit(x));
    let records = design(x, scaler.as_ref());
    fit_design(p, records, scaler, y, n_classes)
}

/// The checks of [`fit_logistic`]: labels against `x: (n, d)` and `n_classes`, `l2`, `tol`,
/// finite features, at least two distinct labels.
pub(super) fn check_fit(
    p: &LogisticParams,
    x: ArrayView2<f32>,
    y: &[usize],
    n_classes: usize,
) -> Result<(), BaselineError> {
    check_labels(y, n_classes, Some(x.nrows()))?;
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
    Ok(())
}

/// How a fit on a design of `n` rows and `d` features runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    /// Row space when it pays (a lone fit: [`row_space::pays_once`]; a search's shared Gram:
    /// [`row_space::pays`]), directly otherwise.
    Auto,
    /// linfa on the design itself.
    Direct,
    /// linfa on the design's Gram factor ([`super::row_space`]).
    #[cfg(test)]
    RowSpace,
}

impl Path {
    /// Whether a lone fit of `n` rows and `d` features, stopped by `stop`, runs in row space
    /// (never under a test that is not the same there: [`StopTest::row_space_ok`]).
    pub(super) fn row_space(self, n: usize, d: usize, stop: StopTest) -> bool {
        if !stop.row_space_ok() {
            return false;
        }
        match self {
            Path::Auto => row_space::pays_once(n, d),
            Path::Direct => false,
            #[cfg(test)]
            Path::RowSpace => true,
        }
    }

    /// Whether a search's fits over `n` rows and `d` features, sharing one Gram product and
    /// stopped by `stop`, run in row space.
    pub(super) fn search_row_space(self, n: usize, d: usize, stop: StopTest) -> bool {
        match self {
            Path::Auto => stop.row_space_ok() && row_space::pays(n, d),
            other => other.row_space(n, d, stop),
        }
    }
}

/// Fits on a prepared design `records: (n, d)` (row-major `f64`, standardised by `scaler` if
/// any), starting from zero, by the path [`row_space::pays_once`] picks. Checks of [`fit_logistic`] on
/// `x` are the caller's.
pub(super) fn fit_design(
    p: &LogisticParams,
    records: Array2<f64>,
    scaler: Option<Standardizer>,
    y: &[usize],
    n_classes: usize,
) -> Result<FittedLogistic, BaselineError> {
    fit_design_by(p, records, scaler, y, n_classes, Path::Auto)
}

/// [`fit_design`] by a given path. In row space the weights are mapped back to the `d` features:
/// the model predicts and exports on the same rows as a direct fit's.
pub(super) fn fit_design_by(
    p: &LogisticParams,
    records: Array2<f64>,
    scaler: Option<Standardizer>,
    y: &[usize],
    n_classes: usize,
    path: Path,
) -> Result<FittedLogistic, BaselineError> {
    let (n, d) = records.dim();
    if !path.row_space(n, d, p.stop) {
        return fit_direct(p, records, scaler, y, n_classes);
    }
    let factor = Factor::new(row_space::gram(records.view()).view());
    let (beta, b, info) = fit_z(p, &factor, y, n_classes)?;
    // w = X₁ᵀ·β: the pivot rows' combination.
    let w = records.select(Axis(0), &factor.pivots).t().dot(&beta);
    Ok(FittedLogistic {
        fitted: Fitted::Linear { w, b, info },
        scaler,
        n_features: d,
        n_classes,
    })
}

/// Fits in row space on the factor `K ≈ L·Lᵀ` of the fit rows' Gram matrix (their labels `y`):
/// linfa on `Z = L`, then the weights as pivot-row coefficients `β = L₁⁻ᵀ·z`. The model's
/// `r = factor.rank()` features are the Gram columns of the pivots, `K[rows, pivots]`: it scores
/// any rows from their Gram block with the fit rows' pivots ([`super::row_space`]).
pub(super) fn fit_factor(
    p: &LogisticParams,
    factor: &Factor,
    y: &[usize],
    n_classes: usize,
) -> Result<FittedLogistic, BaselineError> {
    let (w, b, info) = fit_z(p, factor, y, n_classes)?;
    Ok(FittedLogistic {
        fitted: Fitted::Linear { w, b, info },
        scaler: None,
        n_features: factor.rank(),
        n_classes,
    })
}

/// linfa on `Z = L` of `factor`: `(β: (r, n_classes), b, fit info)` in
/// [`FittedLogistic::linear_layer`]'s layout, `β = L₁⁻ᵀ·z` per class.
fn fit_z(
    p: &LogisticParams,
    factor: &Factor,
    y: &[usize],
    n_classes: usize,
) -> Result<(Array2<f64>, Array1<f64>, FitInfo), BaselineError> {
    let z = fit_direct(p, factor.l.clone(), None, y, n_classes)?;
    let (wz, b) = z.linear_layer();
    Ok((factor.back(wz.view()), b, z.fitted.fit_info().clone()))
}

/// linfa on the design itself.
fn fit_direct(
    p: &LogisticParams,
    records: Array2<f64>,
    scaler: Option<Standardizer>,
    y: &[usize],
    n_classes: usize,
) -> Result<FittedLogistic, BaselineError> {
    let (n, d) = records.dim();
    let targets = Array1::from(y.to_vec());
    let dataset = DatasetBase::new(records, targets);
    let tol = p.tol * n as f64;
    let fitted = if n_classes == 2 {
        let params = LogisticRegression::<f64>::default()
            .alpha(p.l2)
            .max_iterations(p.max_iter)
            .gradient_tolerance(tol)
            .gradient_norm(p.stop.norm());
        Fitted::Binary(params.fit(&dataset)?)
    } else {
        let params = MultiLogisticRegression::<f64>::default()
            .alpha(p.l2)
            .max_iterations(p.max_iter)
            .gradient_tolerance(tol)
            .gradient_norm(p.stop.norm());
        Fitted::Multi(params.fit(&dataset)?)
    };
    Ok(FittedLogistic {
        fitted,
        scaler,
        n_features: d,
        n_classes,
    })
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

    /// L-BFGS iterations the fit ran.
    pub fn n_iter(&self) -> u64 {
        self.fitted.fit_info().n_iter
    }

    /// Whether the solver met its tolerance; `false` when it stopped at `max_iter` or its line
    /// search gave up ([`FittedLogistic::termination`] says which).
    pub fn converged(&self) -> bool {
        self.fitted.fit_info().converged
    }

    /// argmin's termination reason, as text.
    pub fn termination(&self) -> &str {
        &self.fitted.fit_info().termination
    }

    /// Parameters in linfa's layout on the fitted (possibly standardised) design.
    #[cfg(test)]
    fn coefficients(&self) -> ndarray::ArrayD<f64> {
        self.fitted.coefficients()
    }

    /// Probabilities on an already prepared design `x64: (n, d)` (standardised as this model's
    /// training design was) → `(n, n_classes)`.
    pub(super) fn predict_design(&self, x64: &Array2<f64>) -> Array2<f32> {
        let n = x64.nrows();
        let mut out = Array2::<f32>::zeros((n, self.n_classes));
        match &self.fitted {
            Fitted::Binary(m) => {
                let labels = m.labels();
                let p_pos = m.predict_probabilities(x64);
                for (mut row, &p) in out.rows_mut().into_iter().zip(&p_pos) {
                    row[labels.pos.class] = p as f32;
                    row[labels.neg.class] = (1.0 - p) as f32;
                }
            }
            Fitted::Multi(m) => {
                let p = m.predict_probabilities(x64);
                for (j, &class) in m.classes().iter().enumerate() {
                    out.column_mut(class)
                        .assign(&p.index_axis(Axis(1), j).mapv(|v| v as f32));
                }
            }
            Fitted::Linear { w, b, .. } => {
                let z = x64.dot(w) + b;
                for (mut o, z) in out.rows_mut().into_iter().zip(z.rows()) {
                    let top = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                    let e = z.mapv(|v| (v - top).exp());
                    let sum = e.sum();
                    o.zip_mut_with(&e, |o, &e| *o = (e / sum) as f32);
                }
            }
        }
        out
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
            Fitted::Linear { w: lw, b: lb, .. } => {
                w.assign(lw);
                b.assign(lb);
            }
        }
        if let Some(Standardizer { mean, std }) = &self.scaler {
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
        let d = x.ncols();
        assert_eq!(
            d, self.n_features,
            "FittedLogistic::predict_proba: model fitted on {} features, got {d}",
            self.n_features
        );
        self.predict_design(&design(x, self.scaler.as_ref()))
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

    /// The vendored patch's fused objective (row-major design) and upstream's unchanged functions
    /// (the same design column-major) reach the same coefficients: the patch changes speed only.
    #[test]
    fn fused_objective_matches_upstream_layout() {
        let x = Array2::from_shape_fn((60, 7), |(i, j)| {
            ((i * 7 + j * 13) % 17) as f32 / 4.0 + if j == i % 3 { 2.0 } else { 0.0 }
        });
        for (y, k) in [
            (
                (0..60).map(|i| usize::from(i % 3 == 0)).collect::<Vec<_>>(),
                2,
            ),
            ((0..60).map(|i| i % 3).collect(), 3),
        ] {
            let p = LogisticParams {
                tol: 1e-8,
                ..Default::default()
            };
            let scaler = Standardizer::fit(x.view());
            let rows = design(x.view(), Some(&scaler));
            let cols = rows.t().as_standard_layout().into_owned().reversed_axes();
            assert!(!cols.is_standard_layout() && cols == rows);
            let fused = fit_design(&p, rows, Some(scaler.clone()), &y, k).unwrap();
            let upstream = fit_design(&p, cols, Some(scaler), &y, k).unwrap();
            let (a, b) = (fused.coefficients(), upstream.coefficients());
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let gap = a
                .iter()
                .zip(&b)
                .fold(0f64, |m, (u, v)| m.max((u - v).abs()));
            assert!(
                scale > 0.1 && gap <= 1e-5 * scale,
                "k={k}: gap {gap}, scale {scale}"
            );
            assert!(fused.converged() && upstream.converged());
        }
    }

    /// [`StopTest::ScikitLearn`] is scikit-learn's test: the fit ends at an iterate where the
    /// largest absolute component of the summed objective's gradient (weights and intercept) is at
    /// most `tol·n`, while the L2 norm there is still above it, so the default L2 rule runs more
    /// iterations; and it takes the direct path where the default goes to row space (n ≤ d/2).
    /// The gradient is computed here from the fitted layer.
    #[test]
    fn scikit_learn_stop_test_bounds_the_max_abs_gradient() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (n, d, tol) = (120, 300, 1e-3);
        let y: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            let base: f32 = rng.random::<f32>().powi(3);
            base + if j % 5 == y[i] { 0.3 } else { 0.0 }
        });
        let fit = |stop| {
            let p = LogisticParams {
                tol,
                stop,
                ..Default::default()
            };
            fit_logistic(&p, x.view(), &y, 2).expect("fit")
        };
        let (sk, l2) = (fit(StopTest::ScikitLearn), fit(StopTest::SummedL2));
        let Fitted::Binary(m) = &sk.fitted else {
            panic!("scikit-learn's test must take the direct path");
        };
        let pos = m.labels().pos.class;
        assert!(matches!(l2.fitted, Fitted::Linear { .. }), "row space");
        assert!(sk.converged() && l2.converged());
        // ∇ of Σ logloss + α/2‖w‖² (α = 1) for the sigmoid of the positive class `pos`:
        // Xᵀ(p − t) + w, and Σ(p − t) for the intercept.
        let (w, b) = sk.linear_layer();
        let x64 = x.mapv(f64::from);
        let z = x64.dot(&w.column(pos)) + b[pos];
        let r = Array1::from_shape_fn(n, |i| {
            1.0 / (1.0 + (-z[i]).exp()) - f64::from(u8::from(y[i] == pos))
        });
        let mut g = x64.t().dot(&r) + w.column(pos);
        g.append(Axis(0), Array1::from_elem(1, r.sum()).view())
            .expect("append intercept");
        let (g_max, g_l2) = (g.iter().fold(0f64, |m, v| m.max(v.abs())), g.dot(&g).sqrt());
        let bound = tol * n as f64;
        assert!(g_max <= bound, "max |g| {g_max} > tol·n {bound}");
        assert!(
            g_l2 > bound,
            "L2 {g_l2} ≤ tol·n {bound}: the rules not told apart"
        );
        assert!(
            sk.n_iter() < l2.n_iter(),
            "iterations: scikit-learn's test {}, L2 {}",
            sk.n_iter(),
            l2.n_iter()
        );
    }

    /// `Σ -log p(y) + α/2 ‖w‖²` of `m` on `x`, `w` on the standardised design when `m` has a
    /// scaler: linfa's objective, through the model's exported layer.
    fn objective(m: &FittedLogistic, x: &Array2<f32>, y: &[usize], alpha: f64) -> f64 {
        let (w, b) = m.linear_layer();
        let p = softmax_rows(&(x.mapv(f64::from).dot(&w) + &b));
        let loss: f64 = y.iter().enumerate().map(|(i, &c)| -p[[i, c]].ln()).sum();
        let scale = match &m.scaler {
            Some(s) => s.std.clone(),
            None => Array1::ones(w.nrows()),
        };
        let norm: f64 = w
            .rows()
            .into_iter()
            .zip(&scale)
            .map(|(r, s)| r.mapv(|v| (v * s).powi(2)).sum())
            .sum();
        loss + alpha / 2.0 * norm
    }

    /// With fewer rows than features, the row-space fit (Gram factor, weights mapped back) is the
    /// direct fit: the same held-out probabilities to 1e-6 and the same objective value, for 2 and
    /// 3 classes, raw and standardised, at strong and weak penalties.
    #[test]
    fn row_space_fit_is_the_direct_fit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (n, n_val, d) = (60, 20, 500);
        let labels: Vec<usize> = (0..n + n_val).map(|i| i % 3).collect();
        // Non-negative, mostly small, a few class-tied columns: pool5-like rows.
        let x = Array2::from_shape_fn((n + n_val, d), |(i, j)| {
            let base: f32 = rng.random::<f32>().powi(3);
            base + if j % 7 == labels[i] { 0.4 } else { 0.0 }
        });
        let (x_fit, x_val) = (x.slice(ndarray::s![..n, ..]), x.slice(ndarray::s![n.., ..]));
        for k in [2, 3] {
            let y: Vec<usize> = labels[..n].iter().map(|&c| c % k).collect();
            for standardize in [false, true] {
                for c in [1e-3, 1.0, 100.0] {
                    let p = LogisticParams {
                        l2: LogisticParams::l2_from_sklearn_c(c),
                        standardize,
                        ..Default::default()
                    };
                    let scaler = standardize.then(|| Standardizer::fit(x_fit));
                    let fit = |path| {
                        let rows = design(x_fit, scaler.as_ref());
                        fit_design_by(&p, rows, scaler.clone(), &y, k, path).expect("fit")
                    };
                    let (direct, rows) = (fit(Path::Direct), fit(Path::RowSpace));
                    assert!(matches!(rows.fitted, Fitted::Linear { .. }));
                    assert!(matches!(
                        direct.fitted,
                        Fitted::Binary(_) | Fitted::Multi(_)
                    ));
                    assert_eq!(rows.n_features(), d);
                    let (a, b) = (direct.predict_proba(x_val), rows.predict_proba(x_val));
                    let gap = a
                        .iter()
                        .zip(&b)
                        .fold(0f32, |m, (u, v)| m.max((u - v).abs()));
                    assert!(gap <= 1e-6, "k={k} std={standardize} C={c}: gap {gap}");
                    let x_fit = x_fit.to_owned();
                    let (oa, ob) = (
                        objective(&direct, &x_fit, &y, p.l2),
                        objective(&rows, &x_fit, &y, p.l2),
                    );
                    assert!(
                        (oa - ob).abs() <= 1e-7 * oa.abs().max(1.0),
                        "k={k} std={standardize} C={c}: objective {oa} vs {ob}"
                    );
                    assert!(direct.converged() && rows.converged());
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
