//! `vggcache extract`: flags → [`ExtractConfig`] → [`extract::run`]; prints the summary.

use std::path::PathBuf;

use super::{CommandError, TrunkArgs};
use crate::extract::{self, ExtractConfig, ExtractSummary};

/// Options of `extract`; defaults come from [`ExtractConfig::default`].
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// Folder of images: ImageFolder (train/cat/x.jpg), class folders (cat/x.jpg), Kaggle names
    /// (train/cat.1.jpg) or unlabelled (test/1.jpg).
    #[arg(long)]
    pub images: PathBuf,
    /// Cache folder.
    #[arg(long, default_value_os_t = ExtractConfig::default().out)]
    pub out: PathBuf,
    #[command(flatten)]
    pub trunk: TrunkArgs,
    /// Images per inference batch.
    #[arg(long, default_value_t = ExtractConfig::default().batch_size)]
    pub batch_size: usize,
    /// Decoding threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Trunk sessions running batches at the same time. With CUDA, 2 lets one batch's
    /// host-device copies overlap another's kernels (not yet measured on a GPU, so not the
    /// default); on the CPU one session already keeps every core busy.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Rows per Parquet shard. Up to one shard per core (at most 8) is written at a time while the
    /// next round queues, so a killed run loses at most those two rounds of work; rows already
    /// cached are never lost.
    #[arg(long, default_value_t = ExtractConfig::default().shard_rows)]
    pub shard_rows: usize,
    /// Fraction of labelled images held out as `val` when the folder has no val split
    /// (chosen by a hash of the relative path: stable when images are added).
    #[arg(long, default_value_t = ExtractConfig::default().val_fraction)]
    pub val_fraction: f64,
    /// Rebuild a cache made by another model or preprocessing (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// How the cache stores features: f32, or f16 (Parquet FLOAT16, half the size; values beyond
    /// f16's range are refused).
    #[arg(long, default_value_t = ExtractConfig::default().feature_dtype)]
    pub feature_dtype: crate::cache::FeatureDtype,
    /// Exit with code 3 when any image was skipped.
    #[arg(long)]
    pub strict: bool,
}

impl ExtractArgs {
    /// The run these flags ask for.
    pub fn config(&self) -> Result<ExtractConfig, CommandError> {
        Ok(ExtractConfig {
            images: self.images.clone(),
            out: self.out.clone(),
            model: self.trunk.model_path()?,
            trunk: self.trunk.options(),
            batch_size: self.batch_size,
            workers: self.workers,
            sessions: self.sessions,
            shard_rows: self.shard_rows,
            val_fraction: self.val_fraction,
            force: self.force,
            feature_dtype: self.feature_dtype,
        })
    }
}

/// Runs `extract`; returns the summary (the caller turns `--strict` + skips into the exit code).
/// The summary lines are the command's result, so they go to standard output.
pub fn run(args: &ExtractArgs) -> Result<ExtractSummary, CommandError> {
    let cfg = args.config()?;
    let summary = extract::run(&cfg)?;
    println!("{}", summary.render(&cfg.out));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExtractArgs,
    }

    #[test]
    fn cli_defaults_are_the_config_defaults() {
        let cli = Cli::parse_from(["x", "--images", "imgs", "--model", "m.onnx"]);
        let cfg = cli.args.config().unwrap();
        assert_eq!(
            cfg,
            ExtractConfig {
                images: "imgs".into(),
                model: "m.onnx".into(),
                ..ExtractConfig::default()
            }
        );
    }
}
