//! A run's outputs: `runs/<name>/` written atomically (temp dir, then rename), and the summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{plot, HeadError, TrainOutcome};
use crate::metrics::{accuracy, confusion_matrix, precision_recall};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HeadError + '_ {
    move |source| HeadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The columns of a run's `metrics.csv`, in order.
pub(crate) const METRICS_HEADER: [&str; 9] = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
    "best",
    "select_loss",
    "select_acc",
];

/// `metrics.csv`: one row per epoch, with a `best` column (1 on the kept epoch) and the selection
/// split's loss and accuracy (empty without one).
fn metrics_csv(outcome: &TrainOutcome) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(METRICS_HEADER).expect("writing to memory");
    for m in &outcome.history {
        w.write_record([
            m.epoch.to_string(),
            format!("{:.6}", m.train_loss),
            format!("{:.6}", m.train_acc),
            format!("{:.6}", m.val_loss),
            format!("{:.6}", m.val_acc),
            format!("{:.3}", m.seconds),
            u8::from(m.epoch == outcome.best_epoch).to_string(),
            m.select_loss.map_or(String::new(), |v| format!("{v:.6}")),
            m.select_acc.map_or(String::new(), |v| format!("{v:.6}")),
        ])
        .expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

/// Write `head.safetensors`, `metrics.csv`, `loss_acc.png` and `README.txt` (the plot's legend)
/// into `dir`, which must not exist yet. Everything is written into a hidden sibling temp
/// directory first and renamed into place, so a failure leaves nothing half-written at `dir`.
pub fn write_run(
    dir: &Path,
    outcome: &TrainOutcome,
    metadata: &BTreeMap<String, String>,
) -> Result<(), HeadError> {
    if dir.exists() {
        return Err(HeadError::RunExists {
            path: dir.to_path_buf(),
        });
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        outcome.head.save(&tmp.join("head.safetensors"), metadata)?;
        let csv = tmp.join("metrics.csv");
        std::fs::write(&csv, metrics_csv(outcome)).map_err(io(&csv))?;
        plot::draw(
            &outcome.history,
            outcome.best_epoch,
            &tmp.join("loss_acc.png"),
        )?;
        let readme = tmp.join("README.txt");
        let text = format!(
            "head.safetensors: the head at the kept epoch ({}, {}), weights (d_out, d_in) as PyTorch, \
             config, classes and scaler inside.\nmetrics.csv: one row per epoch; best=1 marks the \
             kept epoch; select_* are the selection split's (carved from train; val is never used \
             to choose); seconds = training steps only.\n{}\n",
            outcome.best_epoch,
            kept_how(outcome),
            plot::LEGEND
        );
        std::fs::write(&readme, text).map_err(io(&readme))?;
        crate::fsutil::publish_dir(&tmp, dir).map_err(|e| HeadError::Io {
            path: e.path,
            source: e.source,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// How the kept epoch was chosen, in words.
fn kept_how(outcome: &TrainOutcome) -> String {
    if outcome.select_rows > 0 {
        format!(
            "lowest loss on a selection split of {} rows carved from train",
            outcome.select_rows
        )
    } else {
        "the last epoch: no selection split".into()
    }
}

/// A plain-text summary: best epoch, its val accuracy and loss, the confusion matrix of
/// `val_pred` against `val_y` with per-class precision/recall, and seconds per epoch.
pub fn summary_table(outcome: &TrainOutcome, val_y: &[usize], val_pred: &[usize]) -> String {
    let classes = outcome.head.classes();
    let mut s = String::new();
    let best = outcome
        .history
        .iter()
        .find(|m| m.epoch == outcome.best_epoch);
    let secs: Vec<f64> = outcome.history.iter().map(|m| m.seconds).collect();
    let mean_secs = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
    let _ = writeln!(
        s,
        "best epoch       {} of {} ({})",
        outcome.best_epoch,
        outcome.history.len(),
        kept_how(outcome)
    );
    if let Some(b) = best {
        let _ = writeln!(s, "val accuracy     {:.4} (not used to choose)", b.val_acc);
        let _ = writeln!(s, "val loss         {:.4}", b.val_loss);
        let _ = writeln!(s, "train loss       {:.4}", b.train_loss);
    }
    let _ = writeln!(
        s,
        "time per epoch   {mean_secs:.2} s (mean of {}: {})",
        secs.len(),
        secs.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !val_y.is_empty() && val_y.len() == val_pred.len() {
        let _ = writeln!(
            s,
            "accuracy of the given predictions {:.4}",
            accuracy(val_y, val_pred)
        );
        let cm = confusion_matrix(val_y, val_pred, classes.len());
        let pr = precision_recall(&cm);
        let w = classes.iter().map(|c| c.len()).max().unwrap_or(4).max(9);
        let _ = writeln!(s, "confusion matrix (rows = true, columns = predicted)");
        let _ = write!(s, "{:w$}", "");
        for c in classes {
            let _ = write!(s, " {c:>w$}");
        }
        let _ = writeln!(s, " {:>9} {:>9}", "precision", "recall");
        for (i, row) in cm.iter().enumerate() {
            let _ = write!(s, "{:w$}", classes[i]);
            for v in row {
                let _ = write!(s, " {v:>w$}");
            }
            let _ = writeln!(s, " {:>9.4} {:>9.4}", pr[i].0, pr[i].1);
        }
    }
    s
}
