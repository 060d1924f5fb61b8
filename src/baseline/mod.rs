//! Baseline classifiers on plain feature arrays: linfa logistic regression and a majority-class prior.
//!
//! Both take `x: (n, d)` as `f32` and labels as `usize` class indices in `0..n_classes`, and give
//! probabilities `(n, n_classes)` through [`Classifier::predict_proba`]. The conversion to linfa's `f64`
//! happens once, inside [`fit_logistic`] and [`FittedLogistic::predict_proba`]. [`search_c`] picks
//! the logistic regression's `C` on a validation split carved from train. With fewer rows than
//! features, fits run exactly in the rows' span (`row_space`), at a fraction of the cost.

mod c_search;
mod logistic;
mod majority;
mod row_space;
mod standardize;

pub use c_search::{search_c, CPoint, CRule, CSearch, CSearchParams};
pub use logistic::{fit_logistic, FittedLogistic, LogisticParams, StopTest};
pub use majority::{fit_majority, Majority};
pub use standardize::Standardizer;

use ndarray::{Array2, ArrayView2};

/// A fitted model that turns features into class probabilities.
pub trait Classifier {
    /// Short display name, e.g. `"logistic"` or `"majority"`.
    fn name(&self) -> &str;

    /// Class probabilities. `x: (n, d)` → `(n, n_classes)`, rows sum to 1.
    ///
    /// Panics if `d` differs from the feature count the model was fitted on (a caller bug: the
    /// command layer checks the cache's dimension before predicting).
    fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32>;
}

/// Errors from fitting a baseline on given data.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Features and labels differ in length.
    #[error("features have {rows} rows but there are {labels} labels")]
    RowMismatch {
        /// Number of rows.
        rows: usize,
        /// Number of labels.
        labels: usize,
    },
    /// No training rows.
    #[error("cannot fit on an empty training set (0 rows)")]
    Empty,
    /// Fewer than two classes declared.
    #[error("need at least 2 classes, got n_classes = {0}")]
    TooFewClasses(usize),
    /// A label not below the number of classes.
    #[error("label {label} at row {row} is out of range: expected < {n_classes}")]
    LabelOutOfRange {
        /// Row index (0-based).
        row: usize,
        /// The label as given.
        label: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// The training labels hold a single class.
    #[error("training labels hold only class {0}: logistic regression needs at least 2 distinct classes")]
    SingleClass(usize),
    /// A feature value is NaN or infinite.
    #[error("feature value at row {row}, column {col} is not finite ({value})")]
    NonFinite {
        /// Row index (0-based).
        row: usize,
        /// Column index (0-based).
        col: usize,
        /// The value as given.
        value: f32,
    },
    /// A parameter outside its valid range.
    #[error("invalid parameter {name} = {value}: {expected}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// The value as given.
        value: f64,
        /// Its valid range.
        expected: &'static str,
    },
    /// linfa-logistic failed.
    #[error("linfa-logistic failed: {0}")]
    Linfa(#[from] linfa_logistic::error::Error),
}

/// Checks labels against `n_classes` (and, when given, the row count of the features).
fn check_labels(y: &[usize], n_classes: usize, rows: Option<usize>) -> Result<(), BaselineError> {
    if let Some(rows) = rows {
        if rows != y.len() {
            return Err(BaselineError::RowMismatch {
                rows,
                labels: y.len(),
            });
        }
    }
    if y.is_empty() {
        return Err(BaselineError::Empty);
    }
    if n_classes < 2 {
        return Err(BaselineError::TooFewClasses(n_classes));
    }
    if let Some((row, &label)) = y.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(BaselineError::LabelOutOfRange {
            row,
            label,
            n_classes,
        });
    }
    Ok(())
}
