//! One shard file's integrity: checksums written with it, checked before it is decoded.
//!
//! A shard carries two checksums. The manifest records the sha256 of the whole file (written by
//! [`HashingWriter`] as the bytes go out), so any changed byte is caught before Parquet decodes
//! anything. The file's own footer records, under [`KV_DATA_SHA256`], the sha256 of its row
//! groups (every data page), plus the cache identity ([`KV_FINGERPRINT`]) and class list
//! ([`KV_CLASSES`]) it was written for: a shard is self-verifying, so a lost or damaged manifest
//! can be rebuilt from intact shards without trusting unchecked bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CacheError;

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

/// A file sink that hashes every byte written through it.
pub(crate) struct HashingWriter {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    pub fn new(file: File) -> Self {
        HashingWriter {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// sha256 (hex) of the bytes written so far, and their count.
    pub fn digest_so_far(&self) -> (String, u64) {
        (hex::encode(self.hasher.clone().finalize()), self.bytes)
    }

    /// The file, and the sha256 (hex) of everything written.
    pub fn finish(self) -> (File, String) {
        (self.file, hex::encode(self.hasher.finalize()))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// sha256 (hex) of the first `len` bytes of `file` (from its start), streamed.
pub(crate) fn sha256_prefix(file: &mut File, len: u64, path: &Path) -> Result<String, CacheError> {
    let mut digests = sha256_prefixes(file, &[len], path)?;
    Ok(digests.remove(0))
}

/// sha256 (hex) of the first `lens[i]` bytes of `file`, for every `i` (`lens` ascending), in one
/// streamed pass: the hasher's state is copied at each length on the way.
pub(crate) fn sha256_prefixes(
    file: &mut File,
    lens: &[u64],
    path: &Path,
) -> Result<Vec<String>, CacheError> {
    debug_assert!(
        lens.windows(2).all(|w| w[0] <= w[1]),
        "lens must be ascending"
    );
    file.seek(SeekFrom::Start(0))
        .map_err(CacheError::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        while done < len {
            let want = buf
                .len()
                .min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want]).map_err(CacheError::io(path))?;
            if n == 0 {
                return Err(CacheError::CorruptShard {
                    path: path.to_path_buf(),
                    message: format!("file ended {} bytes early", len - done),
                });
            }
            h.update(&buf[..n]);
            done += n as u64;
        }
        out.push(hex::encode(h.clone().finalize()));
    }
    Ok(out)
}

/// Byte offset where the Parquet footer starts (`len - 8 - footer length`), from the last 8 bytes.
pub(crate) fn footer_start(file: &mut File, path: &Path) -> Result<u64, CacheError> {
    let corrupt = |m: String| CacheError::CorruptShard {
        path: path.to_path_buf(),
        message: m,
    };
    let len = file.metadata().map_err(CacheError::io(path))?.len();
    if len < 12 {
        return Err(corrupt(format!("{len} bytes is too short for Parquet")));
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(len - 8))
        .map_err(CacheError::io(path))?;
    file.read_exact(&mut tail).map_err(CacheError::io(path))?;
    if &tail[4..] != b"PAR1" {
        return Err(corrupt("no PAR1 magic at the end".into()));
    }
    let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    len.checked_sub(8 + footer)
        .filter(|&s| s >= 4)
        .ok_or_else(|| {
            corrupt(format!(
                "footer length {footer} exceeds the file ({len} bytes)"
            ))
        })
}

/// Runs a decode step, turning a panic inside Parquet/Arrow (they assert on some malformed
/// inputs, e.g. a validity bitmap shorter than its column) into [`CacheError::CorruptShard`].
/// Checksums catch damaged bytes before decoding; this is the second line.
pub(crate) fn no_panic<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, CacheError>,
) -> Result<T, CacheError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(CacheError::CorruptShard {
                path: path.to_path_buf(),
                message: format!("decoding failed: {what}"),
            })
        }
    }
}
