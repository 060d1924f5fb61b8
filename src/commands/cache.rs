//! `vggcache cache verify`: check a feature cache end to end without changing it.

use std::path::PathBuf;

use super::CommandError;
use crate::cache::{FeatureCache, VerifyReport};

/// Options of `cache`.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

/// What to do with the cache.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CacheAction {
    /// Check the manifest checksum, every shard's size and sha256, labels against class names,
    /// and decode every feature row; changes nothing. Exit 1 on the first problem, naming the
    /// file and the way out.
    Verify {
        #[arg(long, default_value = "cache")]
        features: PathBuf,
    },
}

/// Runs `cache ACTION`.
pub fn run(args: &CacheArgs) -> Result<VerifyReport, CommandError> {
    match &args.action {
        CacheAction::Verify { features } => {
            let cache = FeatureCache::open(features)?;
            let report = cache.verify()?;
            println!(
                "cache {} verified: {} shards, {} rows x {} features, {:.1} MiB; manifest and \
                 shard checksums match, labels agree with class names, every row decodes",
                features.display(),
                report.shards,
                report.rows,
                cache.dim(),
                report.bytes as f64 / (1 << 20) as f64
            );
            Ok(report)
        }
    }
}
