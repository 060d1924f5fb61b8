//! A cache written by many processes or machines at once: each writes uniquely named parts, claims
//! them with put-if-absent records, and one commit step publishes the manifest that readers trust.
//!
//! Layout under a storage root (a local folder or `s3://bucket/prefix`, see [`crate::storage`]):
//! ```text
//! plan.json                                        the plan (which image goes to which shard)
//! parts/shard-00003/part-00001-<attempt>.parquet   a part: a shard file (schema, footer identity
//!                                                  and checksums as in a one-machine cache),
//!                                                  named by its attempt, never overwritten
//! records/shard-00003/part-00001.json              put-if-absent: the attempt whose file IS part 1
//! records/shard-00003/commit.json                  put-if-absent: shard 3 is complete
//! skipped.csv, manifest.json                       written by the commit, manifest last
//! ```
//! Invariants: a part file becomes data only through its record, a record only through its
//! shard's commit record, and all of them only through `manifest.json`, which lists exactly the
//! recorded parts. Two attempts of one shard may both write part files; one record wins per part
//! and per shard, so no row is listed twice. Files no record lists are orphans ([`orphans`]):
//! listed by `cache verify`, deleted by `cache gc`, never read.

use std::collections::HashSet;
use std::path::Path;

use arrow::array::RecordBatch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{CacheIdentity, Manifest, ShardInfo};
use super::schema::{to_batch, Columns, FeatureDtype, FeatureRow, WriteOptions};
use super::shard::{check_shard, write_shard};
use super::{CacheError, MANIFEST_FILE, SKIPPED_FILE};
use crate::fsutil;
use crate::storage::{Listed, Storage};

/// Key of the plan file under the root.
pub const PLAN_KEY: &str = "plan.json";
/// Folder of part files.
pub const PARTS_DIR: &str = "parts";
/// Folder of part and shard records.
pub const RECORDS_DIR: &str = "records";

/// The way out when a part record names a file that breaks the path rule.
const FIX_RECORD_ENTRY: &str = "The record under records/ was not written by vggcache as it is; \
delete that shard's records (records/shard-K/) and run `vggcache extract --plan ROOT --shard \
K/N` for it again, then commit";

/// Key of part `part` of shard `shard` written by `attempt`.
pub fn part_key(shard: u32, part: u32, attempt: &str) -> String {
    format!("{PARTS_DIR}/shard-{shard:05}/part-{part:05}-{attempt}.parquet")
}

/// Key of the record claiming part `part` of shard `shard`.
pub fn part_record_key(shard: u32, part: u32) -> String {
    format!("{RECORDS_DIR}/shard-{shard:05}/part-{part:05}.json")
}

/// Key of shard `shard`'s commit record.
pub fn commit_key(shard: u32) -> String {
    format!("{RECORDS_DIR}/shard-{shard:05}/commit.json")
}

/// The record of one part: which attempt's file it is, and the images of the part that could
/// not be used (so a resumed attempt that reuses the part still reports them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Shard index (0-based, of the plan).
    pub shard: u32,
    /// Part index within the shard.
    pub part: u32,
    /// Id of the attempt that wrote the part.
    pub attempt: String,
    /// The part file as the manifest will list it (`file` is its key); `None` when no image of
    /// the part could be used.
    pub file: Option<ShardInfo>,
    /// `(path, reason)` of each image of the part that could not be used.
    pub skipped: Vec<(String, String)>,
}

/// A shard's commit record: the attempt that completed it and its parts in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardCommit {
    /// Shard index (0-based, of the plan).
    pub shard: u32,
    /// Id of the attempt that completed the shard.
    pub attempt: String,
    /// The parts of the shard, in order.
    pub parts: Vec<PartRecord>,
    /// When the record was written (RFC 3339, UTC).
    pub created: String,
}

/// `rows` as one record batch of the cache schema, checked like a writer's rows (dim, finite
/// values, labels against `classes`, no path twice).
pub fn rows_to_batch(
    rows: &[FeatureRow],
    dim: usize,
    classes: &[String],
) -> Result<RecordBatch, CacheError> {
    // Sharded caches store float32 features (f16 parts are not planned yet).
    Ok(to_batch(
        Columns::from_rows(
            &rows.iter().map(|&r| r.into()).collect::<Vec<_>>(),
            dim,
            classes,
            FeatureDtype::F32,
        )?,
        dim,
    ))
}

