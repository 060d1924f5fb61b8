//! `vggcache cache verify|commit|pull|gc`: check a feature cache end to end, publish a sharded
//! one, copy one from object storage, delete orphaned parts.

use std::path::{Path, PathBuf};

use super::print::{list, print_orphans};
use super::CommandError;
use crate::cache::parts::{self, PLAN_KEY};
use crate::cache::{CacheError, FeatureCache};
use crate::extract::sharded;
use crate::storage;

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
    /// no row twice, and decode every feature row; changes nothing. A sharded root (folder or
    /// s3://) also lists its orphaned parts. Exit 1 on the first problem, naming the file and
    /// the way out.
    Verify {
        /// Cache folder, or the root of a sharded cache (folder or s3://bucket/prefix).
        #[arg(long, default_value = crate::cache::DEFAULT_DIR)]
        features: String,
    },
    /// Publish a sharded cache: every shard of its plan must be committed; writes skipped.csv,
    /// then manifest.json (put-if-absent: committing again is a no-op).
    Commit {
        /// Root of the sharded cache (folder or s3://bucket/prefix).
        root: String,
    },
    /// Copy a committed cache from object storage into a local folder that opens like any cache
    /// (parts already there with the right sha256 are not fetched again).
    Pull {
        /// Root of the committed cache (s3://bucket/prefix or a folder).
        root: String,
        /// Local cache folder to write.
        #[arg(long, default_value = crate::cache::DEFAULT_DIR)]
        to: PathBuf,
    },
    /// Delete the orphaned parts of a committed sharded cache (files of failed or duplicate
    /// attempts that no record lists).
    Gc {
        /// Root of the committed sharded cache (folder or s3://bucket/prefix).
        root: String,
    },
}

/// Runs `cache ACTION`.
pub fn run(args: &CacheArgs) -> Result<(), CommandError> {
    match &args.action {
        CacheAction::Verify { features } => verify(features),
        CacheAction::Commit { root } => {
            let s = sharded::commit(root)?;
            println!(
                "{} {}: {} shards, {} parts, {} rows, {} skipped (skipped.csv)",
                s.url,
                if s.created {
                    "committed"
                } else {
                    "already committed (same parts)"
                },
                s.shards,
                s.parts,
                s.rows,
                s.skipped
            );
            Ok(())
        }
        CacheAction::Pull { root, to } => {
            let store = storage::open(root).map_err(CacheError::from)?;
            let m = parts::pull(&*store, to)?;
            let cache = FeatureCache::open(to)?;
            println!(
                "pulled {} into {}: {} files, {} rows x {} features (checksums verified)",
                store.url(),
                to.display(),
                m.shards.len(),
                cache.len(),
                cache.dim()
            );
            Ok(())
        }
        CacheAction::Gc { root } => {
            let store = storage::open(root).map_err(CacheError::from)?;
            let gone = parts::gc(&*store)?;
            println!(
                "{}: deleted {} orphaned part(s){}",
                store.url(),
                gone.len(),
                list(&gone)
            );
            Ok(())
        }
    }
}

/// `cache verify`: a local folder in place; an object store root through a temporary pull.
fn verify(features: &str) -> Result<(), CommandError> {
    if !storage::is_remote(features) {
        let dir = Path::new(features.strip_prefix("file://").unwrap_or(features));
        verify_local(features, dir)?;
        if dir.join(PLAN_KEY).exists() {
            let store = storage::open(features).map_err(CacheError::from)?;
            print_orphans(&parts::orphans(&*store)?);
        }
        return Ok(());
    }
    let store = storage::open(features).map_err(CacheError::from)?;
    let tmp = std::env::temp_dir().join(format!("vggcache-verify-{:016x}", rand::random::<u64>()));
    let result = parts::pull(&*store, &tmp)
        .map_err(CommandError::from)
        .and_then(|_| verify_local(features, &tmp));
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    print_orphans(&parts::orphans(&*store)?);
    Ok(())
}

fn verify_local(name: &str, dir: &Path) -> Result<(), CommandError> {
    let cache = FeatureCache::open(dir)?;
    let report = cache.verify()?;
    println!(
        "cache {name} verified: {} shards, {} rows x {} features, {:.1} MiB; manifest and \
         shard checksums match, labels agree with class names, no row twice, every row decodes",
        report.shards,
        report.rows,
        cache.dim(),
        report.bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
