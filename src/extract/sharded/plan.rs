//! [`ShardPlan`]: the images of a sharded run, fixed once: identity (trunk fingerprint,
//! preprocessing, width), classes, splits, content hashes, and each image's shard, chosen by a
//! stable hash of its relative path (independent of the val-split hash, and of N's other uses).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::engine::identity_of;
use super::super::{ExtractError, Plan};
use crate::cache::parts::{read_json, PLAN_KEY};
use crate::cache::{CacheError, CacheIdentity};
use crate::dataset::{self, Layout, Split};
use crate::storage;
use crate::trunk::{Trunk, TrunkOptions};

/// Format tag of `plan.json`.
pub const PLAN_FORMAT: &str = "vggcache-shard-plan/1";

/// One image of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedImage {
    /// Relative to [`ShardPlan::images`], `/`-separated; unique.
    pub path: String,
    /// The split the image belongs to.
    pub split: Split,
    /// Its class index (`None`: unlabelled).
    pub label: Option<u32>,
    /// Its class name (`None`: unlabelled).
    pub class: Option<String>,
    /// sha256 of the file when planned; a shard run skips a file whose bytes changed since.
    pub content_hash: String,
    /// In `0..shards`: [`shard_of`]`(path, shards)`.
    pub shard: u32,
}

/// The stored plan (`plan.json` at the root).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// The plan format's name and version (`vggcache-shard-plan/1`).
    pub format: String,
    /// The images folder as planned (a shard run may be given another mount of it).
    pub images: PathBuf,
    /// The folder's layout as planned.
    pub layout: Layout,
    /// The trunk, preprocessing and feature width every shard must use.
    pub identity: CacheIdentity,
    /// [`CacheIdentity::fingerprint`] of `identity`.
    pub fingerprint: String,
    /// Class names; label i is `classes[i]`.
    pub classes: Vec<String>,
    /// Fraction of labelled images held out as `val` when the folder has no val split.
    pub val_fraction: f64,
    /// Number of shards.
    pub shards: u32,
    /// Images per part: a part is a fixed chunk of its shard's images in path order, so an
    /// attempt that resumes knows which parts are done by their records alone.
    pub part_rows: usize,
    /// Sorted by `path`.
    pub entries: Vec<PlannedImage>,
    /// Images discovery or hashing could not use, with the reason.
    pub skipped: Vec<(String, String)>,
    /// sha256 (hex) of this plan serialised as compact JSON with `checksum` null, as a
    /// manifest's: a hand edit or a damaged byte is caught by [`ShardPlan::load`].
    #[serde(default)]
    pub checksum: Option<String>,
}

/// The shard of `rel_path` among `shards`: the first 8 bytes of sha256("vggcache-shard\0" +
/// path), big-endian, modulo `shards`. Stable across machines, runs and releases.
pub fn shard_of(rel_path: &str, shards: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(b"vggcache-shard\0");
    h.update(rel_path.as_bytes());
    let d = h.finalize();
    let x = u64::from_be_bytes(d[..8].try_into().expect("sha256 has 8 bytes"));
    (x % u64::from(shards.max(1))) as u32
}

impl ShardPlan {
    /// The images of shard `k`, in path order.
    pub fn shard_entries(&self, k: u32) -> Vec<&PlannedImage> {
        self.entries.iter().filter(|e| e.shard == k).collect()
    }

    /// Shard `k`'s parts: consecutive chunks of [`Self::shard_entries`] of `part_rows` images.
    pub fn parts(&self, k: u32) -> Vec<Vec<&PlannedImage>> {
        self.shard_entries(k)
            .chunks(self.part_rows.max(1))
            .map(<[_]>::to_vec)
            .collect()
    }

    /// sha256 (hex) of the plan as compact JSON with `checksum` set to null.
    pub fn compute_checksum(&self) -> String {
        let mut p = self.clone();
        p.checksum = None;
        let bytes = serde_json::to_vec(&p).expect("the plan serialises to JSON");
        hex::encode(Sha256::digest(&bytes))
    }

    /// Stamps the checksum; the bytes to store.
    pub fn seal(&mut self) -> Vec<u8> {
        self.checksum = Some(self.compute_checksum());
        serde_json::to_vec_pretty(self).expect("the plan serialises to JSON")
    }

