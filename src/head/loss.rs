//! Softmax cross-entropy from logits, computed with log-sum-exp, returning the loss and its gradient together.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// Mean softmax cross-entropy over a batch, and the gradient with respect to the logits.
///
/// Shapes: `logits: (batch, classes)`, `y: (batch,)` with every label `< classes`,
/// `dlogits: (batch, classes)` is overwritten with `(softmax(logits) - onehot(y)) / batch`.
/// Each row is shifted by its maximum before `exp` (log-sum-exp), so logits of any size are safe.
/// Returns `(mean loss, number of rows whose argmax equals the label)`; the loss is summed in f64.
/// Panics if a label is out of range (labels are checked at the `train` boundary).
pub fn softmax_cross_entropy(
    logits: ArrayView2<f32>,
    y: &[usize],
    mut dlogits: ArrayViewMut2<f32>,
) -> (f64, usize) {
    let (batch, classes) = logits.dim();
    assert_eq!(
        y.len(),
        batch,
        "softmax_cross_entropy: {} labels for {batch} rows",
        y.len()
    );
    assert_eq!(
        dlogits.dim(),
        (batch, classes),
        "softmax_cross_entropy: dlogits shape"
    );
    let inv_batch = 1.0 / batch.max(1) as f32;
    let mut total = 0.0f64;
    let mut correct = 0usize;
    for ((row, mut drow), &label) in logits
        .axis_iter(Axis(0))
        .zip(dlogits.axis_iter_mut(Axis(0)))
        .zip(y)
    {
        assert!(
            label < classes,
            "label {label} out of range for {classes} classes"
        );
        let (mut arg, mut max) = (0usize, f32::NEG_INFINITY);
        for (j, &z) in row.iter().enumerate() {
            if z > max {
                max = z;
                arg = j;
            }
        }
        correct += usize::from(arg == label);
        let mut sum = 0.0f32;
        for (d, &z) in drow.iter_mut().zip(row.iter()) {
            let e = (z - max).exp();
            *d = e;
            sum += e;
        }
        let lse = max + sum.ln();
        total += f64::from(lse - row[label]);
        let scale = inv_batch / sum;
        for d in drow.iter_mut() {
            *d *= scale;
        }
        drow[label] -= inv_batch;
    }
    (total / batch.max(1) as f64, correct)
}

/// Row-wise softmax in place: `z: (batch, classes)` becomes probabilities (max-shifted `exp`).
pub fn softmax_in_place(mut z: ArrayViewMut2<f32>) {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.mapv_inplace(|v| v / sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn huge_logits_stay_finite() {
        let z = array![[1000.0f32, 0.0], [-1000.0, 1000.0]];
        let mut d = Array2::zeros((2, 2));
        let (loss, correct) = softmax_cross_entropy(z.view(), &[0, 0], d.view_mut());
        assert!((loss - 1000.0).abs() < 1e-3, "loss {loss}");
        assert_eq!(correct, 1);
        assert!(d.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn uniform_logits_give_log_classes() {
        let z = Array2::<f32>::zeros((4, 3));
        let mut d = Array2::zeros((4, 3));
        let (loss, _) = softmax_cross_entropy(z.view(), &[0, 1, 2, 0], d.view_mut());
        assert!((loss - 3f64.ln()).abs() < 1e-6);
        // each row of the gradient sums to zero
        for row in d.rows() {
            assert!(row.sum().abs() < 1e-7);
        }
    }
}
