//! `manifest.json`: the cache's identity and shard list, and its atomic replacement on disk.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::schema::FeatureDtype;
use super::CacheError;
use crate::fsutil::write_atomic;
use crate::spec::PreprocessSpec;

/// Version of the on-disk layout this code writes and reads. Version 2 added the shard and
/// manifest checksums; a version-1 cache is upgraded by the writer (`vggcache extract`).
pub const FORMAT_VERSION: u32 = 2;
/// The older layout the writer still opens (and upgrades): no checksums.
pub const FORMAT_VERSION_UNCHECKED: u32 = 1;

/// Which trunk model made the features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// sha256 (hex) of the model file: the part that decides whether cached features are reusable.
    pub fingerprint: String,
    /// Where the model was loaded from (informative; a moved model with the same bytes matches).
    pub path: String,
    /// Where the weights come from (e.g. "torchvision VGG16_Weights.IMAGENET1K_V1").
    pub provenance: String,
    /// ONNX metadata props, or anything else worth recording.
    pub metadata: BTreeMap<String, String>,
}

/// What makes cached features reusable: the model's bytes, the preprocessing and the feature width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheIdentity {
    /// The trunk model (its fingerprint and name).
    pub model: ModelIdentity,
    /// How images became the trunk input.
    pub preprocess: PreprocessSpec,
    /// Feature dimension D.
    pub dim: usize,
}

impl CacheIdentity {
    /// sha256 (hex) over the model fingerprint, the preprocessing spec (as JSON) and `dim`.
    pub fn fingerprint(&self) -> String {
        let spec = serde_json::to_string(&self.preprocess)
            .expect("PreprocessSpec serialises to JSON (plain numbers and strings)");
        let mut h = Sha256::new();
        h.update(self.model.fingerprint.as_bytes());
        h.update([0]);
        h.update(spec.as_bytes());
        h.update([0]);
        h.update(self.dim.to_le_bytes());
        hex::encode(h.finalize())
    }

    /// One line naming what the identity is, for error messages.
    pub fn describe(&self) -> String {
        let p = &self.preprocess;
        format!(
            "model sha256 {} ({}), preprocessing {}x{} {:?} scale {} mean {:?} std {:?} {}, dim {}",
            self.model.fingerprint,
            self.model.path,
            p.width,
            p.height,
            p.channel_order,
            p.scale,
            p.mean,
            p.std,
            p.resize,
            self.dim
        )
    }
}

/// One Parquet shard listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name relative to the cache folder.
    pub file: String,
    /// Rows in the shard.
    pub rows: usize,
    /// File size in bytes (a truncated shard is caught before Parquet parses it).
    pub bytes: u64,
    /// sha256 (hex) of the whole file, recorded when the shard was written; checked on open.
    /// `None` only in a version-1 manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A change of the shard list recorded before its files move: the list the manifest will hold
/// (new files may still wait under `pending/` or as `*.staged`) and the listed files it retires
/// (already dropped from [`Manifest::shards`], deleted next).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The shard list the manifest will hold once the change completes.
    pub shards: Vec<ShardInfo>,
    /// Listed files this change retires (deleted once it completes).
    pub retire: Vec<String>,
}

/// The cache's manifest: the single source of truth about which shards hold which rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of the cache format (the reader checks it).
    pub format_version: u32,
    /// vggcache version that wrote the manifest.
    pub tool_version: String,
    /// [`CacheIdentity::fingerprint`] of `model`, `preprocess`, `dim`.
    pub fingerprint: String,
    /// The trunk model (its fingerprint and name).
    pub model: ModelIdentity,
    /// How images became the trunk input.
    pub preprocess: PreprocessSpec,
    /// Feature dimension D.
    pub dim: usize,
    /// Class names; `label` i is `classes[i]`.
    pub classes: Vec<String>,
    /// The shards in place; readers read exactly these.
    pub shards: Vec<ShardInfo>,
    /// Shard file names are `shard-g{generation:04}-{seq:06}.parquet`; a `force` rebuild bumps it.
    pub generation: u32,
    /// Sequence number of the next shard to write.
    pub next_seq: u64,
    /// Parquet compression of the shards, e.g. "zstd(1)".
    pub compression: String,
    /// Maximum rows per Parquet row group.
    pub row_group_rows: usize,
    /// Storage type of the features; absent (= f32) in every manifest written before f16
    /// existed, and still omitted for f32, so an f32 manifest and its checksum are unchanged.
    #[serde(default, skip_serializing_if = "FeatureDtype::is_f32")]
    pub feature_dtype: FeatureDtype,
    /// When the cache was created (RFC 3339, UTC).
    pub created: String,
    /// When the manifest was last written (RFC 3339, UTC).
    pub updated: String,
    /// A change in progress (absent otherwise): readers follow `shards`, which lists only files
    /// in place; the writer's next open completes the change (see [`PendingCommit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committing: Option<PendingCommit>,
    /// sha256 (hex) of this manifest serialised as compact JSON with `checksum` null: a hand
    /// edit or a damaged byte is caught on load. `None` only in a version-1 manifest.
    #[serde(default)]
    pub checksum: Option<String>,
}

