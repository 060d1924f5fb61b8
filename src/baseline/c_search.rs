//! Choosing the logistic regression's `C` as the linear-probe protocol does (CLIP, appendix A.3):
//! L-BFGS fits over a log grid of `C`, each scored on a validation split carved from the training
//! rows, the path warm-started. The caller refits on all training rows at the chosen `C`; the split
//! it reports accuracy on is never seen here.
//!
//! Coarse to fine: one `C` per decade in ascending order (each fit warm-started from the previous),
//! stopping once the validation score has not improved for `patience` decades, then
//! `steps_per_decade` steps per decade within `fine_half_width` decades of the best coarse `C`, each
//! warm-started from the nearest fitted `C`. Best = lowest validation log loss, ties broken by
//! higher accuracy: on a split of a few hundred rows accuracy moves in steps of several tenths of a
//! point and ties over decades of `C` (measured on catsdogs, docs/BENCHMARKS.md), where log loss
//! still ranks them.

use std::time::Instant;

use ndarray::{ArrayD, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::logistic::{check_fit, fit_design, FittedLogistic, LogisticParams};
use super::standardize::{design, Standardizer};
use super::BaselineError;
use crate::metrics;

/// Settings of [`search_c`]; the defaults are `compare-baselines`'.
#[derive(Debug, Clone, PartialEq)]
pub struct CSearchParams {
    /// Fraction of each class's training rows held out to score each `C`. Default 0.2.
    pub val_fraction: f64,
    /// Seed of the hold-out's shuffle. Default 0.
    pub seed: u64,
    /// Coarse grid `10^lo ..= 10^hi`, one per decade. Default (-6, 6), CLIP's range.
    pub decades: (i32, i32),
    /// Coarse decades in a row without a better validation score before the sweep stops. Default 2.
    pub patience: usize,
    /// Fine grid density. Default 8 (CLIP's 96 steps over 12 decades).
    pub steps_per_decade: u32,
    /// Fine grid half width around the best coarse `C`, in decades. Default 1.
    pub fine_half_width: f64,
}

impl Default for CSearchParams {
    fn default() -> Self {
        Self {
            val_fraction: 0.2,
            seed: 0,
            decades: (-6, 6),
            patience: 2,
            steps_per_decade: 8,
            fine_half_width: 1.0,
        }
    }
}

/// One fitted `C` and its validation score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CPoint {
    pub c: f64,
    pub val_accuracy: f64,
    pub val_log_loss: f64,
    pub n_iter: u64,
    pub converged: bool,
    pub fit_seconds: f64,
}

/// What [`search_c`] tried and chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CSearch {
    pub chosen_c: f64,
    /// Every fitted `C`, ascending.
    pub curve: Vec<CPoint>,
    /// Rows the fits trained on and were scored on.
    pub n_fit: usize,
    pub n_val: usize,
    /// Wall time of the whole search (split, standardisation, every fit and score).
    pub seconds: f64,
}

impl CPoint {
    /// Better validation score: lower log loss, then higher accuracy.
    fn beats(&self, other: &CPoint) -> bool {
        if self.val_log_loss != other.val_log_loss {
            return self.val_log_loss < other.val_log_loss;
        }
        self.val_accuracy > other.val_accuracy
    }
}

