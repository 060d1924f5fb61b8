//! Classification metrics as pure functions over slices: accuracy, log loss, confusion matrix, precision/recall.

/// Probability clip of [`log_loss`]: `f32::EPSILON`.
const EPS: f64 = f32::EPSILON as f64;

/// Fraction of positions where `y_true[i] == y_pred[i]`; 0 for empty input.
/// Panics if the lengths differ.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> f64 {
    assert_eq!(
        y_true.len(),
        y_pred.len(),
        "accuracy: {} labels vs {} predictions",
        y_true.len(),
        y_pred.len()
    );
    if y_true.is_empty() {
        return 0.0;
    }
    let hits = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    hits as f64 / y_true.len() as f64
}

/// Mean negative log-likelihood of the true class. `proba: (n, classes)` row-major;
/// probabilities are clipped to `[eps, 1 - eps]` with `eps = f32::EPSILON` (scikit-learn's
/// `finfo(float32).eps` for float32 input), so a confident mistake costs `ln(1/eps) ≈ 15.9`
/// instead of infinity. 0 for empty input.
pub fn log_loss(y_true: &[usize], proba: &[f32], classes: usize) -> f64 {
    assert_eq!(
        proba.len(),
        y_true.len() * classes,
        "log_loss: proba is not (n, classes)"
    );
    if y_true.is_empty() {
        return 0.0;
    }
    let total: f64 = y_true
        .iter()
        .enumerate()
        .map(|(i, &y)| -f64::from(proba[i * classes + y]).clamp(EPS, 1.0 - EPS).ln())
        .sum();
    total / y_true.len() as f64
}

/// Index of the largest value of each row of `scores: (n, classes)` row-major (first on ties).
pub fn argmax_rows(scores: &[f32], classes: usize) -> Vec<usize> {
    assert!(
        classes > 0 && scores.len().is_multiple_of(classes),
        "argmax_rows: not (n, {classes})"
    );
    scores
        .chunks_exact(classes)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// `cm[true][pred]` counts for `classes` classes. Panics on a label `>= classes`.
pub fn confusion_matrix(y_true: &[usize], y_pred: &[usize], classes: usize) -> Vec<Vec<usize>> {
    assert_eq!(
        y_true.len(),
        y_pred.len(),
        "confusion_matrix: lengths differ"
    );
    let mut cm = vec![vec![0usize; classes]; classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        assert!(
            t < classes && p < classes,
            "confusion_matrix: label {t}/{p} >= {classes}"
        );
        cm[t][p] += 1;
    }
    cm
}

/// Per class `(precision, recall)` from a confusion matrix; 0 where the denominator is 0.
pub fn precision_recall(cm: &[Vec<usize>]) -> Vec<(f64, f64)> {
    let c = cm.len();
    (0..c)
        .map(|k| {
            let tp = cm[k][k] as f64;
            let predicted: usize = (0..c).map(|t| cm[t][k]).sum();
            let actual: usize = cm[k].iter().sum();
            let p = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let r = if actual > 0 { tp / actual as f64 } else { 0.0 };
            (p, r)
        })
        .collect()
}

/// Test-time augmentation's average: row k of the result is the mean of the rows `groups[k]` of
/// `proba: (rows, classes)`. Returns `(groups.len(), classes)`; every group non-empty.
pub fn mean_over_groups(
    proba: ndarray::ArrayView2<f32>,
    groups: &[Vec<usize>],
) -> ndarray::Array2<f32> {
    let c = proba.ncols();
    let mut out = ndarray::Array2::<f32>::zeros((groups.len(), c));
    for (mut o, g) in out.rows_mut().into_iter().zip(groups) {
        assert!(!g.is_empty(), "mean_over_groups: an empty group");
        let mut sum = vec![0f64; c];
        for &r in g {
            for (s, &p) in sum.iter_mut().zip(proba.row(r)) {
                *s += f64::from(p);
            }
        }
        for (o, s) in o.iter_mut().zip(sum) {
            *o = (s / g.len() as f64) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_example() {
        let t = [0, 0, 1, 1, 1];
        let p = [0, 1, 1, 1, 0];
        assert!((accuracy(&t, &p) - 0.6).abs() < 1e-12);
        let cm = confusion_matrix(&t, &p, 2);
        assert_eq!(cm, vec![vec![1, 1], vec![1, 2]]);
        let pr = precision_recall(&cm);
        assert!((pr[1].0 - 2.0 / 3.0).abs() < 1e-12 && (pr[1].1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((pr[0].0 - 0.5).abs() < 1e-12 && (pr[0].1 - 0.5).abs() < 1e-12);
        let proba = [0.5f32, 0.5, 0.0, 1.0];
        assert!((log_loss(&[0, 0], &proba, 2) - (2f64.ln() - EPS.ln()) / 2.0).abs() < 1e-6);
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.7, 0.3], 2), vec![1, 0]);
    }
}
