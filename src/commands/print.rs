//! How the CLI prints results on stdout: the per-epoch table, a trained run, orphaned parts.

use std::path::Path;

use crate::storage::Listed;

/// The header of the per-epoch table [`print_epoch`] fills.
pub(crate) const EPOCH_HEADER: &str =
    "epoch  train_loss  train_acc  select_loss  select_acc  val_loss  val_acc  seconds";

/// One row of the per-epoch table, as training reports it (`-` where there is no selection split).
pub(crate) fn print_epoch(m: &crate::head::EpochMetrics) {
    let opt = |v: Option<f64>, w: usize| v.map_or(format!("{:>w$}", "-"), |v| format!("{v:>w$.4}"));
    println!(
        "{:>5}  {:>10.4}  {:>9.4}  {}  {}  {:>8.4}  {:>7.4}  {:>7.2}",
        m.epoch,
        m.train_loss,
        m.train_acc,
        opt(m.select_loss, 11),
        opt(m.select_acc, 10),
        m.val_loss,
        m.val_acc,
        m.seconds
    );
}

/// A trained run's summary, folder and page, as train-head prints them.
pub(crate) fn print_trained(summary: &str, run_dir: &Path, page: Option<&Path>) {
    println!("{summary}");
    println!("run written to {}", run_dir.display());
    match page {
        Some(page) => println!("report: {}", page.display()),
        None => println!(
            "report: not written for a streamed run (the page needs the features in memory)"
        ),
    }
}

/// The orphaned parts of a sharded root, as `cache verify` lists them.
pub(crate) fn print_orphans(orphans: &[Listed]) {
    if orphans.is_empty() {
        println!("orphaned parts: none");
    } else {
        println!(
            "orphaned parts (listed by no record, never read; `vggcache cache gc` deletes them): {}{}",
            orphans.len(),
            list(orphans)
        );
    }
}

/// One line per file: its key and size.
pub(crate) fn list(files: &[Listed]) -> String {
    files
        .iter()
        .map(|o| format!("\n  {} ({} bytes)", o.key, o.bytes))
        .collect()
}
