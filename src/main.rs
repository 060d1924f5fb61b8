//! `vggcache` binary: parse the command line, run the subcommand, map errors to exit codes.

#![deny(clippy::undocumented_unsafe_blocks)]

mod commands;

use clap::{Parser, Subcommand};
use commands::exit;
// The command layer names the library's modules as `crate::…`, as it did inside the library.
use vggcache::{
    baseline, cache, dataset, export, extract, fsutil, head, jobs, report, storage, store, trunk,
};

/// Transfer learning with cached features: extract once with a frozen trunk, train heads in seconds.
#[derive(Debug, Parser)]
#[command(name = "vggcache", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the ONNX Runtime library, execution providers, CUDA libraries and model in use.
    Doctor(commands::doctor::DoctorArgs),
    /// Run the frozen trunk over an image folder and cache one feature vector per image (Parquet);
    /// with --plan and --shard, one shard of a sharded run.
    Extract(commands::extract::ExtractArgs),
    /// Fix a sharded run: images, splits, trunk identity and each image's shard, stored as
    /// plan.json at a folder or s3:// root; then `extract --plan ROOT --shard K/N` per shard and
    /// `cache commit ROOT`.
    Plan(commands::plan::PlanArgs),
    /// Train the MLP head on cached features; writes runs/NAME/.
    TrainHead(commands::train_head::TrainHeadArgs),
    /// The head beside linfa-logistic and a majority-class row on the same features.
    CompareBaselines(commands::compare::CompareArgs),
    /// Class probabilities for a folder of images with a trained head (CSV or Kaggle format).
    Predict(commands::predict::PredictArgs),
    /// Write a trained head (optionally with its trunk) as a standalone ONNX classifier.
    Export(commands::export::ExportArgs),
    /// One HTML page for a train-head run: curves, confusion matrix, the images it gets wrong,
    /// likely label errors, train/val leakage.
    Report(commands::report::ReportArgs),
    /// Check, commit, copy or clean a feature cache (`cache verify|commit|pull|gc`).
    Cache(commands::cache::CacheArgs),
    /// Build trunk models into the model store, or list them (`models install|list`).
    Models(commands::models::ModelsArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Doctor(a) => commands::doctor::run(a).map(|()| exit::OK),
        Command::TrainHead(a) => commands::train_head::run(a).map(|_| exit::OK),
        Command::CompareBaselines(a) => commands::compare::run(a).map(|_| exit::OK),
        Command::Predict(a) => commands::predict::run(a).map(|_| exit::OK),
        Command::Export(a) => commands::export::run(a).map(|_| exit::OK),
        Command::Cache(a) => commands::cache::run(a).map(|_| exit::OK),
        Command::Report(a) => commands::report::run(a).map(|_| exit::OK),
        Command::Plan(a) => commands::plan::run(a).map(|_| exit::OK),
        Command::Models(a) => commands::models::run(a).map(|_| exit::OK),
        Command::Extract(a) => commands::extract::run(a).map(|skipped| {
            if a.strict && skipped > 0 {
                eprintln!("--strict: {skipped} image(s) skipped");
                exit::SKIPPED_STRICT
            } else {
                exit::OK
            }
        }),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
