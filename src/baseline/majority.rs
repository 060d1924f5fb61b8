//! Majority-class baseline: predicts the training class frequencies for every row.

use ndarray::{Array2, ArrayView2};

use super::{check_labels, BaselineError, Classifier};

/// Predicts the training-set class prior for every input, like scikit-learn's
/// `DummyClassifier(strategy="prior")`: the arg-max is the majority class (lowest index on ties), so
/// accuracy is the majority share of the evaluated set, and log loss is the cross-entropy against the
/// prior instead of the clipped `-ln(1e-15)` a one-hot prediction would give.
#[derive(Debug, Clone, PartialEq)]
pub struct Majority {
    priors: Vec<f32>,
    majority: usize,
}

impl Majority {
    /// Training class frequencies, `(n_classes,)`, summing to 1.
    pub fn priors(&self) -> &[f32] {
        &self.priors
    }

    /// The most frequent training class (lowest index on ties).
    pub fn majority_class(&self) -> usize {
        self.majority
    }
}

/// Counts classes in `y` (class indices `< n_classes`).
///
/// Errors: empty `y`, `n_classes < 2`, a label out of range.
pub fn fit_majority(y: &[usize], n_classes: usize) -> Result<Majority, BaselineError> {
    check_labels(y, n_classes, None)?;
    let mut counts = vec![0usize; n_classes];
    for &label in y {
        counts[label] += 1;
    }
    // First maximum wins, so ties go to the lowest class index.
    let majority = counts
        .iter()
        .enumerate()
        .fold(0, |best, (c, &n)| if n > counts[best] { c } else { best });
    let n = y.len() as f64;
    let priors = counts.iter().map(|&k| (k as f64 / n) as f32).collect();
    Ok(Majority { priors, majority })
}

impl Classifier for Majority {
    fn name(&self) -> &str {
        "majority"
    }

    /// `x: (n, d)` → `(n, n_classes)`: every row is the training prior (`x` is only counted).
    fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let n = x.nrows();
        Array2::from_shape_fn((n, self.priors.len()), |(_, c)| self.priors[c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_and_ties() {
        let m = fit_majority(&[2, 1, 2, 1, 0], 4).expect("valid labels");
        assert_eq!(m.priors(), &[0.2, 0.4, 0.4, 0.0]);
        assert_eq!(
            m.majority_class(),
            1,
            "tie between 1 and 2 goes to the lower index"
        );
        let p = m.predict_proba(Array2::<f32>::zeros((3, 7)).view());
        assert_eq!(p.dim(), (3, 4));
        assert_eq!(p.row(2).to_vec(), m.priors());
    }

    #[test]
    fn bad_labels_are_errors() {
        assert!(matches!(fit_majority(&[], 2), Err(BaselineError::Empty)));
        assert!(matches!(
            fit_majority(&[0, 3], 2),
            Err(BaselineError::LabelOutOfRange {
                row: 1,
                label: 3,
                n_classes: 2
            })
        ));
        assert!(matches!(
            fit_majority(&[0], 1),
            Err(BaselineError::TooFewClasses(1))
        ));
    }
}
