//! What a person looks at after training: where the model is wrong and how sure it was, which
//! given labels look wrong, and which val images also sit in train.
//!
//! [`Review::new`] works on one model's val probabilities; [`label_issues`] scores every train
//! image with a logistic baseline fitted on the other folds (out-of-fold probabilities, as
//! cleanlab takes them), so no image is scored by a model that saw it; [`leakage`] finds val rows
//! whose features equal a train row's bit for bit (the same pixels after preprocessing).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use ndarray::{Array2, ArrayView2, Axis};

use crate::baseline::{fit_logistic, BaselineError, Classifier, LogisticParams};
use crate::metrics;

/// One image in a list of cases: its path, given label, predicted class and the probabilities
/// the model gave the predicted and the given class.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Image path relative to the images folder.
    pub path: String,
    /// The given label.
    pub label: usize,
    /// The predicted class.
    pub predicted: usize,
    /// Probability of the predicted class.
    pub p_predicted: f32,
    /// Probability of the given class.
    pub p_label: f32,
}

/// One model on the val split: confusion matrix, per-class scores and the ranked cases.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Per class `(precision, recall, f1, support)`.
    pub per_class: Vec<(f64, f64, f64, usize)>,
    /// Wrong predictions, most confident first.
    pub confident_wrong: Vec<Case>,
    /// Right predictions, least confident first.
    pub unsure_right: Vec<Case>,
}

/// The cases of `proba: (n, C)` against labels `y: (n,)`, one per row.
fn cases(paths: &[String], y: &[usize], proba: ArrayView2<f32>) -> Vec<Case> {
    let scores: Vec<f32> = proba.iter().copied().collect();
    let pred = metrics::argmax_rows(&scores, proba.ncols());
    (0..y.len())
        .map(|i| Case {
            path: paths[i].clone(),
            label: y[i],
            predicted: pred[i],
            p_predicted: proba[[i, pred[i]]],
            p_label: proba[[i, y[i]]],
        })
        .collect()
}

impl Review {
    /// Reviews `proba: (n, n_classes)` (rows sum to 1) against `y: (n,)`; keeps the `top` most
    /// confident wrong and `top` least confident right cases. Ties keep path order.
    pub fn new(paths: &[String], y: &[usize], proba: ArrayView2<f32>, top: usize) -> Self {
        assert_eq!(proba.nrows(), y.len(), "one probability row per label");
        let all = cases(paths, y, proba);
        let pred: Vec<usize> = all.iter().map(|c| c.predicted).collect();
        let confusion = metrics::confusion_matrix(y, &pred, proba.ncols());
        let per_class = metrics::precision_recall(&confusion)
            .into_iter()
            .zip(&confusion)
            .map(|((p, r), row)| {
                let f1 = if p + r > 0.0 {
                    2.0 * p * r / (p + r)
                } else {
                    0.0
                };
                (p, r, f1, row.iter().sum())
            })
            .collect();
        let (mut wrong, mut right): (Vec<Case>, Vec<Case>) =
            all.into_iter().partition(|c| c.predicted != c.label);
        wrong.sort_by(|a, b| b.p_predicted.total_cmp(&a.p_predicted));
        right.sort_by(|a, b| a.p_predicted.total_cmp(&b.p_predicted));
        wrong.truncate(top);
        right.truncate(top);
        Review {
            confusion,
            per_class,
            confident_wrong: wrong,
            unsure_right: right,
        }
    }
}

/// [`label_issues`]' answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelReview {
    /// Rows whose given label gets the lowest out-of-fold probability, lowest first.
    pub issues: Vec<Case>,
    /// Out-of-fold `(true, predicted, count)` off the diagonal, most frequent first.
    pub confused: Vec<(usize, usize, usize)>,
}

/// Likely label errors among `x: (n, d)` with labels `y`: every row is scored by a logistic
/// baseline (`params`) fitted on the other `folds - 1` folds (fold of row `i` = `i % folds`, rows
/// in path order), and the `top` rows whose given label gets the lowest out-of-fold probability
/// come first, with the out-of-fold confusions. Needs `folds ≥ 2` and every fold's complement to hold 2 classes.
pub fn label_issues(
    paths: &[String],
    x: ArrayView2<f32>,
    y: &[usize],
    n_classes: usize,
    folds: usize,
    params: &LogisticParams,
    top: usize,
) -> Result<LabelReview, BaselineError> {
    let n = y.len();
    let folds = folds.clamp(2, n.max(2));
    let mut oof = Array2::<f32>::zeros((n, n_classes));
    for k in 0..folds {
        let (held, fit): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % folds == k);
        if held.is_empty() {
            continue;
        }
        let fit_y: Vec<usize> = fit.iter().map(|&i| y[i]).collect();
        let model = fit_logistic(params, x.select(Axis(0), &fit).view(), &fit_y, n_classes)?;
        let p = model.predict_proba(x.select(Axis(0), &held).view());
        for (r, &i) in held.iter().enumerate() {
            oof.row_mut(i).assign(&p.row(r));
        }
    }
    let mut all = cases(paths, y, oof.view());
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    for c in all.iter().filter(|c| c.predicted != c.label) {
        *pairs.entry((c.label, c.predicted)).or_default() += 1;
    }
    let mut pairs: Vec<(usize, usize, usize)> =
        pairs.into_iter().map(|((t, p), n)| (t, p, n)).collect();
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    all.sort_by(|a, b| a.p_label.total_cmp(&b.p_label));
    all.truncate(top);
    Ok(LabelReview {
        issues: all,
        confused: pairs,
    })
}

