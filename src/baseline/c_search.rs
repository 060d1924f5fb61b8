//! Choosing the logistic regression's `C` by cross-validation on the training rows only, as
//! scikit-learn's `LogisticRegressionCV` does: the split that is reported is never seen here.
//!
//! - **Folds.** Stratified k-fold (default 5, `LogisticRegressionCV(cv=5)`) when the train split has
//!   at most [`CSearchParams::kfold_max_rows`] rows; above that, one stratified hold-out of
//!   [`CSearchParams::holdout_fraction`] (k fits per `C` would cost more than they tell). Seeded.
//! - **Every fit converges at its own `C`.** Each (C, fold) fit starts from zero, as the refit does,
//!   so a warm start can never meet the gradient tolerance before the fit has moved (a warm-started
//!   path did exactly that: from C = 10 up every fit ran 0 iterations and scored the C = 10 model).
//!   The iterations of every fit are reported, and the report flags any 0 (the starting point
//!   already met the tolerance: only possible when the data's own gradient at zero is that small).
//! - **Grid.** One `C` per decade in ascending order from `10^lo`, stopping once the mean
//!   validation log loss has not improved for `patience` decades, then `steps_per_decade` steps per
//!   decade within `fine_half_width` decades of the best coarse `C`.
//! - **Choice** ([`CRule`]). By default **anchored at scikit-learn's `C = 1`**: `C = 1` is always
//!   scored, and the search leaves it only for a `C` whose mean accuracy over the folds beats
//!   `C = 1`'s by more than one standard error (that `C`'s `sd / √folds`; with one hold-out the
//!   binomial `√(a(1 − a)/n)`); among the most accurate `C`s, ties go to the lowest mean log loss,
//!   then the smaller `C`. Why not the plain one-standard-error rule: on four sets and the two of
//!   the issue that asked for it, the curves were flat within noise over several decades, the rule
//!   then took the strongest penalty within reach, and that lost up to 1.5 pt of held-out accuracy
//!   to `C = 1` while never gaining (docs/BENCHMARKS.md section 14). [`CRule::OneStandardError`]
//!   keeps that rule (Hastie et al., *Elements of Statistical Learning* §7.10: among the `C`s
//!   whose mean log loss is within one standard error of the lowest mean, the smallest `C`; with
//!   one hold-out the lowest loss, ties to the smaller `C`).
//! - **Features.** As [`LogisticParams::standardize`] says (raw by default); when standardising,
//!   once with the statistics of all the rows given (no labels are involved), which is also the
//!   scaler of the refit on all rows; the search and the refit therefore fit the same design's rows.
//!
//! - **Row space.** With at most half as many rows as features (`row_space::pays` on all the
//!   rows given), every fit runs exactly in the fit rows' span: one Gram matrix `K = X·Xᵀ` of all
//!   rows, one pivoted Cholesky factor of each fold's fit block (shared by every `C`), and each
//!   fold's validation logits from its block `K[val, fit]`: the same objective and the same
//!   L-BFGS path as on `X`, at `rank/d` of the cost per step.
//!
//! Deterministic: fixed folds, cold starts, and the patched linfa objective sums in a fixed order,
//! so the same rows give the same choice bit for bit whatever the thread count.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::logistic::{check_fit, fit_design_by, fit_factor, FittedLogistic, LogisticParams, Path};
use super::row_space::{gram, Factor};
use super::standardize::{design, Standardizer};
use super::BaselineError;
use crate::metrics;

/// Settings of [`search_c`]; the defaults are `compare-baselines`'.
#[derive(Debug, Clone, PartialEq)]
pub struct CSearchParams {
    /// Folds of the cross-validation. Default 5 (`LogisticRegressionCV`'s `cv=5`). Must be ≥ 2.
    pub folds: usize,
    /// Train rows up to which k-fold is used; above, one hold-out. Default 10,000.
    pub kfold_max_rows: usize,
    /// Fraction of each class's rows held out when the train split is larger than
    /// `kfold_max_rows`. Default 0.2.
    pub holdout_fraction: f64,
    /// Seed of the folds' shuffle. Default 0.
    pub seed: u64,
    /// Coarse grid `10^lo ..= 10^hi`, one per decade. Default (-6, 6), CLIP's range.
    pub decades: (i32, i32),
    /// Coarse decades in a row without a better mean loss before the sweep stops. Default 2.
    pub patience: usize,
    /// Fine grid density. Default 4.
    pub steps_per_decade: u32,
    /// Fine grid half width around the best coarse `C`, in decades. Default 1.
    pub fine_half_width: f64,
    /// How the `C` is chosen from the scored curve. Default [`CRule::default`].
    pub rule: CRule,
}

