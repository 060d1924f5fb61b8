//! `cache commit`: the shards' commit records → one manifest, as a one-machine cache has.

use std::collections::BTreeMap;

use super::super::{skipped, ExtractError};
use super::plan::ShardPlan;
use crate::cache::parts::{commit_key, part_paths, publish, read_json, ShardCommit, PLAN_KEY};
use crate::cache::CacheError;
use crate::storage::{self, Storage};

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitSummary {
    /// The sharded cache's root.
    pub url: String,
    /// Shards in the plan.
    pub shards: u32,
    /// Part files listed.
    pub parts: usize,
    /// Rows the published cache holds.
    pub rows: usize,
    /// Images skipped (listed in the skipped file).
    pub skipped: usize,
    /// False when the same commit was already published.
    pub created: bool,
}

/// Publishes the sharded cache at `url`: every shard of its plan must have a commit record, and
/// the committed rows (read from the part files) and recorded skips must account for every
/// image of the plan exactly once; otherwise nothing is published.
pub fn commit(url: &str) -> Result<CommitSummary, ExtractError> {
    let store = storage::open(url).map_err(CacheError::from)?;
    let store = &*store;
    if store.get(PLAN_KEY).map_err(CacheError::from)?.is_none() {
        return Err(CacheError::NotShardedRoot { url: store.url() }.into());
    }
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
    reconcile(store, &plan, &commits)?;
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

/// How many names an error lists per kind.
const SHOWN: usize = 5;

/// Checks that the rows of the committed parts and the recorded skips (the plan's and the
/// parts') hold every planned image exactly once and nothing else.
fn reconcile(
    store: &dyn Storage,
    plan: &ShardPlan,
    commits: &[ShardCommit],
) -> Result<(), ExtractError> {
    // Each image → where it is accounted for.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, _) in &plan.skipped {
        seen.entry(path.clone())
            .or_default()
            .push("skipped by the plan".into());
    }
    for c in commits {
        for p in &c.parts {
            if let Some(info) = &p.file {
                for path in part_paths(store, info, plan.identity.dim, &plan.classes)? {
                    seen.entry(path)
                        .or_default()
                        .push(format!("row of {}", info.file));
                }
            }
            for (path, _) in &p.skipped {
                seen.entry(path.clone())
                    .or_default()
                    .push(format!("skip of shard {} part {}", c.shard, p.part));
            }
        }
    }
    let mut planned: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &plan.entries {
        *planned.entry(e.path.as_str()).or_default() += 1;
    }
    for (path, _) in &plan.skipped {
        *planned.entry(path.as_str()).or_default() += 1;
    }
    let missing: Vec<&str> = planned
        .keys()
        .copied()
        .filter(|p| !seen.contains_key(*p))
        .collect();
    let doubled: Vec<String> = seen
        .iter()
        .filter(|(_, w)| w.len() > 1)
        .map(|(p, w)| format!("{p} ({})", w.join(", ")))
        .chain(
            planned
                .iter()
                .filter(|(_, &n)| n > 1)
                .map(|(p, n)| format!("{p} (listed {n} times by the plan)")),
        )
        .collect();
    let unplanned: Vec<String> = seen
        .iter()
        .filter(|(p, _)| !planned.contains_key(p.as_str()))
        .map(|(p, w)| format!("{p} ({})", w.join(", ")))
        .collect();
    if missing.is_empty() && doubled.is_empty() && unplanned.is_empty() {
        return Ok(());
    }
    let mut details = Vec::new();
    if !missing.is_empty() {
        details.push(format!(
            "{} planned image(s) neither a committed row nor a recorded skip: {}",
            missing.len(),
            names(&missing)
        ));
    }
    if !doubled.is_empty() {
        details.push(format!(
            "{} image(s) accounted for twice: {}",
            doubled.len(),
            names(&doubled)
        ));
    }
    if !unplanned.is_empty() {
        details.push(format!(
            "{} row(s) or skip(s) of images the plan does not list: {}",
            unplanned.len(),
            names(&unplanned)
        ));
    }
    let beyond: Vec<u32> = {
        let mut b: Vec<u32> = plan
            .entries
            .iter()
            .map(|e| e.shard)
            .filter(|&k| k >= plan.shards)
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    };
    if !beyond.is_empty() {
        details.push(format!(
            "the plan assigns images to shard(s) {} but says \"shards\": {}",
            beyond
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            plan.shards
        ));
    }
    let plan_url = storage::join(&store.url(), PLAN_KEY);
    Err(ExtractError::Unreconciled {
        url: store.url(),
        planned: plan.entries.len() + plan.skipped.len(),
        details: details.join("; "),
        fix: format!(
            "{plan_url} no longer matches what its shards extracted (edited after they ran?): \
             restore it, or plan again into a new root (`vggcache plan --images DIR --out NEW_ROOT \
             --shards N`) and run its shards"
        ),
    })
}

/// The first [`SHOWN`] of `items`, and how many more.
fn names<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(SHOWN).map(T::to_string).collect();
    if items.len() > SHOWN {
        format!("{} and {} more", shown.join(", "), items.len() - SHOWN)
    } else {
        shown.join(", ")
    }
}
