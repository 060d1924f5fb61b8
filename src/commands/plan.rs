//! `vggcache plan`: flags → [`PlanConfig`] → [`sharded::make_plan`]; prints where each shard runs.

use std::path::PathBuf;

use super::{CommandError, TrunkArgs};
use crate::extract::sharded::{self, PlanConfig, PlanSummary};

/// Options of `plan`; defaults come from [`PlanConfig::default`].
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Folder of images (any layout `extract` reads).
    #[arg(long)]
    pub images: PathBuf,
    /// Root of the sharded cache: a folder, or s3://bucket/prefix (credentials and endpoint from
    /// the AWS_* environment).
    #[arg(long)]
    pub out: String,
    /// Number of shards (one task each: a Ray task, a Slurm array index, a Kubernetes index).
    #[arg(long, default_value_t = PlanConfig::default().shards)]
    pub shards: u32,
    /// Images per part file (a shard resumes part by part).
    #[arg(long, default_value_t = PlanConfig::default().part_rows)]
    pub part_rows: usize,
    /// Fraction of labelled images held out as `val` when the folder has no val split.
    #[arg(long, default_value_t = PlanConfig::default().val_fraction)]
    pub val_fraction: f64,
    /// Only these images: a text file of paths relative to --images, one per line.
    #[arg(long)]
    pub file_list: Option<PathBuf>,
    #[command(flatten)]
    pub trunk: TrunkArgs,
}

impl PlanArgs {
    /// The plan these flags ask for.
    pub fn config(&self) -> Result<PlanConfig, CommandError> {
        Ok(PlanConfig {
            images: self.images.clone(),
            out: self.out.clone(),
            model: self.trunk.model_path()?,
            trunk: self.trunk.options(),
            shards: self.shards,
            part_rows: self.part_rows,
            val_fraction: self.val_fraction,
            file_list: self.file_list.clone(),
        })
    }
}

/// Runs `plan`.
pub fn run(args: &PlanArgs) -> Result<PlanSummary, CommandError> {
    let s = sharded::make_plan(&args.config()?)?;
    let n = s.per_shard.len();
    println!(
        "plan {} {}: {} images in {n} shards ({} to {} per shard), {} skipped; next: \
         `vggcache extract --plan {} --shard K/{n}` for K in 0..{n}, then `vggcache cache commit {}`",
        s.url,
        if s.created { "stored" } else { "already stored (same plan)" },
        s.images,
        s.per_shard.iter().min().unwrap_or(&0),
        s.per_shard.iter().max().unwrap_or(&0),
        s.skipped,
        s.url,
        s.url
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PlanArgs,
    }

    #[test]
    fn cli_defaults_are_the_config_defaults() {
        let cli = Cli::parse_from([
            "x", "--images", "imgs", "--out", "s3://b/p", "--model", "m.onnx",
        ]);
        let cfg = cli.args.config().unwrap();
        assert_eq!(
            cfg,
            PlanConfig {
                images: "imgs".into(),
                out: "s3://b/p".into(),
                model: "m.onnx".into(),
                ..PlanConfig::default()
            }
        );
    }
}
