//! The model-comparison report: per-model metrics on the val split, rendered as text, Markdown, JSON.
//!
//! [`evaluate`] turns one model's probabilities into a [`ModelRow`]; a [`CompareReport`] holds the
//! rows with the data they were measured on and renders them. Metric conventions follow
//! scikit-learn: predicted class = arg-max (lowest index on ties); log loss clips probabilities to
//! `[eps, 1 - eps]` with `eps = f32::EPSILON` (sklearn's `finfo(float32).eps` for float32 input);
//! precision of a class never predicted and recall of a class absent from the labels are 0
//! (sklearn's `zero_division` default).

pub mod html;
pub mod review;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use crate::metrics;
use serde::{Deserialize, Serialize};

/// Precision and recall of one class on the evaluated split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// Class name.
    pub class: String,
    /// Precision: correct predictions of the class over all predictions of it.
    pub precision: f64,
    /// Recall: correct predictions of the class over its rows.
    pub recall: f64,
    /// Rows of this class in the evaluated split.
    pub support: usize,
}

/// One model's results on the evaluated split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    /// Model name as shown in the table.
    pub name: String,
    /// Accuracy on the evaluated split.
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
    /// Solver iterations of the fit, for models fitted by an iterative solver.
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Whether that solver met its tolerance (`false`: it stopped at its iteration cap or gave up).
    #[serde(default)]
    pub converged: Option<bool>,
}

/// An extra table under the comparison (e.g. accuracy against the logistic regression's `C`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Heading of the table.
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Cells, one `Vec` per row, as long as `header`.
    pub rows: Vec<Vec<String>>,
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
    /// Training rows.
    pub n_train: usize,
    /// Evaluated rows.
    pub n_val: usize,
    /// Feature dimension `d` of the cached vectors.
    pub feature_dim: usize,
    /// One row per model.
    pub rows: Vec<ModelRow>,
    /// Free-form lines shown under the table (settings, feature source, machine).
    pub notes: Vec<String>,
    /// Tables shown after the notes.
    #[serde(default)]
    pub sections: Vec<Section>,
}

/// Errors from evaluating predictions or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No rows to evaluate on.
    #[error("cannot evaluate {model}: the evaluated split is empty (0 rows)")]
    EmptySplit {
        /// The model (row of the comparison) concerned.
        model: String,
    },
    /// Probabilities and labels differ in length.
    #[error("{model}: probabilities have {rows} rows but there are {labels} labels")]
    RowMismatch {
        /// The model (row of the comparison) concerned.
        model: String,
        /// Rows of probabilities.
        rows: usize,
        /// Number of labels.
        labels: usize,
    },
    /// Probabilities and classes differ in width.
    #[error("{model}: probabilities have {cols} columns but there are {classes} classes")]
    ClassMismatch {
        /// The model (row of the comparison) concerned.
        model: String,
        /// Number of columns.
        cols: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A label not below the number of classes.
    #[error("{model}: label {label} at row {row} is out of range: expected < {classes}")]
    LabelOutOfRange {
        /// The model (row of the comparison) concerned.
        model: String,
        /// Row index (0-based).
        row: usize,
        /// The label given.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A probability that is NaN or infinite.
    #[error("{model}: probability at row {row}, column {col} is not finite ({value})")]
    NonFinite {
        /// The model (row of the comparison) concerned.
        model: String,
        /// Row index (0-based).
        row: usize,
        /// Column index (0-based).
        col: usize,
        /// The value found.
        value: f32,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The report could not be serialised.
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
        iterations: None,
        converged: None,
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
        header.push("iterations".into());
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
                cells.push(match (r.iterations, r.converged) {
                    (Some(i), Some(false)) => format!("{i} (not converged)"),
                    (Some(i), _) => i.to_string(),
                    (None, _) => "-".into(),
                });
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
        let mut out = format!("{}\n", self.summary_line());
        out.push_str(&text_table(&header, &rows));
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        for s in &self.sections {
            let _ = writeln!(out, "\n{}", s.title);
            out.push_str(&text_table(&s.header, &s.rows));
        }
        out
    }

    /// GitHub-flavoured Markdown: a heading, the summary, the table, the notes as a list, then
    /// each section under its own heading.
    pub fn to_markdown(&self) -> String {
        let (header, rows) = self.cells();
        let mut out = String::from("# Model comparison\n\n");
        let _ = writeln!(out, "{}\n", esc(&self.summary_line()));
        out.push_str(&markdown_table(&header, &rows));
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {}", esc(note));
            }
        }
        for s in &self.sections {
            let _ = writeln!(out, "\n## {}\n", esc(&s.title));
            out.push_str(&markdown_table(&s.header, &s.rows));
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
            // Names and paths are text from data: made inert for spreadsheets.
            let mut record: Vec<String> = [
                &model,
                &paths[i],
                &classes[labels[i]],
                &classes[predicted[i]],
            ]
            .map(|t| formula_safe(t).into_owned())
            .into();
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

/// Writes `bytes` to `path` atomically ([`crate::fsutil::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::fsutil::write_atomic(path, bytes).map_err(|e| ReportError::Io {
        path: e.path,
        source: e.source,
    })
}

/// `|` escaped for a Markdown table cell.
fn esc(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A text cell made inert for spreadsheets (OWASP's CSV-injection advice): a cell starting with
/// `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, so a spreadsheet opening the
/// CSV or a pasted table shows it as text instead of evaluating it. A cell that is a number
/// (`-0.5`, `1e-3`) or a lone `-` is returned as it is.
pub fn formula_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell != "-" && cell.trim().parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Aligned plain-text table: first column left-aligned, the others right-aligned, a rule under
/// the header; every row as long as `header`.
fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
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
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(header));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let _ = writeln!(out, "{}", rule.join("  "));
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}

/// GitHub-flavoured Markdown table, first column left-aligned, the others right-aligned.
fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let row = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| esc(&formula_safe(c))).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let align: Vec<String> = (0..header.len())
        .map(|j| if j == 0 { ":---" } else { "---:" }.to_string())
        .collect();
    let mut out = row(header);
    out.push_str(&format!("| {} |\n", align.join(" | ")));
    for r in rows {
        out.push_str(&row(r));
    }
    out
}

#[cfg(test)]
mod tests;