/// Writes `batches` as one part file at the local `path` (atomically), to be listed as `name`.
pub fn write_part(
    path: &Path,
    name: &str,
    identity: &CacheIdentity,
    classes: &[String],
    batches: Vec<RecordBatch>,
) -> Result<ShardInfo, CacheError> {
    let opts = WriteOptions::for_dtype(FeatureDtype::F32);
    let m = Manifest::new(
        identity,
        classes,
        1,
        opts.compression.name(),
        opts.row_group_rows,
    );
    write_shard(path, name, &m, &opts, batches.into_iter().map(Ok))
}

/// The image paths the part file of `info` holds, in row order, read from the file after its
/// size, sha256, schema (`dim` float32 features) and labels (against `classes`) are checked: a
/// local root's file in place, an object store's through a temporary copy (deleted after).
pub fn part_paths(
    store: &dyn Storage,
    info: &ShardInfo,
    dim: usize,
    classes: &[String],
) -> Result<Vec<String>, CacheError> {
    let (path, tmp) = match store.local_root() {
        Some(root) => (root.join(&info.file), None),
        None => {
            let tmp = std::env::temp_dir().join(format!(
                "vggcache-commit-{:016x}.parquet",
                rand::random::<u64>()
            ));
            if !store.get_file(&info.file, &tmp)? {
                return Err(CacheError::MissingShard {
                    path: crate::storage::join(&store.url(), &info.file).into(),
                });
            }
            (tmp.clone(), Some(tmp))
        }
    };
    let paths = check_shard(path, info, dim, FeatureDtype::F32)
        .and_then(|s| s.read_meta(classes))
        .map(|m| m.paths);
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_file(tmp);
    }
    paths
}

/// Reads the JSON value at `key`; `None` when absent.
pub fn read_json<T: DeserializeOwned>(
    store: &dyn Storage,
    key: &str,
) -> Result<Option<T>, CacheError> {
    let Some(bytes) = store.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CacheError::BadRecord {
            url: crate::storage::join(&store.url(), key),
            message: format!("not a valid record: {e}"),
        })
}

/// The manifest at the root, if committed.
pub fn read_manifest(store: &dyn Storage) -> Result<Option<Manifest>, CacheError> {
    let Some(bytes) = store.get(MANIFEST_FILE)? else {
        return Ok(None);
    };
    let url = crate::storage::join(&store.url(), MANIFEST_FILE);
    Manifest::parse(Path::new(&url), bytes).map(Some)
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The manifest now published.
    pub manifest: Manifest,
    /// False when an identical commit was already there (a repeated commit is a no-op).
    pub created: bool,
}

/// Publishes the manifest listing every part of `commits` (in shard, then part order), after
/// checking each part file is present with its recorded size, and `skipped_csv` before it.
/// The manifest is created with put-if-absent: a second commit of the same parts is a no-op,
/// one of different parts is refused.
pub fn publish(
    store: &dyn Storage,
    identity: &CacheIdentity,
    classes: &[String],
    commits: &[ShardCommit],
    skipped_csv: &[u8],
) -> Result<Published, CacheError> {
    let present: std::collections::HashMap<String, u64> = store
        .list(PARTS_DIR)?
        .into_iter()
        .map(|l| (l.key, l.bytes))
        .collect();
    let opts = WriteOptions::for_dtype(FeatureDtype::F32);
    let mut m = Manifest::new(
        identity,
        classes,
        1,
        opts.compression.name(),
        opts.row_group_rows,
    );
    for info in commits
        .iter()
        .flat_map(|c| &c.parts)
        .filter_map(|p| p.file.as_ref())
    {
        crate::safe_path::check_name(&info.file, &store.url()).map_err(|source| {
            CacheError::UnsafeEntry {
                source,
                fix: FIX_RECORD_ENTRY,
            }
        })?;
        let bad = |message: String| CacheError::BadRecord {
            url: crate::storage::join(&store.url(), &info.file),
            message,
        };
        if !info.file.starts_with(&format!("{PARTS_DIR}/")) {
            return Err(bad(format!(
                "a part record names a file outside {PARTS_DIR}/. {FIX_RECORD_ENTRY}"
            )));
        }
        match present.get(&info.file) {
            Some(&b) if b == info.bytes => {}
            Some(&b) => {
                return Err(bad(format!(
                    "part is {b} bytes, its record says {}",
                    info.bytes
                )))
            }
            None => return Err(bad("part file listed by its record is missing".into())),
        }
        m.shards.push(info.clone());
    }
    if let Some(old) = read_manifest(store)? {
        return same_commit(store, old, &m);
    }
    store.put(SKIPPED_FILE, skipped_csv)?;
    let bytes = m.seal();
    if store.put_if_absent(MANIFEST_FILE, &bytes)? {
        return Ok(Published {
            manifest: m,
            created: true,
        });
    }
    let old = read_manifest(store)?.expect("put-if-absent refused: the manifest exists");
    same_commit(store, old, &m)
}