/// How [`search_c`] chooses its `C` from the scored curve (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CRule {
    /// Keep `c` (always scored) unless a `C`'s mean accuracy beats it by more than one standard
    /// error; then the most accurate `C` (ties: lowest mean log loss, then the smaller `C`).
    Anchored {
        /// The anchor, scikit-learn's `C`. Default 1 (`LogisticRegression()`'s).
        c: f64,
    },
    /// The smallest `C` whose mean log loss is within one standard error of the lowest.
    OneStandardError,
}

impl Default for CRule {
    fn default() -> Self {
        CRule::Anchored { c: 1.0 }
    }
}

impl CRule {
    /// One line for reports: how the `C` was chosen.
    pub fn describe(&self) -> String {
        match self {
            CRule::Anchored { c } => format!(
                "C = {c} (scikit-learn's default) unless a C's mean accuracy beats it by more \
                 than one standard error"
            ),
            CRule::OneStandardError => "the smallest C whose mean log loss is within one \
                                        standard error of the lowest"
                .into(),
        }
    }
}

impl Default for CSearchParams {
    fn default() -> Self {
        Self {
            folds: 5,
            kfold_max_rows: 10_000,
            holdout_fraction: 0.2,
            seed: 0,
            decades: (-6, 6),
            patience: 2,
            steps_per_decade: 4,
            fine_half_width: 1.0,
            rule: CRule::default(),
        }
    }
}

/// One `C`: its scores over the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CPoint {
    /// scikit-learn's `C` (linfa `alpha = 1 / C`).
    pub c: f64,
    /// Mean validation accuracy over the folds.
    pub val_accuracy: f64,
    /// Standard deviation of the folds' accuracies (0 with one hold-out).
    pub val_accuracy_sd: f64,
    /// Mean validation log loss over the folds (the criterion).
    pub val_log_loss: f64,
    /// Standard deviation of the folds' log losses (0 with one hold-out).
    pub val_log_loss_sd: f64,
    /// L-BFGS iterations of each fold's fit, in fold order.
    pub n_iter: Vec<u64>,
    /// Whether every fold's fit met its tolerance.
    pub converged: bool,
    /// Wall seconds of this `C`'s fits and scoring, all folds.
    pub fit_seconds: f64,
}

/// What [`search_c`] tried and chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CSearch {
    /// The `C` of [`CSearch::rule`] (module doc).
    pub chosen_c: f64,
    /// The rule that chose `chosen_c`.
    pub rule: CRule,
    /// The `C` with the lowest mean validation log loss (equal to `chosen_c` or larger).
    pub best_c: f64,
    /// Every fitted `C`, ascending.
    pub curve: Vec<CPoint>,
    /// Folds (1 = one hold-out).
    pub folds: usize,
    /// Rows scored per fold (the largest fold).
    pub n_val: usize,
    /// Rows fitted per fold (the smallest fit set).
    pub n_fit: usize,
    /// Wall time of the whole search (folds, standardisation, every fit and score).
    pub seconds: f64,
}

impl CSearch {
    /// How the folds were made, for reports: "5-fold" or "one 20% hold-out".
    pub fn scheme(&self) -> String {
        if self.folds > 1 {
            format!("stratified {}-fold cross-validation", self.folds)
        } else {
            format!("one stratified hold-out of {} rows", self.n_val)
        }
    }
}

/// Searches `C` for `p` (its `l2` ignored) on `x: (n, d)`, `y: (n,)` in `0..n_classes` (module doc).
///
/// Errors: those of [`super::fit_logistic`], invalid search settings, or a fold without rows to
/// score or with fewer than two classes to fit.
pub fn search_c(
    p: &LogisticParams,
    s: &CSearchParams,
    x: ArrayView2<f32>,
    y: &[usize],
    n_classes: usize,
) -> Result<CSearch, BaselineError> {
    search_c_by(p, s, x, y, n_classes, Path::Auto)
}