/// Searches `C` for `p` (its `l2` ignored) on `x: (n, d)`, `y: (n,)` in `0..n_classes`: fits on
/// a stratified `1 - val_fraction` of the rows, scores on the rest (module doc).
///
/// Errors: those of [`super::fit_logistic`], an invalid `val_fraction`, or a hold-out that leaves
/// fewer than two classes (or no rows) on either side.
pub fn search_c(
    p: &LogisticParams,
    s: &CSearchParams,
    x: ArrayView2<f32>,
    y: &[usize],
    n_classes: usize,
) -> Result<CSearch, BaselineError> {
    let t0 = Instant::now();
    check_fit(p, x, y, n_classes)?;
    if !(s.val_fraction > 0.0 && s.val_fraction < 1.0) || s.steps_per_decade == 0 {
        return Err(BaselineError::InvalidParam {
            name: "val_fraction",
            value: s.val_fraction,
            expected: "expected a fraction in (0, 1) and steps_per_decade >= 1",
        });
    }
    let (fit_rows, val_rows) = stratified_split(y, n_classes, s.val_fraction, s.seed);
    let y_fit: Vec<usize> = fit_rows.iter().map(|&i| y[i]).collect();
    let y_val: Vec<usize> = val_rows.iter().map(|&i| y[i]).collect();
    if val_rows.is_empty() || y_fit.iter().all(|&l| l == y_fit[0]) {
        return Err(BaselineError::InvalidParam {
            name: "val_fraction",
            value: s.val_fraction,
            expected: "a hold-out leaving rows to score and two classes to fit",
        });
    }
    let x_fit = x.select(Axis(0), &fit_rows);
    let scaler = p.standardize.then(|| Standardizer::fit(x_fit.view()));
    let d_fit = design(x_fit.view(), scaler.as_ref());
    let d_val = design(x.select(Axis(0), &val_rows).view(), scaler.as_ref());
    drop(x_fit);

    // Fitted points: (log10 C, score, parameters for warm starts).
    let mut done: Vec<(f64, CPoint, ArrayD<f64>)> = Vec::new();
    let fit_at = |log_c: f64, done: &mut Vec<(f64, CPoint, ArrayD<f64>)>| {
        let warm = done
            .iter()
            .min_by(|a, b| (a.0 - log_c).abs().total_cmp(&(b.0 - log_c).abs()))
            .map(|w| w.2.clone());
        let c = 10f64.powf(log_c);
        let params = LogisticParams {
            l2: LogisticParams::l2_from_sklearn_c(c),
            ..p.clone()
        };
        let t = Instant::now();
        let m = fit_design(
            &params,
            d_fit.clone(),
            scaler.clone(),
            &y_fit,
            n_classes,
            warm.as_ref(),
        )?;
        let fit_seconds = t.elapsed().as_secs_f64();
        let point = score(&m, &d_val, &y_val, n_classes, c, fit_seconds);
        done.push((log_c, point.clone(), m.warm_start()));
        Ok::<CPoint, BaselineError>(point)
    };

    let mut best: Option<(f64, CPoint)> = None;
    let mut stale = 0;
    for e in s.decades.0..=s.decades.1 {
        let point = fit_at(f64::from(e), &mut done)?;
        if best.as_ref().is_none_or(|(_, b)| point.beats(b)) {
            best = Some((f64::from(e), point));
            stale = 0;
        } else {
            stale += 1;
            if stale >= s.patience {
                break;
            }
        }
    }
    let (centre, _) = best.clone().expect("at least one coarse decade");
    let step = 1.0 / f64::from(s.steps_per_decade);
    let half = (s.fine_half_width / step).round() as i64;
    for j in -half..=half {
        let log_c = centre + j as f64 * step;
        if done.iter().any(|(l, _, _)| (l - log_c).abs() < 1e-9) {
            continue;
        }
        let point = fit_at(log_c, &mut done)?;
        if best.as_ref().is_none_or(|(_, b)| point.beats(b)) {
            best = Some((log_c, point));
        }
    }
    let mut curve: Vec<CPoint> = done.into_iter().map(|(_, p, _)| p).collect();
    curve.sort_by(|a, b| a.c.total_cmp(&b.c));
    Ok(CSearch {
        chosen_c: best.expect("fitted").1.c,
        curve,
        n_fit: fit_rows.len(),
        n_val: val_rows.len(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Validation accuracy and log loss of `m` on the prepared design `d_val`.
fn score(
    m: &FittedLogistic,
    d_val: &ndarray::Array2<f64>,
    y_val: &[usize],
    n_classes: usize,
    c: f64,
    fit_seconds: f64,
) -> CPoint {
    let proba = m.predict_design(d_val);
    let flat: Vec<f32> = proba.iter().copied().collect();
    let pred = metrics::argmax_rows(&flat, n_classes);
    CPoint {
        c,
        val_accuracy: metrics::accuracy(y_val, &pred),
        val_log_loss: metrics::log_loss(y_val, &flat, n_classes),
        n_iter: m.n_iter(),
        converged: m.converged(),
        fit_seconds,
    }
}

/// Row indices `(fit, val)`: `round(val_fraction · count)` of each class's rows, shuffled with
/// `seed`, go to val (at most `count - 1`, so every present class stays in fit).
fn stratified_split(
    y: &[usize],
    n_classes: usize,
    val_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut fit, mut val) = (Vec::new(), Vec::new());
    for class in 0..n_classes {
        let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rows.shuffle(&mut rng);
        let k =
            ((val_fraction * rows.len() as f64).round() as usize).min(rows.len().saturating_sub(1));
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
    fn split_is_stratified_disjoint_and_complete() {
        let y: Vec<usize> = (0..50).map(|i| usize::from(i % 5 == 0)).collect();
        let (fit, val) = stratified_split(&y, 2, 0.2, 3);
        assert_eq!(fit.len() + val.len(), 50);
        assert!(fit.iter().all(|i| !val.contains(i)));
        let ones = val.iter().filter(|&&i| y[i] == 1).count();
        assert_eq!((val.len(), ones), (10, 2));
    }
}
