//! Checksums of a shard file: a hashing sink for writing, streamed sha256 of byte prefixes and the
//! Parquet footer's position for checking.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::cache::CacheError;

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
