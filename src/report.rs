//! The model-comparison report: per-model metrics on the val split, rendered as text, Markdown, JSON.
//!
//! [`evaluate`] turns one model's probabilities into a [`ModelRow`]; a [`CompareReport`] holds the
//! rows with the data they were measured on and renders them. Metric conventions follow
//! scikit-learn: predicted class = arg-max (lowest index on ties); log loss clips probabilities to
//! `[eps, 1 - eps]` with `eps = f32::EPSILON` (sklearn's `finfo(float32).eps` for float32 input);
//! precision of a class never predicted and recall of a class absent from the labels are 0
//! (sklearn's `zero_division` default).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use crate::metrics;
use serde::{Deserialize, Serialize};

/// Precision and recall of one class on the evaluated split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    /// Rows of this class in the evaluated split.
    pub support: usize,
}

/// One model's results on the evaluated split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub name: String,
    pub accuracy: f64,
    /// Mean negative log-likelihood of the true class (natural log), clipped as in the module doc.
    pub log_loss: f64,
    /// One entry per class, in class-index order.
    pub per_class: Vec<ClassScore>,
    /// NaN when unknown (a head given by `--head`); written to JSON as `null`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub fit_seconds: f64,
    /// Prediction wall time over the evaluated split, per image, in milliseconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub predict_ms_per_image: f64,
}

/// JSON has no NaN: serde_json writes a NaN as `null`, read back here as NaN so that
/// [`CompareReport::from_json`] accepts what [`CompareReport::to_json`] wrote.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Every model's row and what they were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Class names, index = label.
    pub classes: Vec<String>,
    pub n_train: usize,
    pub n_val: usize,
    /// Feature dimension `d` of the cached vectors.
    pub feature_dim: usize,
    pub rows: Vec<ModelRow>,
    /// Free-form lines shown under the table (settings, feature source, machine).
    pub notes: Vec<String>,
}

/// Errors from evaluating predictions or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot evaluate {model}: the evaluated split is empty (0 rows)")]
    EmptySplit { model: String },
    #[error("{model}: probabilities have {rows} rows but there are {labels} labels")]
    RowMismatch {
        model: String,
        rows: usize,
        labels: usize,
    },
    #[error("{model}: probabilities have {cols} columns but there are {classes} classes")]
    ClassMismatch {
        model: String,
        cols: usize,
        classes: usize,
    },
    #[error("{model}: label {label} at row {row} is out of range: expected < {classes}")]
    LabelOutOfRange {
        model: String,
        row: usize,
        label: usize,
        classes: usize,
    },
    #[error("{model}: probability at row {row}, column {col} is not finite ({value})")]
    NonFinite {
        model: String,
        row: usize,
        col: usize,
        value: f32,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serialising the report to JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Scores one model: `proba: (n, classes.len())` against labels `y: (n,)`; `fit_s` and `predict_s`
/// are wall-clock seconds for fitting and for predicting all `n` rows.
///
/// Errors: `n == 0`, row or column count mismatch, label out of range, non-finite probability.
pub fn evaluate(
    name: &str,
    proba: ArrayView2<f32>,
    y: &[usize],
    classes: &[String],
    fit_s: f64,
    predict_s: f64,
) -> Result<ModelRow, ReportError> {
    let model = || name.to_string();
    let (n, n_classes) = proba.dim();
    if n != y.len() {
        return Err(ReportError::RowMismatch {
            model: model(),
            rows: n,
            labels: y.len(),
        });
    }
    if n == 0 {
        return Err(ReportError::EmptySplit { model: model() });
    }
    if n_classes != classes.len() {
        return Err(ReportError::ClassMismatch {
            model: model(),
            cols: n_classes,
            classes: classes.len(),
        });
    }
    if let Some((row, &label)) = y.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(ReportError::LabelOutOfRange {
            model: model(),
            row,
            label,
            classes: n_classes,
        });
    }
    if let Some(((row, col), &value)) = proba.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(ReportError::NonFinite {
            model: model(),
            row,
            col,
            value,
        });
    }

    let flat = proba.as_standard_layout();
    let flat = flat.as_slice().expect("standard layout is contiguous");
    let predicted = metrics::argmax_rows(flat, n_classes);
    let confusion = metrics::confusion_matrix(y, &predicted, n_classes);
    let per_class = classes
        .iter()
        .zip(metrics::precision_recall(&confusion))
        .enumerate()
        .map(|(c, (class, (precision, recall)))| ClassScore {
            class: class.clone(),
            precision,
            recall,
            support: confusion[c].iter().sum(),
        })
        .collect();
    Ok(ModelRow {
        name: model(),
        accuracy: metrics::accuracy(y, &predicted),
        log_loss: metrics::log_loss(y, flat, n_classes),
        per_class,
        fit_seconds: fit_s,
        predict_ms_per_image: predict_s * 1000.0 / n as f64,
    })
}

