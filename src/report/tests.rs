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

/// Names and paths that a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first) get a
/// leading `'` in predictions.csv and compare.md; numbers the tool formats, negative ones
/// included, and a lone `-` stay as they are.
#[test]
fn formula_leading_cells_are_neutralized() {
    let dir = tempfile::tempdir().unwrap();
    let cls = vec![
        "=HYPERLINK(\"http://x\",\"c\")".to_string(),
        "@dog".to_string(),
    ];
    let paths = vec!["+1+cmd.jpg".to_string(), "-2.jpg".to_string()];
    let p = array![[0.9f32, 0.1], [0.25, 0.75]];
    let file = write_predictions(dir.path(), &cls, &paths, &[0, 1], &[("\tm", p.view())]).unwrap();
    let mut r = csv::Reader::from_path(&file).unwrap();
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(
        rows[0][..4],
        [
            "'\tm",
            "'+1+cmd.jpg",
            "'=HYPERLINK(\"http://x\",\"c\")",
            "'=HYPERLINK(\"http://x\",\"c\")"
        ]
    );
    assert_eq!(rows[1][..4], ["'\tm", "'-2.jpg", "'@dog", "'@dog"]);

    let row = |name: &str| ModelRow {
        name: name.into(),
        accuracy: 0.5,
        log_loss: 0.7,
        per_class: Vec::new(),
        fit_seconds: f64::NAN,
        predict_ms_per_image: 0.1,
        iterations: None,
        converged: None,
    };
    let report = CompareReport {
        classes: Vec::new(),
        n_train: 1,
        n_val: 1,
        feature_dim: 2,
        rows: vec![row("=HYPERLINK(\"http://x\")"), row("-cmd")],
        notes: Vec::new(),
        sections: vec![Section {
            title: "s".into(),
            header: vec!["C".into(), "x".into()],
            rows: vec![
                vec!["-0.5".into(), "-".into()],
                vec!["@SUM(A1)".into(), "1e-3".into()],
            ],
        }],
    };
    let md = report.to_markdown();
    assert!(md.contains("| '=HYPERLINK(\"http://x\") |"), "{md}");
    assert!(md.contains("| '-cmd |"), "{md}");
    assert!(md.contains("| -0.5 | - |"), "{md}");
    assert!(md.contains("| '@SUM(A1) | 1e-3 |"), "{md}");
    assert_eq!(formula_safe("-1.25"), "-1.25");
    assert_eq!(formula_safe("\rx"), "'\rx");
}
