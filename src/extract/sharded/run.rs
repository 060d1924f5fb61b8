//! One shard of a plan: its parts through the engine, each written under a name unique to this
//! attempt and claimed with a put-if-absent record, then the shard's commit record. A resumed
//! attempt reuses the claimed parts; a duplicate or zombie attempt finds the records taken and
//! exits without listing anything twice.

use arrow::array::RecordBatch;

use super::super::engine::{extract_rows, identity_of, sessions, RowSink};
use super::super::{ExtractConfig, ExtractError, Plan};
use super::plan::{PlannedImage, ShardPlan};
use crate::cache::parts::{
    commit_key, part_key, part_record_key, read_json, rows_to_batch, write_part, PartRecord,
    ShardCommit,
};
use crate::cache::{CacheError, FeatureRow, ViewedRow};
use crate::dataset::{self, Dataset, ImageEntry};
use crate::events::{Event, Events};
use crate::storage::staging::Staging;
use crate::storage::{self, Storage};
use crate::trunk::Trunk;

/// Settings of one shard run. `extract` carries the model, trunk options, batch size and
/// workers (its defaults are the one-machine defaults); `extract.images`, when set, replaces the
/// plan's images folder (another mount of the same files).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRunConfig {
    /// Root of the sharded cache holding `plan.json`.
    pub plan: String,
    /// Which shard, in `0..shards`.
    pub shard: u32,
    /// Shards in the plan (must match it).
    pub shards: u32,
    /// Batch size, workers, trunk and other extraction settings.
    pub extract: ExtractConfig,
}

/// How the shard ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardOutcome {
    /// This attempt created the shard's commit record.
    Committed,
    /// Another attempt (`attempt`) had committed the shard, before or while this one ran;
    /// `ours` of its parts are files this attempt wrote and claimed.
    AlreadyCommitted {
        /// The attempt whose record committed the shard.
        attempt: String,
        /// Its parts that are files this attempt wrote.
        ours: usize,
    },
}

/// What a shard run did.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSummary {
    /// Which shard ran.
    pub shard: u32,
    /// Shards in the plan.
    pub shards: u32,
    /// This attempt's id (part file names carry it).
    pub attempt: String,
    /// Parts of this shard.
    pub parts: usize,
    /// Parts this attempt extracted and claimed.
    pub written: usize,
    /// Parts claimed by an earlier attempt, reused.
    pub reused: usize,
    /// Parts this attempt extracted but another attempt claimed first (its file was deleted).
    pub lost: usize,
    /// Rows in the shard's parts.
    pub rows: usize,
    /// Images skipped in this shard.
    pub skipped: usize,
    /// How the shard ended.
    pub outcome: ShardOutcome,
}

impl ShardSummary {
    /// The one line `extract --plan --shard` prints: parts, rows, skips and who committed.
    pub fn render(&self) -> String {
        let s = self;
        let how = match &s.outcome {
            ShardOutcome::Committed => format!("committed by this attempt ({})", s.attempt),
            ShardOutcome::AlreadyCommitted { attempt, ours } => format!(
                "already committed by attempt {attempt}; {ours} of its {} parts are files this \
                 attempt wrote (the shard is done, nothing to repeat)",
                s.parts
            ),
        };
        format!(
            "shard {}/{}: {} parts ({} extracted now, {} reused, {} lost to another attempt),              {} rows, {} skipped; {how}",
            s.shard, s.shards, s.parts, s.written, s.reused, s.lost, s.rows, s.skipped
        )
    }
}