impl CompareReport {
    /// Column headers and formatted cells, shared by the text and Markdown renderers.
    fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec!["model".to_string(), "accuracy".into(), "log loss".into()];
        for class in &self.classes {
            header.push(format!("P({class})"));
            header.push(format!("R({class})"));
        }
        header.push("fit s".into());
        header.push("predict ms/img".into());
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    r.name.clone(),
                    format!("{:.4}", r.accuracy),
                    format!("{:.4}", r.log_loss),
                ];
                for s in &r.per_class {
                    cells.push(format!("{:.3}", s.precision));
                    cells.push(format!("{:.3}", s.recall));
                }
                cells.push(format!("{:.3}", r.fit_seconds));
                cells.push(format!("{:.4}", r.predict_ms_per_image));
                cells
            })
            .collect();
        (header, rows)
    }

    fn summary_line(&self) -> String {
        format!(
            "val split: {} images, train split: {} images, {} features, classes: {}",
            self.n_val,
            self.n_train,
            self.feature_dim,
            self.classes.join(", ")
        )
    }

    /// Aligned plain-text table (model name left-aligned, numbers right-aligned) with the summary
    /// line above and the notes below, for the terminal.
    pub fn to_text(&self) -> String {
        let (header, rows) = self.cells();
        let widths: Vec<usize> = (0..header.len())
            .map(|j| {
                rows.iter()
                    .map(|r| r[j].len())
                    .chain([header[j].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(j, (c, &w))| {
                    if j == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = format!("{}\n", self.summary_line());
        let _ = writeln!(out, "{}", line(&header));
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        let _ = writeln!(out, "{}", rule.join("  "));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        out
    }

    /// GitHub-flavoured Markdown: a heading, the summary, the table, the notes as a list.
    pub fn to_markdown(&self) -> String {
        let (header, rows) = self.cells();
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("# Model comparison\n\n");
        let _ = writeln!(out, "{}\n", esc(&self.summary_line()));
        let _ = writeln!(
            out,
            "| {} |",
            header
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let align: Vec<&str> = (0..header.len())
            .map(|j| if j == 0 { ":---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "| {} |", align.join(" | "));
        for r in &rows {
            let _ = writeln!(
                out,
                "| {} |",
                r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {}", esc(note));
            }
        }
        out
    }

    /// Pretty JSON of the whole report (full precision; [`CompareReport::from_json`] reads it back).
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Parses [`CompareReport::to_json`] output.
    pub fn from_json(s: &str) -> Result<Self, ReportError> {
        Ok(serde_json::from_str(s)?)
    }

    /// Writes `compare.md` and `compare.json` into `dir` (created if missing), each through a
    /// temporary file and a rename; returns their paths.
    pub fn write_to(&self, dir: &Path) -> Result<(PathBuf, PathBuf), ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.into(),
            source,
        })?;
        let md = dir.join("compare.md");
        let json = dir.join("compare.json");
        write_atomic(&md, self.to_markdown().as_bytes())?;
        write_atomic(&json, self.to_json()?.as_bytes())?;
        Ok((md, json))
    }
}

/// Writes `dir/predictions.csv`, the per-image predictions behind a report: header
/// `model,path,label,predicted,prob_<class>...`, one row per (model, image) in `models` order.
/// `models[k].1`: `(paths.len(), classes.len())` probabilities; `labels[i]` the true class index.
pub fn write_predictions(
    dir: &Path,
    classes: &[String],
    paths: &[String],
    labels: &[usize],
    models: &[(&str, ArrayView2<f32>)],
) -> Result<PathBuf, ReportError> {
    let path = dir.join("predictions.csv");
    // The csv crate quotes every field that needs it: paths and class names may hold commas.
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| ReportError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    };
    let mut header = vec![
        "model".to_string(),
        "path".into(),
        "label".into(),
        "predicted".into(),
    ];
    header.extend(classes.iter().map(|c| format!("prob_{c}")));
    w.write_record(&header).map_err(csv_err)?;
    for (name, proba) in models {
        let model = name.to_string();
        if proba.dim() != (paths.len(), classes.len()) || labels.len() != paths.len() {
            return Err(ReportError::RowMismatch {
                model,
                rows: proba.nrows(),
                labels: labels.len(),
            });
        }
        let scores: Vec<f32> = proba.iter().copied().collect();
        let predicted = metrics::argmax_rows(&scores, classes.len());
        for (i, row) in proba.rows().into_iter().enumerate() {
            let mut record = vec![
                model.clone(),
                paths[i].clone(),
                classes[labels[i]].clone(),
                classes[predicted[i]].clone(),
            ];
            record.extend(row.iter().map(|p| p.to_string()));
            w.write_record(&record).map_err(csv_err)?;
        }
    }
    let out = w
        .into_inner()
        .map_err(|e| csv_err(csv::Error::from(e.into_error())))?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.into(),
        source,
    })?;
    write_atomic(&path, &out)?;
    Ok(path)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::fsutil::write_atomic(path, bytes).map_err(|e| ReportError::Io {
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
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
        let file =
            write_predictions(dir.path(), &cls, &paths, &[0, 0], &[("m, 1", p.view())]).unwrap();
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
}