/// [`search_c`] with its fits by `path` (`Auto`: row space when it pays on all of `x`'s rows).
fn search_c_by(
    p: &LogisticParams,
    s: &CSearchParams,
    x: ArrayView2<f32>,
    y: &[usize],
    n_classes: usize,
    path: Path,
) -> Result<CSearch, BaselineError> {
    let t0 = Instant::now();
    check_fit(p, x, y, n_classes)?;
    check_search(s)?;
    let folds = if y.len() <= s.kfold_max_rows {
        stratified_folds(y, n_classes, s.folds, s.seed)
    } else {
        vec![stratified_holdout(y, n_classes, s.holdout_fraction, s.seed)]
    };
    for (fit, val) in &folds {
        if val.is_empty() || fit.iter().all(|&i| y[i] == y[fit[0]]) {
            return Err(BaselineError::InvalidParam {
                name: "folds",
                value: s.folds as f64,
                expected: "too few rows: every fold needs rows to score and two classes to fit",
            });
        }
    }
    let scaler = p.standardize.then(|| Standardizer::fit(x));
    let all = design(x, scaler.as_ref());
    // Row space: each fold's Gram factor of its fit rows and its val rows' Gram columns of the
    // pivots, once for every C.
    let kernel: Option<Vec<(Factor, Array2<f64>)>> = path
        .search_row_space(all.nrows(), all.ncols(), p.stop)
        .then(|| {
            let k = gram(all.view());
            folds
                .iter()
                .map(|(fit, val)| {
                    let factor = Factor::new(k.select(Axis(0), fit).select(Axis(1), fit).view());
                    let cols: Vec<usize> = factor.pivots.iter().map(|&j| fit[j]).collect();
                    let k_val = k.select(Axis(0), val).select(Axis(1), &cols);
                    (factor, k_val)
                })
                .collect()
        });

    let fit_at = |log_c: f64| -> Result<CPoint, BaselineError> {
        let c = 10f64.powf(log_c);
        let params = LogisticParams {
            l2: LogisticParams::l2_from_sklearn_c(c),
            ..p.clone()
        };
        let t = Instant::now();
        let (mut acc, mut loss, mut n_iter, mut converged) = (vec![], vec![], vec![], true);
        for (f, (fit, val)) in folds.iter().enumerate() {
            let y_fit: Vec<usize> = fit.iter().map(|&i| y[i]).collect();
            let y_val: Vec<usize> = val.iter().map(|&i| y[i]).collect();
            let (a, l, m) = match &kernel {
                Some(kernel) => {
                    let (factor, k_val) = &kernel[f];
                    let m = fit_factor(&params, factor, &y_fit, n_classes)?;
                    let (a, l) = score(&m, k_val, &y_val, n_classes);
                    (a, l, m)
                }
                None => {
                    let m = fit_design_by(
                        &params,
                        all.select(Axis(0), fit),
                        scaler.clone(),
                        &y_fit,
                        n_classes,
                        Path::Direct,
                    )?;
                    let (a, l) = score(&m, &all.select(Axis(0), val), &y_val, n_classes);
                    (a, l, m)
                }
            };
            acc.push(a);
            loss.push(l);
            n_iter.push(m.n_iter());
            converged &= m.converged();
        }
        let (val_accuracy, val_accuracy_sd) = mean_sd(&acc);
        let (val_log_loss, val_log_loss_sd) = mean_sd(&loss);
        Ok(CPoint {
            c,
            val_accuracy,
            val_accuracy_sd,
            val_log_loss,
            val_log_loss_sd,
            n_iter,
            converged,
            fit_seconds: t.elapsed().as_secs_f64(),
        })
    };

    // (log10 C, point), in the order fitted.
    let mut done: Vec<(f64, CPoint)> = Vec::new();
    let mut best: Option<(f64, f64)> = None; // (log10 C, mean loss)
    let mut stale = 0;
    for e in s.decades.0..=s.decades.1 {
        let point = fit_at(f64::from(e))?;
        let loss = point.val_log_loss;
        done.push((f64::from(e), point));
        if best.is_none_or(|(_, b)| loss < b) {
            best = Some((f64::from(e), loss));
            stale = 0;
        } else {
            stale += 1;
            if stale >= s.patience {
                break;
            }
        }
    }
    let (centre, _) = best.expect("at least one coarse decade");
    let step = 1.0 / f64::from(s.steps_per_decade);
    let half = (s.fine_half_width / step).round() as i64;
    for j in -half..=half {
        let log_c = centre + j as f64 * step;
        if done.iter().any(|(l, _)| (l - log_c).abs() < 1e-9) {
            continue;
        }
        let point = fit_at(log_c)?;
        done.push((log_c, point));
    }
    if let CRule::Anchored { c } = s.rule {
        let log_c = c.log10();
        if !done.iter().any(|(l, _)| (l - log_c).abs() < 1e-9) {
            done.push((log_c, fit_at(log_c)?));
        }
    }
    let mut curve: Vec<CPoint> = done.into_iter().map(|(_, p)| p).collect();
    curve.sort_by(|a, b| a.c.total_cmp(&b.c));
    let n_val = folds.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let (best_c, chosen_c) = match s.rule {
        CRule::Anchored { c } => (
            lowest_loss(&curve).c,
            anchored(&curve, folds.len(), n_val, c),
        ),
        CRule::OneStandardError => one_standard_error(&curve, folds.len()),
    };
    Ok(CSearch {
        chosen_c,
        rule: s.rule,
        best_c,
        curve,
        folds: folds.len(),
        n_val,
        n_fit: folds.iter().map(|(f, _)| f.len()).min().unwrap_or(0),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The point with the lowest mean log loss of an ascending `curve` (the smaller `C` on ties).
fn lowest_loss(curve: &[CPoint]) -> &CPoint {
    curve
        .iter()
        .fold(None::<&CPoint>, |b, q| match b {
            Some(b) if b.val_log_loss <= q.val_log_loss => Some(b),
            _ => Some(q),
        })
        .expect("a non-empty curve")
}

/// `(best C, chosen C)` of an ascending `curve` scored over `folds` folds: best = lowest mean log
/// loss (the first, i.e. smallest, C on ties); chosen = the smallest C whose mean is within one
/// standard error (`sd / √folds`) of the best's. One fold has no standard error: chosen = best.
fn one_standard_error(curve: &[CPoint], folds: usize) -> (f64, f64) {
    let best = lowest_loss(curve);
    let se = if folds > 1 {
        best.val_log_loss_sd / (folds as f64).sqrt()
    } else {
        0.0
    };
    let chosen = curve
        .iter()
        .find(|q| q.val_log_loss <= best.val_log_loss + se)
        .expect("best is within its own standard error");
    (best.c, chosen.c)
}

/// The `C` [`CRule::Anchored`] chooses from an ascending `curve` (which holds `anchor`) scored
/// over `folds` folds of at most `n_val` rows: the most accurate point (ties: lowest mean log
/// loss, then the smaller `C`) when its mean accuracy exceeds the anchor's by more than its
/// standard error (`sd / √folds`; one hold-out: `√(a(1 − a)/n_val)`), else `anchor`.
fn anchored(curve: &[CPoint], folds: usize, n_val: usize, anchor: f64) -> f64 {
    let Some(at) = curve.iter().find(|q| (q.c - anchor).abs() <= 1e-9 * anchor) else {
        return lowest_loss(curve).c;
    };
    let top = curve
        .iter()
        .fold(None::<&CPoint>, |b, q| match b {
            Some(b)
                if b.val_accuracy > q.val_accuracy
                    || (b.val_accuracy == q.val_accuracy && b.val_log_loss <= q.val_log_loss) =>
            {
                Some(b)
            }
            _ => Some(q),
        })
        .expect("a non-empty curve");
    let se = if folds > 1 {
        top.val_accuracy_sd / (folds as f64).sqrt()
    } else {
        let a = top.val_accuracy;
        (a * (1.0 - a) / n_val.max(1) as f64).sqrt()
    };
    if top.val_accuracy - at.val_accuracy > se + 1e-12 {
        top.c
    } else {
        at.c
    }
}

fn check_search(s: &CSearchParams) -> Result<(), BaselineError> {
    let bad = |name, value: f64, expected| {
        Err(BaselineError::InvalidParam {
            name,
            value,
            expected,
        })
    };
    if s.folds < 2 {
        return bad("folds", s.folds as f64, "expected at least 2 folds");
    }
    if !(s.holdout_fraction > 0.0 && s.holdout_fraction < 1.0) {
        return bad(
            "holdout_fraction",
            s.holdout_fraction,
            "expected a fraction in (0, 1)",
        );
    }
    if s.steps_per_decade == 0 {
        return bad("steps_per_decade", 0.0, "expected at least 1");
    }
    if s.decades.0 > s.decades.1 {
        return bad(
            "decades",
            f64::from(s.decades.0),
            "expected lo <= hi in (lo, hi)",
        );
    }
    Ok(())
}

/// Mean and sample standard deviation (`n - 1`; 0 for one value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Validation `(accuracy, log loss)` of `m` on the prepared design `d_val: (n_val, d)`.
fn score(m: &FittedLogistic, d_val: &Array2<f64>, y_val: &[usize], n_classes: usize) -> (f64, f64) {
    let proba = m.predict_design(d_val);
    let flat: Vec<f32> = proba.iter().copied().collect();
    let pred = metrics::argmax_rows(&flat, n_classes);
    (
        metrics::accuracy(y_val, &pred),
        metrics::log_loss(y_val, &flat, n_classes),
    )
}

/// Each class's rows, shuffled with `seed` (one generator, classes in order).
fn shuffled_by_class(y: &[usize], n_classes: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n_classes)
        .map(|class| {
            let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
            rows.shuffle(&mut rng);
            rows
        })
        .collect()
}

/// `k` stratified folds as `(fit, val)` row indices, each sorted: each class's shuffled rows are
/// dealt round-robin to the folds, so fold sizes differ by at most one row per class.
fn stratified_folds(
    y: &[usize],
    n_classes: usize,
    k: usize,
    seed: u64,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut fold_of = vec![0usize; y.len()];
    for rows in shuffled_by_class(y, n_classes, seed) {
        for (j, &i) in rows.iter().enumerate() {
            fold_of[i] = j % k;
        }
    }
    (0..k)
        .map(|f| (0..y.len()).partition(|&i| fold_of[i] != f))
        .collect()
}

/// One stratified hold-out `(fit, val)`: `round(fraction · count)` of each class's shuffled rows
/// (at most `count - 1`, so every present class stays in fit) go to val.
fn stratified_holdout(
    y: &[usize],
    n_classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let (mut fit, mut val) = (Vec::new(), Vec::new());
    for rows in shuffled_by_class(y, n_classes, seed) {
        let k = ((fraction * rows.len() as f64).round() as usize).min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..k]);
        fit.extend_from_slice(&rows[k..]);
    }
    fit.sort_unstable();
    val.sort_unstable();
    (fit, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_is_stratified_disjoint_and_complete() {
        let y: Vec<usize> = (0..50).map(|i| usize::from(i % 5 == 0)).collect();
        let (fit, val) = stratified_holdout(&y, 2, 0.2, 3);
        assert_eq!(fit.len() + val.len(), 50);
        assert!(fit.iter().all(|i| !val.contains(i)));
        let ones = val.iter().filter(|&&i| y[i] == 1).count();
        assert_eq!((val.len(), ones), (10, 2));
    }

    #[test]
    fn folds_partition_the_rows_and_are_stratified() {
        let y: Vec<usize> = (0..53).map(|i| usize::from(i % 4 == 0)).collect();
        let folds = stratified_folds(&y, 2, 5, 7);
        let mut seen = vec![0; y.len()];
        for (fit, val) in &folds {
            assert_eq!(fit.len() + val.len(), y.len());
            for &i in val {
                seen[i] += 1;
            }
            let ones = val.iter().filter(|&&i| y[i] == 1).count();
            assert!((2..=3).contains(&ones), "{ones} positives in a fold");
        }
        assert!(seen.iter().all(|&s| s == 1), "each row scored exactly once");
    }

    /// tests/it/baseline.rs's `blobs`: Gaussian blobs, class `c` centred at `sep` on axis `c`.
    fn blobs(seed: u64, n: usize, d: usize, sep: f32, k: usize) -> (Array2<f32>, Vec<usize>) {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let y: Vec<usize> = (0..n).map(|i| i % k).collect();
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            let z = ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32;
            if j == y[i] {
                sep + z
            } else {
                z
            }
        });
        (x, y)
    }

    /// On the data of tests/it/baseline.rs's C-search tests (5-fold and one hold-out, rows
    /// outnumbering features, so the Gram factor is rank-deficient and stops at the feature
    /// count), the row-space search scores every C as the direct one and chooses the same C, raw
    /// and standardised.
    #[test]
    fn row_space_search_chooses_the_direct_c() {
        let cases = [
            (blobs(5, 150, 60, 1.2, 3), 3, CSearchParams::default()),
            (
                blobs(6, 100, 20, 1.5, 2),
                2,
                CSearchParams {
                    kfold_max_rows: 99,
                    ..CSearchParams::default()
                },
            ),
        ];
        for ((x, y), k, s) in cases {
            for standardize in [false, true] {
                let p = LogisticParams {
                    standardize,
                    ..Default::default()
                };
                let run = |path| search_c_by(&p, &s, x.view(), &y, k, path).expect("search");
                let (direct, rows) = (run(Path::Direct), run(Path::RowSpace));
                assert_eq!(
                    (direct.chosen_c, direct.best_c),
                    (rows.chosen_c, rows.best_c),
                    "std={standardize}"
                );
                assert_eq!(direct.curve.len(), rows.curve.len());
                for (a, b) in direct.curve.iter().zip(&rows.curve) {
                    assert_eq!(a.c, b.c);
                    assert!(
                        (a.val_log_loss - b.val_log_loss).abs() <= 1e-6 * a.val_log_loss,
                        "std={standardize} C={}: {} vs {}",
                        a.c,
                        a.val_log_loss,
                        b.val_log_loss
                    );
                    assert_eq!(a.val_accuracy, b.val_accuracy, "C={}", a.c);
                }
            }
        }
    }

    fn point(c: f64, loss: f64, sd: f64) -> CPoint {
        CPoint {
            c,
            val_accuracy: 0.9,
            val_accuracy_sd: 0.0,
            val_log_loss: loss,
            val_log_loss_sd: sd,
            n_iter: vec![3; 4],
            converged: true,
            fit_seconds: 0.0,
        }
    }

    /// The one-standard-error rule picks the strongest penalty within one SE of the best mean;
    /// exact ties go to the smaller C, and one fold means the plain minimum.
    #[test]
    fn one_standard_error_rule() {
        // SE of the best (C = 1) = 0.04 / √4 = 0.02: C = 0.1 (0.215) is within, C = 0.01 is not.
        let curve = [
            point(0.01, 0.30, 0.05),
            point(0.1, 0.215, 0.05),
            point(1.0, 0.20, 0.04),
            point(10.0, 0.25, 0.05),
        ];
        assert_eq!(one_standard_error(&curve, 4), (1.0, 0.1));
        assert_eq!(one_standard_error(&curve, 1), (1.0, 1.0));
        let tie = [point(0.1, 0.2, 0.0), point(1.0, 0.2, 0.0)];
        assert_eq!(one_standard_error(&tie, 5), (0.1, 0.1));
    }

    fn scored(c: f64, acc: f64, acc_sd: f64, loss: f64) -> CPoint {
        CPoint {
            val_accuracy: acc,
            val_accuracy_sd: acc_sd,
            ..point(c, loss, 0.01)
        }
    }

    /// The anchored rule keeps C = 1 unless a C's mean accuracy beats it by more than that C's
    /// standard error; the most accurate C's ties go to the lower loss, then the smaller C.
    #[test]
    fn anchored_rule_leaves_the_anchor_only_on_evidence() {
        // Flat within noise (the catsdogs re-split's shape): 0.980 vs 0.979, SE 0.0128/√5.
        let flat = [
            scored(1e-5, 0.980, 0.0128, 0.07),
            scored(1e-4, 0.979, 0.0105, 0.056),
            scored(1.0, 0.979, 0.0120, 0.09),
        ];
        assert_eq!(anchored(&flat, 5, 160, 1.0), 1.0);
        // A clear gain: 0.95 vs 0.90 with SE 0.01/√5.
        let clear = [
            scored(0.01, 0.95, 0.01, 0.2),
            scored(0.1, 0.95, 0.01, 0.15),
            scored(1.0, 0.90, 0.02, 0.3),
        ];
        assert_eq!(anchored(&clear, 5, 160, 1.0), 0.1);
        // One hold-out of 100 rows: SE √(.95·.05/100) ≈ 0.022; 0.95 vs 0.94 stays, vs 0.90 moves.
        let near = [scored(0.1, 0.95, 0.0, 0.1), scored(1.0, 0.94, 0.0, 0.2)];
        assert_eq!(anchored(&near, 1, 100, 1.0), 1.0);
        let far = [scored(0.1, 0.95, 0.0, 0.1), scored(1.0, 0.90, 0.0, 0.2)];
        assert_eq!(anchored(&far, 1, 100, 1.0), 0.1);
    }
}