/// `(val path, train path)` for every val row of `val: (m, d)` whose features equal a row of
/// `train: (n, d)` bit for bit: the same image (or the same pixels after preprocessing) in both
/// splits, so the val score counts an image the model trained on.
pub fn leakage(
    train_paths: &[String],
    train: ArrayView2<f32>,
    val_paths: &[String],
    val: ArrayView2<f32>,
) -> Vec<(String, String)> {
    // Rows are bucketed by a hash of their bits (not by a copy of them: 100 KB a row at D = 25,088),
    // then compared bit for bit; with several equal train rows the last one is named.
    fn bits(row: ndarray::ArrayView1<'_, f32>) -> impl Iterator<Item = u32> + '_ {
        row.into_iter().map(|v| v.to_bits())
    }
    let key = |row: ndarray::ArrayView1<f32>| {
        let mut h = DefaultHasher::new();
        bits(row).for_each(|b| b.hash(&mut h));
        h.finish()
    };
    let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, r) in train.rows().into_iter().enumerate() {
        buckets.entry(key(r)).or_default().push(i);
    }
    val.rows()
        .into_iter()
        .enumerate()
        .filter_map(|(j, r)| {
            let same = buckets
                .get(&key(r))?
                .iter()
                .rev()
                .find(|&&i| bits(train.row(i)).eq(bits(r)))?;
            Some((val_paths[j].clone(), train_paths[*same].clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("img{i}.jpg")).collect()
    }

    #[test]
    fn review_ranks_wrong_by_confidence_and_right_by_doubt() {
        let proba = array![
            [0.9f32, 0.1],
            [0.2, 0.8],
            [0.4, 0.6],
            [0.55, 0.45],
            [0.3, 0.7]
        ];
        let y = [0, 0, 0, 0, 1];
        let r = Review::new(&names(5), &y, proba.view(), 10);
        assert_eq!(r.confusion, vec![vec![2, 2], vec![0, 1]]);
        let wrong: Vec<&str> = r.confident_wrong.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(wrong, ["img1.jpg", "img2.jpg"]);
        let right: Vec<&str> = r.unsure_right.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(right, ["img3.jpg", "img4.jpg", "img0.jpg"]);
        let (p, rec, f1, support) = r.per_class[0];
        assert_eq!((p, rec, support), (1.0, 0.5, 4));
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            Review::new(&names(5), &y, proba.view(), 1)
                .confident_wrong
                .len(),
            1
        );
    }

    #[test]
    fn a_flipped_label_is_the_first_label_issue() {
        // Two well separated blobs; row 7 sits in class 0's blob but is labelled 1.
        let mut x = Array2::<f32>::zeros((40, 3));
        let mut y = vec![0usize; 40];
        for (i, yi) in y.iter_mut().enumerate() {
            let c = i % 2;
            *yi = c;
            let s = if c == 0 { -2.0 } else { 2.0 };
            x.row_mut(i).assign(&array![
                s + 0.1 * (i % 5) as f32,
                s - 0.05 * (i % 3) as f32,
                0.3 * (i % 7) as f32
            ]);
        }
        y[8] = 1; // row 8 is in class 0's blob
        let params = LogisticParams::default();
        let r = label_issues(&names(40), x.view(), &y, 2, 5, &params, 3).unwrap();
        assert_eq!(r.issues[0].path, "img8.jpg");
        assert_eq!((r.issues[0].label, r.issues[0].predicted), (1, 0));
        assert!(r.issues[0].p_label < 0.5);
        assert_eq!(r.confused[0], (1, 0, 1));
    }

    #[test]
    fn leakage_finds_bit_equal_rows_only() {
        let train = array![[1.0f32, 2.0], [3.0, 4.0]];
        let val = array![[3.0f32, 4.0], [3.0, 4.000001], [1.0, 2.0]];
        let found = leakage(
            &names(2),
            train.view(),
            &["v0".into(), "v1".into(), "v2".into()],
            val.view(),
        );
        assert_eq!(
            found,
            vec![
                ("v0".to_string(), "img1.jpg".to_string()),
                ("v2".to_string(), "img0.jpg".to_string())
            ]
        );
    }
}
