//! One shard file: its name and places on disk, writing it ([`write_shard`]) and checking and
//! reading it ([`check_shard`], [`CheckedShard`]), with its integrity recorded as it is written.
//!
//! A shard carries two checksums. The manifest records the sha256 of the whole file (hashed
//! as the bytes go out), so any changed byte is caught before Parquet decodes
//! anything. The file's own footer records, under [`KV_DATA_SHA256`], the sha256 of its row
//! groups (every data page), plus the cache identity ([`KV_FINGERPRINT`]) and class list
//! ([`KV_CLASSES`]) it was written for: a shard is self-verifying, so a lost or damaged manifest
//! can be rebuilt from intact shards without trusting unchecked bytes.

mod checksum;
mod read;
mod write;

use std::fs;
use std::path::{Path, PathBuf};

pub(crate) use checksum::sha256_prefix;
pub(crate) use read::{
    check_shard, check_unlisted, footer_fingerprint, has_view_columns, read_all, CheckedShard,
    ShardMeta,
};
pub(crate) use write::write_shard;

use super::manifest::ShardInfo;
use super::CacheError;
use crate::fsutil;

/// Footer key: sha256 (hex) of the file's first [`KV_DATA_BYTES`] bytes: the magic and every
/// row group (the page indexes and the footer that follow are checked by Parquet's decoding and
/// by the manifest's whole-file sha256).
pub const KV_DATA_SHA256: &str = "vggcache.data_sha256";
/// Footer key: how many bytes [`KV_DATA_SHA256`] covers (decimal).
pub const KV_DATA_BYTES: &str = "vggcache.data_bytes";
/// Footer key: the [`super::CacheIdentity::fingerprint`] the features were made with.
pub const KV_FINGERPRINT: &str = "vggcache.fingerprint";
/// Footer key: the class list (JSON array) the `label` column indexes.
pub const KV_CLASSES: &str = "vggcache.classes";

/// Where shard `file` waits for its commit: `dir/pending/file.pending` (no `*.parquet` glob,
/// recursive or not, matches it).
pub(crate) fn pending_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(super::PENDING_DIR).join(format!("{file}.pending"))
}

/// `path` with `.staged` appended: a shard of a rebuild not yet swapped in.
pub(crate) fn staged_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".staged");
    PathBuf::from(s)
}

/// Every place listed shard `file` can be: the cache folder, `pending/` (written, its commit
/// interrupted before the move up) and `file.staged` (a rebuild's, before `finish` renamed it).
pub(crate) fn shard_places(dir: &Path, file: &str) -> [PathBuf; 3] {
    let plain = dir.join(file);
    [pending_path(dir, file), staged_path(&plain), plain]
}

/// File name of shard `seq` of generation `generation`: `shard-g{generation:04}-{seq:06}.parquet`.
pub(crate) fn shard_name(generation: u32, seq: u64) -> String {
    format!("shard-g{generation:04}-{seq:06}.parquet")
}

/// `(generation, seq)` of a shard named by [`shard_name`].
pub(crate) fn parse_shard_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("shard-g")?.strip_suffix(".parquet")?;
    let (g, seq) = rest.split_once('-')?;
    Some((g.parse().ok()?, seq.parse().ok()?))
}

/// Where the shards of one manifest live. Invariant: a listed shard is at [`Places::shard_path`]
/// once its commit completed; before, at [`Places::write_path`]; [`Places::promote`] moves it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Places<'a> {
    pub dir: &'a Path,
    /// A `force` rebuild is staged: listed shards are `file.staged` until `finish` swaps them in.
    pub staged: bool,
}

impl Places<'_> {
    /// Where listed shard `file` belongs: `dir/file`, or `dir/file.staged` while a rebuild is
    /// staged (so tools globbing `*.parquet` never see a half-built cache of another model).
    pub fn shard_path(&self, file: &str) -> PathBuf {
        let path = self.dir.join(file);
        if self.staged {
            staged_path(&path)
        } else {
            path
        }
    }

    /// Where shard `file` is written before the manifest lists it: `pending/file.pending`, or
    /// `file.staged` during a rebuild (names `*.parquet` globbing never matches).
    pub fn write_path(&self, file: &str) -> PathBuf {
        if self.staged {
            staged_path(&self.dir.join(file))
        } else {
            pending_path(self.dir, file)
        }
    }

    /// Where listed shard `file` is now: [`Places::shard_path`], or where an interrupted commit
    /// or `finish` left it ([`shard_places`]); `shard_path` when nowhere.
    pub fn locate(&self, file: &str) -> PathBuf {
        let want = self.shard_path(file);
        if want.exists() {
            return want;
        }
        shard_places(self.dir, file)
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or(want)
    }

    /// Moves every shard of `listed` that is still under `pending/` (or under another name a
    /// crash left it with) to [`Places::shard_path`], then fsyncs the folder if anything moved.
    pub fn promote(&self, listed: &[ShardInfo]) -> Result<(), CacheError> {
        let mut moved = false;
        for s in listed {
            let want = self.shard_path(&s.file);
            if want.exists() {
                continue;
            }
            let places = shard_places(self.dir, &s.file);
            if let Some(from) = places.iter().find(|p| **p != want && p.exists()) {
                fs::rename(from, &want).map_err(CacheError::io(&want))?;
                moved = true;
            }
        }
        if moved {
            fsutil::sync_dir(self.dir)?;
        }
        Ok(())
    }
}