    /// The plan stored at `store`'s root, checked: its format, its checksum, and every entry's
    /// path against the path rule (the crate's one path rule, relative to `images`).
    pub fn load(store: &dyn storage::Storage) -> Result<ShardPlan, ExtractError> {
        let url = storage::join(&store.url(), PLAN_KEY);
        let plan: ShardPlan = read_json(store, PLAN_KEY)?.ok_or_else(|| ExtractError::Config {
            field: "plan",
            reason: format!(
                "{url}: no plan here; make one with `vggcache plan --out {}`",
                store.url()
            ),
        })?;
        if plan.format != PLAN_FORMAT {
            return Err(CacheError::BadRecord {
                url,
                message: format!(
                    "plan format '{}', this vggcache reads '{PLAN_FORMAT}'",
                    plan.format
                ),
            }
            .into());
        }
        let want = plan.compute_checksum();
        if plan.checksum.as_deref() != Some(want.as_str()) {
            return Err(CacheError::BadRecord {
                url,
                message: format!(
                    "plan fails its checksum (recorded {}, content hashes to {want}): it was \
                     edited by hand or damaged; make a new plan with `vggcache plan --images \
                     DIR --out NEW_ROOT` (a plan cannot be changed once shards ran from it)",
                    plan.checksum.as_deref().unwrap_or("none")
                ),
            }
            .into());
        }
        let images = plan.images.display().to_string();
        for e in &plan.entries {
            crate::safe_path::check_name(&e.path, &images).map_err(|source| {
                CacheError::UnsafeEntry {
                    source,
                    fix: FIX_PLAN_ENTRY,
                }
            })?;
        }
        Ok(plan)
    }
}

/// The way out when a plan lists an image that breaks the path rule.
pub(crate) const FIX_PLAN_ENTRY: &str = "A plan lists only images under its images folder; \
nothing was read for this entry. Make a new plan with `vggcache plan --images DIR --out \
NEW_ROOT`";

/// Settings of `vggcache plan`. `Default` holds the defaults the CLI shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    /// Folder of images to plan.
    pub images: PathBuf,
    /// Root of the sharded cache: a folder or `s3://bucket/prefix`.
    pub out: String,
    /// The trunk ONNX model every shard will run.
    pub model: PathBuf,
    /// How the trunk is loaded for fingerprinting.
    pub trunk: TrunkOptions,
    /// Number of shards, ≥ 1.
    pub shards: u32,
    /// Images per part, ≥ 1. Default 256 (one Parquet row group; ~25 MB of VGG16 features).
    pub part_rows: usize,
    /// Fraction of labelled images held out as `val` when the folder has no val split.
    pub val_fraction: f64,
    /// Only these images (paths relative to `images`, one per line; `#` comments).
    pub file_list: Option<PathBuf>,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            images: PathBuf::new(),
            out: String::new(),
            model: PathBuf::new(),
            trunk: TrunkOptions::default(),
            shards: 1,
            part_rows: 256,
            val_fraction: super::super::ExtractConfig::default().val_fraction,
            file_list: None,
        }
    }
}

/// What `plan` did.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSummary {
    /// The sharded cache's root.
    pub url: String,
    /// Images planned.
    pub images: usize,
    /// Files skipped while planning.
    pub skipped: usize,
    /// Images per shard.
    pub per_shard: Vec<usize>,
    /// False when the same plan was already stored (planning again is a no-op).
    pub created: bool,
}

