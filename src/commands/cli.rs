//! The `vggcache` command line: its clap definition and [`run`], which parses an argument list,
//! dispatches to one subcommand and returns the exit code (shared by the binary and the Python
//! package's `vggcache` entry point).

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use super::exit;

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
    Doctor(super::doctor::DoctorArgs),
    /// Run the frozen trunk over an image folder and cache one feature vector per image (Parquet);
    /// with --plan and --shard, one shard of a sharded run.
    Extract(super::extract::ExtractArgs),
    /// Fix a sharded run: images, splits, trunk identity and each image's shard, stored as
    /// plan.json at a folder or s3:// root; then `extract --plan ROOT --shard K/N` per shard and
    /// `cache commit ROOT`.
    Plan(super::plan::PlanArgs),
    /// Train the MLP head on cached features; writes runs/NAME/.
    TrainHead(super::train_head::TrainHeadArgs),
    /// The head beside linfa-logistic and a majority-class row on the same features.
    CompareBaselines(super::compare::CompareArgs),
    /// Class probabilities for a folder of images with a trained head (CSV or Kaggle format).
    Predict(super::predict::PredictArgs),
    /// Write a trained head (optionally with its trunk) as a standalone ONNX classifier.
    Export(super::export::ExportArgs),
    /// One HTML page for a train-head run: curves, confusion matrix, the images it gets wrong,
    /// likely label errors, train/val leakage.
    Report(super::report::ReportArgs),
    /// Check, commit, copy or clean a feature cache (`cache verify|commit|pull|gc`).
    Cache(super::cache::CacheArgs),
    /// Build trunk models into the model store, or list them (`models install|list`).
    Models(super::models::ModelsArgs),
}

/// Runs the command line `args` (the first item is the program name): parses it, runs the
/// subcommand, prints its result or error, and returns the process exit code ([`exit`]).
/// Clap's own help, version and parse errors print as `Cli::parse` would print them.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout with code 0, errors to stderr with code 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match &cli.command {
        Command::Doctor(a) => super::doctor::run(a).map(|()| exit::OK),
        Command::TrainHead(a) => super::train_head::run(a).map(|_| exit::OK),
        Command::CompareBaselines(a) => super::compare::run(a).map(|_| exit::OK),
        Command::Predict(a) => super::predict::run(a).map(|_| exit::OK),
        Command::Export(a) => super::export::run(a).map(|_| exit::OK),
        Command::Cache(a) => super::cache::run(a).map(|_| exit::OK),
        Command::Report(a) => super::report::run(a).map(|_| exit::OK),
        Command::Plan(a) => super::plan::run(a).map(|_| exit::OK),
        Command::Models(a) => super::models::run(a).map(|_| exit::OK),
        Command::Extract(a) => super::extract::run(a).map(|skipped| {
            if a.strict && skipped > 0 {
                eprintln!("--strict: {skipped} image(s) skipped");
                exit::SKIPPED_STRICT
            } else {
                exit::OK
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
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

    #[test]
    fn parse_errors_and_help_give_clap_exit_codes() {
        assert_eq!(run(vec!["vggcache".into(), "no-such-command".into()]), 2);
        assert_eq!(run(vec!["vggcache".into(), "--version".into()]), 0);
    }
}