/// Runs shard `cfg.shard` of the plan at `cfg.plan` (see the module docs); its progress (one
/// phase per part it extracts), skips and end go to `events`.
pub fn run_shard(cfg: &ShardRunConfig, events: &dyn Events) -> Result<ShardSummary, ExtractError> {
    cfg.extract.validate_sizes()?; // impossible flags fail before the root is opened
    let store = storage::open(&cfg.plan).map_err(CacheError::from)?;
    let store = &*store;
    let plan = ShardPlan::load(store)?;
    if plan.shards == 0 {
        return Err(CacheError::BadRecord {
            url: storage::join(&store.url(), crate::cache::parts::PLAN_KEY),
            message: "the plan says \"shards\": 0 (edited after planning?); restore it, or plan \
                      again into a new root with `vggcache plan --shards N`"
                .into(),
        }
        .into());
    }
    if cfg.shards != plan.shards || cfg.shard >= cfg.shards {
        return Err(ExtractError::Config {
            field: "shard",
            reason: format!(
                "{}/{} does not fit the plan at {}, which has {} shards (use K/{} with K in 0..{})",
                cfg.shard,
                cfg.shards,
                store.url(),
                plan.shards,
                plan.shards,
                plan.shards
            ),
        });
    }
    let attempt = format!("{:016x}", rand::random::<u64>());
    let mut summary = ShardSummary {
        shard: cfg.shard,
        shards: cfg.shards,
        attempt: attempt.clone(),
        parts: plan.parts(cfg.shard).len(),
        written: 0,
        reused: 0,
        lost: 0,
        rows: 0,
        skipped: 0,
        outcome: ShardOutcome::Committed,
    };
    if let Some(done) = read_json::<ShardCommit>(store, &commit_key(cfg.shard))? {
        count(&mut summary, &done.parts);
        summary.outcome = ShardOutcome::AlreadyCommitted {
            attempt: done.attempt,
            ours: 0,
        };
        events.event(&Event::Finished {
            extracted: 0,
            skipped: summary.skipped,
        });
        return Ok(summary);
    }
    let trunk = Trunk::load(&cfg.extract.model, &cfg.extract.trunk)?;
    let identity = identity_of(trunk.info());
    if identity.fingerprint() != plan.fingerprint {
        return Err(ExtractError::PlanModel {
            plan: storage::join(&store.url(), crate::cache::parts::PLAN_KEY),
            planned: plan.identity.describe(),
            given: identity.describe(),
            model: plan.identity.model.path.clone(),
        });
    }
    let mut trunks = sessions(&cfg.extract, trunk)?;
    let root = if cfg.extract.images.as_os_str().is_empty() {
        plan.images.clone()
    } else {
        cfg.extract.images.clone()
    };
    // Parts bound for an object store are written locally first, in a folder removed when this
    // run ends, however it ends.
    let staging = match store.local_root() {
        Some(_) => None,
        None => Some(Staging::new(&attempt).map_err(CacheError::from)?),
    };
    let mut records = Vec::new();
    let mut extracted = 0;
    for (j, images) in plan.parts(cfg.shard).into_iter().enumerate() {
        let j = j as u32;
        let key = part_record_key(cfg.shard, j);
        if let Some(r) = read_json::<PartRecord>(store, &key)? {
            summary.reused += 1;
            records.push(r);
            continue;
        }
        let ours = run_part(
            cfg,
            &plan,
            store,
            staging.as_ref(),
            &root,
            j,
            &images,
            &attempt,
            &mut trunks,
            events,
        )?;
        extracted += ours.file.as_ref().map_or(0, |f| f.rows);
        let bytes = serde_json::to_vec_pretty(&ours).expect("a part record serialises");
        if store
            .put_if_absent(&key, &bytes)
            .map_err(CacheError::from)?
        {
            summary.written += 1;
            records.push(ours);
        } else {
            // Another attempt claimed this part while we extracted it: our file is never listed.
            summary.lost += 1;
            if let Some(f) = &ours.file {
                store.delete(&f.file).map_err(CacheError::from)?;
            }
            let theirs = read_json::<PartRecord>(store, &key)?
                .expect("put-if-absent refused: the record exists");
            records.push(theirs);
        }
    }
    count(&mut summary, &records);
    let commit = ShardCommit {
        shard: cfg.shard,
        attempt: attempt.clone(),
        parts: records,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let bytes = serde_json::to_vec_pretty(&commit).expect("a commit record serialises");
    if !store
        .put_if_absent(&commit_key(cfg.shard), &bytes)
        .map_err(CacheError::from)?
    {
        let winner = read_json::<ShardCommit>(store, &commit_key(cfg.shard))?
            .expect("put-if-absent refused: the commit record exists");
        count(&mut summary, &winner.parts);
        let ours = winner.parts.iter().filter(|p| p.attempt == attempt).count();
        summary.outcome = ShardOutcome::AlreadyCommitted {
            attempt: winner.attempt,
            ours,
        };
    }
    events.event(&Event::Finished {
        extracted,
        skipped: summary.skipped,
    });
    Ok(summary)
}

/// Sets the row and skip counts of `s` from the shard's part records.
fn count(s: &mut ShardSummary, parts: &[PartRecord]) {
    s.rows = parts
        .iter()
        .filter_map(|p| p.file.as_ref())
        .map(|f| f.rows)
        .sum();
    s.skipped = parts.iter().map(|p| p.skipped.len()).sum();
}

/// Collects the engine's rows of one part as record batches of the cache schema.
struct PartSink<'a> {
    dim: usize,
    classes: &'a [String],
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl RowSink for PartSink<'_> {
    fn append(&mut self, shards: &[Vec<ViewedRow>]) -> Result<(), ExtractError> {
        for rows in shards.iter().filter(|r| !r.is_empty()) {
            // A shard run makes plain views only (views are refused before it starts).
            let rows: Vec<FeatureRow> = rows.iter().map(|v| v.row).collect();
            self.batches
                .push(rows_to_batch(&rows, self.dim, self.classes)?);
            self.rows += rows.len();
        }
        Ok(())
    }
}

