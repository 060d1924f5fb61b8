//! Unit tests of the comparison report.

use super::*;
use ndarray::array;

fn classes() -> Vec<String> {
    vec!["cat".into(), "dog".into(), "fox".into()]
}

#[test]
fn hand_computed_row() {
    let p = array![
        [0.7f32, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.4, 0.3],
        [0.0, 0.5, 0.5]
    ];
    let y = [0, 1, 0, 2];
    let row = evaluate("m", p.view(), &y, &classes(), 2.0, 0.004).expect("valid");
    // Row 3 ties 1 and 2 → class 1 (lowest index), so predictions are 0, 1, 1, 1.
    assert_eq!(row.accuracy, 0.5);
    let expected_ll = -(0.7f64.ln() + 0.8f64.ln() + 0.3f64.ln() + 0.5f64.ln()) / 4.0;
    assert!(
        (row.log_loss - expected_ll).abs() < 1e-6,
        "{} vs {expected_ll}",
        row.log_loss
    );
    assert_eq!(
        (row.per_class[0].precision, row.per_class[0].recall),
        (1.0, 0.5)
    );
    assert_eq!(
        (row.per_class[1].precision, row.per_class[1].recall),
        (1.0 / 3.0, 1.0)
    );
    assert_eq!(
        (row.per_class[2].precision, row.per_class[2].recall),
        (0.0, 0.0)
    );
    assert_eq!(row.per_class[0].support, 2);
    assert!((row.predict_ms_per_image - 1.0).abs() < 1e-12);
}

#[test]
fn zero_probability_is_clipped() {
    let p = array![[1.0f32, 0.0, 0.0]];
    let row = evaluate("m", p.view(), &[1], &classes(), 0.0, 0.0).expect("valid");
    assert!((row.log_loss + f64::from(f32::EPSILON).ln()).abs() < 1e-9);
}

#[test]
fn bad_inputs() {
    let p = array![[0.5f32, 0.5, 0.0]];
    let e = |r: Result<ModelRow, ReportError>| r.expect_err("should fail").to_string();
    let empty = ndarray::Array2::<f32>::zeros((0, 3));
    assert!(e(evaluate("m", empty.view(), &[], &classes(), 0., 0.)).contains("empty"));
    assert!(e(evaluate("m", p.view(), &[0, 1], &classes(), 0., 0.)).contains("1 rows"));
    assert!(e(evaluate("m", p.view(), &[3], &classes(), 0., 0.)).contains("label 3"));
    assert!(e(evaluate("m", p.view(), &[0], &classes()[..2], 0., 0.)).contains("3 columns"));
    let nan = array![[f32::NAN, 0.5, 0.5]];
    assert!(e(evaluate("m", nan.view(), &[0], &classes(), 0., 0.)).contains("not finite"));
}

/// Class names and paths holding commas and quotes come back field for field (they were
/// written unquoted in the label, predicted and header columns before).
#[test]
fn predictions_csv_quotes_class_names_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cls = vec!["cat, tabby".to_string(), "dog \"pug\"".to_string()];
    let paths = vec!["a,1.jpg".to_string(), "b.jpg".to_string()];
    let p = array![[0.9f32, 0.1], [0.25, 0.75]];
    let file = write_predictions(dir.path(), &cls, &paths, &[0, 0], &[("m, 1", p.view())]).unwrap();
    let mut r = csv::Reader::from_path(&file).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "model",
            "path",
            "label",
            "predicted",
            "prob_cat, tabby",
            "prob_dog \"pug\""
        ]
    );
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(
        rows[0],
        ["m, 1", "a,1.jpg", "cat, tabby", "cat, tabby", "0.9", "0.1"]
    );
    assert_eq!(
        rows[1],
        ["m, 1", "b.jpg", "cat, tabby", "dog \"pug\"", "0.25", "0.75"]
    );
}
