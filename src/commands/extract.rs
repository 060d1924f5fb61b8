//! `vggcache extract`: flags → [`ExtractConfig`] → [`extract::run`] (or, with `--plan`, one shard
//! → [`sharded::run_shard`]), with progress and notices rendered by [`Render`]; prints the summary.

use std::path::PathBuf;

use super::render::Render;
use super::{CommandError, TrunkArgs};
use crate::extract::sharded::{self, ShardRunConfig};
use crate::extract::{self, ExtractConfig};

/// Options of `extract`; defaults come from [`ExtractConfig::default`].
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// Folder of images: ImageFolder (train/cat/x.jpg), class folders (cat/x.jpg), Kaggle names
    /// (train/cat.1.jpg) or unlabelled (test/1.jpg). With --plan: another mount of the plan's
    /// images folder (default: the folder the plan was made from).
    #[arg(long, required_unless_present = "plan")]
    pub images: Option<PathBuf>,
    /// Run one shard of the plan stored at this root (a folder or s3://bucket/prefix, made by
    /// `vggcache plan`) instead of a one-machine extraction; needs --shard.
    #[arg(long, requires = "shard", conflicts_with_all = ["out", "force"])]
    pub plan: Option<String>,
    /// Which shard of --plan: K/N (K in 0..N), e.g. `--shard $SLURM_ARRAY_TASK_ID/16`.
    /// Resumable; a shard already committed exits 0 at once.
    #[arg(long, requires = "plan", value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
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
    /// How the cache stores features: f32, or f16 (Parquet FLOAT16, half the bits a value; values beyond
    /// f16's range are refused).
    /// For a cache with views (--views, --tta-views), f16 is the recommended choice: every
    /// view is a full row of features, and f16 stores each in half the bits.
    #[arg(long, default_value_t = ExtractConfig::default().feature_dtype)]
    pub feature_dtype: crate::cache::FeatureDtype,
    /// Besides each training image, K augmented views of it (random resized crop, horizontal
    /// flip, mild colour jitter), each a row with its `view` index and recipe; train-head samples
    /// one view per image per epoch. Seeded by the image's content and --view-seed, so a re-run
    /// reuses the views of unchanged images. 0 = the plain images only.
    #[arg(long, default_value_t = ExtractConfig::default().views.train_views, conflicts_with = "plan")]
    pub views: u32,
    /// Also the fixed test-time views of each val and test image (a flip and five crops), for
    /// `train-head --tta`, `compare-baselines --tta` and `predict --tta`.
    #[arg(long, conflicts_with = "plan")]
    pub tta_views: bool,
    /// Seed of the augmented views (mixed with each image's content hash and view index).
    #[arg(long, default_value_t = ExtractConfig::default().views.seed)]
    pub view_seed: u64,
    /// Exit with code 3 when any image was skipped.
    #[arg(long)]
    pub strict: bool,
}

impl ExtractArgs {
    /// The run these flags ask for.
    pub fn config(&self) -> Result<ExtractConfig, CommandError> {
        Ok(ExtractConfig {
            images: self.images.clone().unwrap_or_default(),
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
            views: extract::ViewSettings {
                train_views: self.views,
                tta: self.tta_views,
                tta_every_split: false,
                seed: self.view_seed,
            },
        })
    }
}

/// `K/N` with `K < N`.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not K/N (e.g. 3/16)"))?;
    let k: u32 = k
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: K is not a number"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: N is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("{s:?}: need 0 <= K < N"));
    }
    Ok((k, n))
}

/// Runs `extract`; returns how many images were skipped (the caller turns `--strict` + skips
/// into the exit code). The summary lines are the command's result, so they go to standard output.
pub fn run(args: &ExtractArgs) -> Result<usize, CommandError> {
    vggcache::failpoint::set_announcer(|line| eprintln!("{line}")); // crash tests wait for it
    let cfg = args.config()?;
    let events = Render::default();
    if let (Some(plan), Some((shard, shards))) = (&args.plan, args.shard) {
        let s = sharded::run_shard(
            &ShardRunConfig {
                plan: plan.clone(),
                shard,
                shards,
                extract: cfg,
            },
            &events,
        )?;
        println!("{}", s.render());
        return Ok(s.skipped);
    }
    let summary = extract::run(&cfg, &events)?;
    println!("{}", summary.render(&cfg.out));
    Ok(summary.skipped)
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