/// `Ok` (not created) when `old` lists the same parts of the same identity as `new`.
fn same_commit(
    store: &dyn Storage,
    old: Manifest,
    new: &Manifest,
) -> Result<Published, CacheError> {
    if old.fingerprint == new.fingerprint && old.classes == new.classes && old.shards == new.shards
    {
        Ok(Published {
            manifest: old,
            created: false,
        })
    } else {
        Err(CacheError::BadRecord {
            url: crate::storage::join(&store.url(), MANIFEST_FILE),
            message: "a different commit is already published here (other parts or identity); \
                      commit into a new location, or delete the old manifest.json knowingly"
                .into(),
        })
    }
}

/// Files under `parts/` that nothing lists: neither the manifest (once committed) nor a part
/// record (a claimed part is never an orphan, even when a manifest that is not this root's
/// commit fails to list it). Sorted by key.
pub fn orphans(store: &dyn Storage) -> Result<Vec<Listed>, CacheError> {
    let mut live: HashSet<String> = match read_manifest(store)? {
        Some(m) => m.shards.into_iter().map(|s| s.file).collect(),
        None => HashSet::new(),
    };
    for l in store.list(RECORDS_DIR)? {
        if l.key.ends_with("commit.json") || !l.key.ends_with(".json") {
            continue;
        }
        if let Some(r) = read_json::<PartRecord>(store, &l.key)? {
            live.extend(r.file.map(|f| f.file));
        }
    }
    Ok(store
        .list(PARTS_DIR)?
        .into_iter()
        .filter(|l| !live.contains(&l.key))
        .collect())
}

/// Deletes the [`orphans`] of a committed root; refuses before the commit (a running attempt's
/// parts would look orphaned). Returns what was deleted.
pub fn gc(store: &dyn Storage) -> Result<Vec<Listed>, CacheError> {
    if read_manifest(store)?.is_none() {
        return Err(CacheError::BadRecord {
            url: crate::storage::join(&store.url(), MANIFEST_FILE),
            message: "not committed yet: gc runs after `vggcache cache commit` (before it, a \
                      running attempt's parts would look orphaned)"
                .into(),
        });
    }
    let gone = orphans(store)?;
    for o in &gone {
        store.delete(&o.key)?;
    }
    Ok(gone)
}

/// Copies the committed cache at `store` into the local folder `dir` (parts already there with
/// the same sha256 are kept), the manifest last, so `dir` opens like a one-machine cache.
pub fn pull(store: &dyn Storage, dir: &Path) -> Result<Manifest, CacheError> {
    let url = crate::storage::join(&store.url(), MANIFEST_FILE);
    let bytes = store
        .get(MANIFEST_FILE)?
        .ok_or_else(|| match store.get(PLAN_KEY) {
            Ok(Some(_)) => CacheError::UncommittedRoot {
                path: store.url(),
                plan: PLAN_KEY,
            },
            _ => CacheError::NothingPublished { url: store.url() },
        })?;
    let m = Manifest::parse(Path::new(&url), bytes.clone())?;
    std::fs::create_dir_all(dir).map_err(CacheError::io(dir))?;
    for s in &m.shards {
        // The names were checked by `parse`; symlinks already in `dir` are checked here.
        let to = crate::safe_path::resolve_under(dir, &s.file).map_err(super::unsafe_shard)?;
        if s.sha256.is_some() && file_sha256(&to).as_ref() == s.sha256.as_ref() {
            continue;
        }
        if !store.get_file(&s.file, &to)? {
            return Err(CacheError::MissingShard {
                path: crate::storage::join(&store.url(), &s.file).into(),
            });
        }
    }
    if let Some(csv) = store.get(SKIPPED_FILE)? {
        fsutil::write_atomic(&dir.join(SKIPPED_FILE), &csv)?;
    }
    fsutil::write_atomic(&dir.join(MANIFEST_FILE), &bytes)?;
    Ok(m)
}

/// sha256 (hex) of a local file, `None` when it cannot be read.
fn file_sha256(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(hex::encode(h.finalize()))
}