/// Extracts part `j` (`images`) and writes its file under this attempt's name; returns the
/// record to claim it with. Files whose bytes changed since the plan are skipped, not extracted.
#[allow(clippy::too_many_arguments)]
fn run_part(
    cfg: &ShardRunConfig,
    plan: &ShardPlan,
    store: &dyn Storage,
    staging: Option<&Staging>,
    root: &std::path::Path,
    j: u32,
    images: &[&PlannedImage],
    attempt: &str,
    trunks: &mut [Trunk],
    events: &dyn Events,
) -> Result<PartRecord, ExtractError> {
    let mut skipped = Vec::new();
    let mut entries = Vec::with_capacity(images.len());
    let mut hashes = Vec::with_capacity(images.len());
    for im in images {
        // Read only under the images folder, symlinks resolved (the plan's names were checked
        // when it was loaded; the folder may have changed since).
        let abs_path = crate::safe_path::resolve_under(root, &im.path).map_err(|source| {
            CacheError::UnsafeEntry {
                source,
                fix: super::plan::FIX_PLAN_ENTRY,
            }
        })?;
        let reason: String = match dataset::content_hash(&abs_path) {
            Ok(h) if h == im.content_hash => {
                entries.push(ImageEntry {
                    rel_path: im.path.clone(),
                    abs_path,
                    split: im.split,
                    label: im.label,
                    class: im.class.clone(),
                });
                hashes.push(Ok(h));
                continue;
            }
            Ok(_) => {
                "changed since the plan was made (content hash differs); make a new plan".into()
            }
            Err(e) => format!("unreadable: {e}"),
        };
        events.event(&Event::Skipped {
            path: im.path.clone(),
            reason: reason.clone(),
        });
        skipped.push((im.path.clone(), reason));
    }
    let part_plan = Plan {
        dataset: Dataset {
            root: root.to_path_buf(),
            layout: plan.layout,
            classes: plan.classes.clone(),
            entries,
            skipped: Vec::new(),
        },
        hashes,
    };
    let mut sink = PartSink {
        dim: plan.identity.dim,
        classes: &plan.classes,
        batches: Vec::new(),
        rows: 0,
    };
    if !part_plan.dataset.entries.is_empty() {
        let todo = (0..part_plan.dataset.entries.len()).collect();
        let mut shape = cfg.extract.clone();
        shape.shard_rows = plan.part_rows.max(1);
        let done = extract_rows(&shape, &part_plan, todo, trunks, &mut sink, events)?;
        skipped.extend(done.skipped);
    }
    let file = if sink.rows == 0 {
        None
    } else {
        let name = part_key(cfg.shard, j, attempt);
        let info = match (store.local_root(), staging) {
            (Some(dir), _) => write_part(
                &dir.join(&name),
                &name,
                &plan.identity,
                &plan.classes,
                sink.batches,
            )?,
            (None, staging) => {
                let owned;
                let staging = match staging {
                    Some(s) => s,
                    None => {
                        owned = Staging::new(attempt).map_err(CacheError::from)?;
                        &owned
                    }
                };
                // Removed when `tmp` drops: after the upload, or on any error before it.
                let tmp = staging.file(&format!("part-{:05}-{j:05}.parquet", cfg.shard));
                let info = write_part(
                    tmp.path(),
                    &name,
                    &plan.identity,
                    &plan.classes,
                    sink.batches,
                )?;
                store
                    .put_file(&name, tmp.path())
                    .map_err(CacheError::from)?;
                info
            }
        };
        // Crash tests stop here: the part file exists, its record does not.
        crate::failpoint::hit("part-written");
        Some(info)
    };
    skipped.sort();
    Ok(PartRecord {
        shard: cfg.shard,
        part: j,
        attempt: attempt.to_string(),
        file,
        skipped,
    })
}
