//! `cache commit`: the shards' commit records → one manifest, as a one-machine cache has.

use super::super::{skipped, ExtractError};
use super::plan::ShardPlan;
use crate::cache::parts::{commit_key, publish, read_json, ShardCommit};
use crate::cache::CacheError;
use crate::storage;

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitSummary {
    pub url: String,
    pub shards: u32,
    /// Part files listed.
    pub parts: usize,
    pub rows: usize,
    pub skipped: usize,
    /// False when the same commit was already published.
    pub created: bool,
}

/// Publishes the sharded cache at `url`: every shard of its plan must have a commit record.
pub fn commit(url: &str) -> Result<CommitSummary, ExtractError> {
    let store = storage::open(url).map_err(CacheError::from)?;
    let store = &*store;
    let plan = ShardPlan::load(store)?;
    let mut commits = Vec::new();
    let mut missing = Vec::new();
    for k in 0..plan.shards {
        match read_json::<ShardCommit>(store, &commit_key(k))? {
            Some(c) => commits.push(c),
            None => missing.push(k.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(CacheError::Uncommitted {
            url: store.url(),
            missing: missing.join(", "),
            shards: plan.shards,
        }
        .into());
    }
    let mut skips = plan.skipped.clone();
    skips.extend(
        commits
            .iter()
            .flat_map(|c| &c.parts)
            .flat_map(|p| p.skipped.iter().cloned()),
    );
    skips.sort();
    let csv = skipped::to_csv(&skips).map_err(|e| CacheError::BadRecord {
        url: store.url(),
        message: format!("cannot encode skipped.csv: {e}"),
    })?;
    let published = publish(store, &plan.identity, &plan.classes, &commits, &csv)?;
    Ok(CommitSummary {
        url: store.url(),
        shards: plan.shards,
        parts: published.manifest.shards.len(),
        rows: published.manifest.rows(),
        skipped: skips.len(),
        created: published.created,
    })
}