impl Manifest {
    /// Lists the shards of the change an interrupted commit recorded in `committing` (the state
    /// it commits to) and returns the files that change retires; `None` when none was recorded.
    /// In memory only: deleting the retired files is the writer's part.
    pub(crate) fn adopt_change(&mut self) -> Option<Vec<String>> {
        let change = self.committing.take()?;
        self.shards = change.shards;
        Some(change.retire)
    }

    /// An empty manifest for `identity`.
    pub(crate) fn new(
        identity: &CacheIdentity,
        classes: &[String],
        generation: u32,
        compression: String,
        row_group_rows: usize,
    ) -> Manifest {
        let now = now();
        Manifest {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint: identity.fingerprint(),
            model: identity.model.clone(),
            preprocess: identity.preprocess.clone(),
            dim: identity.dim,
            classes: classes.to_vec(),
            shards: Vec::new(),
            generation,
            next_seq: 0,
            compression,
            row_group_rows,
            feature_dtype: FeatureDtype::F32,
            created: now.clone(),
            updated: now,
            committing: None,
            checksum: None,
        }
    }

    /// The identity recorded in this manifest.
    pub fn identity(&self) -> CacheIdentity {
        CacheIdentity {
            model: self.model.clone(),
            preprocess: self.preprocess.clone(),
            dim: self.dim,
        }
    }

    /// Total rows over all shards.
    pub fn rows(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }

    /// Reads and checks `path`. `Ok(None)` when it does not exist.
    pub(crate) fn load(path: &Path) -> Result<Option<Manifest>, CacheError> {
        let bytes = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io(path)(e)),
        };
        Self::parse(path, bytes).map(Some)
    }

    /// Parses and checks manifest bytes read from `path` (named in errors).
    pub(crate) fn parse(path: &Path, bytes: Vec<u8>) -> Result<Manifest, CacheError> {
        let text = String::from_utf8(bytes).map_err(|e| CacheError::BadManifest {
            path: path.into(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CacheError::BadManifest {
                path: path.into(),
                message: e.to_string(),
            })?;
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| CacheError::BadManifest {
                path: path.into(),
                message: "no numeric format_version".into(),
            })?;
        if found != u64::from(FORMAT_VERSION) && found != u64::from(FORMAT_VERSION_UNCHECKED) {
            return Err(CacheError::UnsupportedFormat {
                path: path.into(),
                expected: FORMAT_VERSION,
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        let m: Manifest = serde_json::from_value(value).map_err(|e| CacheError::BadManifest {
            path: path.into(),
            message: e.to_string(),
        })?;
        if m.format_version == FORMAT_VERSION {
            let want = m.compute_checksum();
            match &m.checksum {
                Some(found) if *found == want => {}
                found => {
                    return Err(CacheError::ManifestChecksum {
                        path: path.into(),
                        expected: want,
                        found: found.clone().unwrap_or_else(|| "none".into()),
                    })
                }
            }
            if let Some(s) = m.shards.iter().find(|s| s.sha256.is_none()) {
                return Err(CacheError::BadManifest {
                    path: path.into(),
                    message: format!("shard {} has no sha256", s.file),
                });
            }
        }
        if m.dim == 0 {
            return Err(CacheError::BadManifest {
                path: path.into(),
                message: "dim is 0".into(),
            });
        }
        let root = path
            .parent()
            .unwrap_or(Path::new("."))
            .display()
            .to_string();
        for s in &m.shards {
            crate::safe_path::check_name(&s.file, &root).map_err(super::unsafe_shard)?;
        }
        Ok(m)
    }

    /// sha256 (hex) of the manifest as compact JSON with `checksum` set to null.
    pub fn compute_checksum(&self) -> String {
        let mut m = self.clone();
        m.checksum = None;
        let bytes = serde_json::to_vec(&m).expect("Manifest serialises to JSON");
        hex::encode(Sha256::digest(&bytes))
    }

    /// Replaces `path` atomically ([`write_atomic`]: `path.tmp`, fsync, rename, fsync the folder).
    pub(crate) fn store(&mut self, path: &Path) -> Result<(), CacheError> {
        Ok(write_atomic(path, &self.seal())?)
    }

    /// Stamps `updated`, the format version and the checksum; the bytes to store.
    pub(crate) fn seal(&mut self) -> Vec<u8> {
        self.updated = now();
        self.format_version = FORMAT_VERSION;
        self.checksum = Some(self.compute_checksum());
        serde_json::to_vec_pretty(self).expect("Manifest serialises to JSON")
    }
}

/// Current UTC time, RFC 3339.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