/// Discovers the images, fixes the identity from the trunk model, assigns shards and stores the
/// plan at `cfg.out` with put-if-absent (the same plan again is a no-op; another is refused).
pub fn make_plan(cfg: &PlanConfig) -> Result<PlanSummary, ExtractError> {
    let bad = |field, reason: String| Err(ExtractError::Config { field, reason });
    if cfg.shards == 0 {
        return bad("shards", "must be at least 1".into());
    }
    if cfg.part_rows == 0 {
        return bad("part_rows", "must be at least 1".into());
    }
    if !(0.0..1.0).contains(&cfg.val_fraction) {
        return bad(
            "val_fraction",
            format!("{} is not in [0, 1)", cfg.val_fraction),
        );
    }
    let found = Plan::discover(&cfg.images, cfg.val_fraction)?;
    let wanted = match &cfg.file_list {
        Some(list) => Some(read_file_list(list, &found)?),
        None => None,
    };
    let trunk = Trunk::load(&cfg.model, &cfg.trunk)?;
    dataset::check_spec(&trunk.info().preprocess)?;
    let identity = identity_of(trunk.info());
    drop(trunk);
    let ds = &found.dataset;
    let mut entries = Vec::with_capacity(ds.entries.len());
    let mut skipped: Vec<(String, String)> = ds
        .skipped
        .iter()
        .map(|s| (s.rel_path.clone(), s.reason.clone()))
        .collect();
    for (e, h) in ds.entries.iter().zip(&found.hashes) {
        if wanted.as_ref().is_some_and(|w| !w.contains(&e.rel_path)) {
            continue;
        }
        // A shard run reads an entry only under the images folder: one that resolves outside it
        // (a symlink leading out) is a reported skip here, never planned.
        if let Err(e2) = crate::safe_path::resolve_under(&ds.root, &e.rel_path) {
            skipped.push((e.rel_path.clone(), format!("not planned: {e2}")));
            continue;
        }
        match h {
            Ok(hash) => entries.push(PlannedImage {
                path: e.rel_path.clone(),
                split: e.split,
                label: e.label,
                class: e.class.clone(),
                content_hash: hash.clone(),
                shard: shard_of(&e.rel_path, cfg.shards),
            }),
            Err(reason) => skipped.push((e.rel_path.clone(), reason.clone())),
        }
    }
    if entries.is_empty() {
        return bad(
            "images",
            format!("{}: no usable image to plan", cfg.images.display()),
        );
    }
    let mut plan = ShardPlan {
        format: PLAN_FORMAT.into(),
        images: ds.root.canonicalize().unwrap_or_else(|_| ds.root.clone()),
        layout: ds.layout,
        fingerprint: identity.fingerprint(),
        identity,
        classes: ds.classes.clone(),
        val_fraction: cfg.val_fraction,
        shards: cfg.shards,
        part_rows: cfg.part_rows,
        entries,
        skipped,
        checksum: None,
    };
    let store = storage::open(&cfg.out).map_err(CacheError::from)?;
    let bytes = plan.seal();
    let created = store
        .put_if_absent(PLAN_KEY, &bytes)
        .map_err(CacheError::from)?;
    if !created {
        let old = ShardPlan::load(&*store)?;
        if old != plan {
            return Err(CacheError::BadRecord {
                url: storage::join(&store.url(), PLAN_KEY),
                message: "another plan is already stored here (other images, model, shards or \
                          settings); plan into a new --out"
                    .into(),
            }
            .into());
        }
    }
    let mut per_shard = vec![0; cfg.shards as usize];
    for e in &plan.entries {
        per_shard[e.shard as usize] += 1;
    }
    Ok(PlanSummary {
        url: store.url(),
        images: plan.entries.len(),
        skipped: plan.skipped.len(),
        per_shard,
        created,
    })
}

/// The relative paths listed in `list` (one per line, blank lines and `#` comments ignored;
/// absolute paths under the images root are made relative). Every one must be a discovered image.
fn read_file_list(list: &Path, found: &Plan) -> Result<HashSet<String>, ExtractError> {
    let text = std::fs::read_to_string(list).map_err(|e| ExtractError::Config {
        field: "file_list",
        reason: format!(
            "cannot read {}: {e}; pass a text file of image paths, one per line",
            list.display()
        ),
    })?;
    let root = found
        .dataset
        .root
        .canonicalize()
        .unwrap_or_else(|_| found.dataset.root.clone());
    let known: HashSet<&str> = found
        .dataset
        .entries
        .iter()
        .map(|e| e.rel_path.as_str())
        .collect();
    let mut wanted = HashSet::new();
    let mut unknown = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = Path::new(line);
        let rel = match p
            .strip_prefix(&root)
            .or_else(|_| p.strip_prefix(&found.dataset.root))
        {
            Ok(r) => r.to_string_lossy().replace('\\', "/"),
            Err(_) => line.trim_start_matches("./").to_string(),
        };
        if known.contains(rel.as_str()) {
            wanted.insert(rel);
        } else {
            unknown.push(line.to_string());
        }
    }
    if !unknown.is_empty() {
        return Err(ExtractError::Config {
            field: "file_list",
            reason: format!(
                "{}: {} listed path(s) are not images found under {} (first: {})",
                list.display(),
                unknown.len(),
                found.dataset.root.display(),
                unknown[..unknown.len().min(3)].join(", ")
            ),
        });
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_and_spreads() {
        // Literal values, computed with Python's hashlib (sha256 of b"vggcache-shard\0" + path,
        // first 8 bytes big-endian): a change of the hash would silently reshuffle stored plans.
        assert_eq!(shard_of("train/cat/cat.1.jpg", 16), 8);
        assert_eq!(shard_of("train/cat/cat.1.jpg", 1000), 568);
        assert_eq!(shard_of("train/dog/dog.7.jpg", 1000), 468);
        assert_eq!(shard_of("a.jpg", 1000), 820);
        let counts = (0..4000).fold([0usize; 4], |mut c, i| {
            c[shard_of(&format!("img/{i}.jpg"), 4) as usize] += 1;
            c
        });
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(shard_of("anything", 1), 0);
    }
}
