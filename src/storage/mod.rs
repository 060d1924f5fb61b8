//! Where a sharded cache lives: a local folder or an object store (`s3://bucket/prefix`), behind
//! one small API ([`Storage`]): put, put-if-absent, get, list, delete, and whole files in and out.
//!
//! Keys are `/`-separated paths relative to the root (`parts/shard-00003/part-00001-….parquet`).
//! Local roots keep the crate's fsync + rename semantics ([`crate::fsutil`]); put-if-absent is a
//! hard link of a fsynced temp file, which the kernel refuses when the name exists. Object stores
//! go through the `object_store` crate (feature `s3`, on by default): put-if-absent is a
//! conditional PUT (`If-None-Match: *`), files of [`MULTIPART_BYTES`] or more go up as multipart
//! uploads. Credentials come from the environment only (`AWS_*`, including web-identity token
//! files, which `object_store` refreshes); no flag takes them and no message prints them.

mod local;
#[cfg(feature = "s3")]
mod object;
pub mod staging;

use std::path::Path;

pub use crate::safe_path::UnsafePath;
pub use local::LocalStore;

/// Files at least this large are uploaded in parts of this size (S3's minimum part is 5 MiB).
pub const MULTIPART_BYTES: usize = 8 << 20;

/// One listed object: its key under the root and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the storage root.
    pub key: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Errors of a storage backend, naming the URL or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A local file-system error.
    #[error(transparent)]
    Fs(#[from] crate::fsutil::FsError),
    /// The object store or its client failed.
    #[error("{url}: {message}")]
    Backend {
        /// The storage URL concerned.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A key that would lead outside a local root (the path rule, [`UnsafePath`]).
    #[error(transparent)]
    UnsafeKey(#[from] crate::safe_path::UnsafePath),
    /// A URL no backend of this build can use.
    #[error(
        "{url}: not a storage location vggcache can use (a local folder, or s3://bucket/prefix \
         in a build with the `s3` feature)"
    )]
    Unsupported {
        /// The storage URL concerned.
        url: String,
    },
    /// An object-store setting (an `AWS_*` variable or the root URL) that no client can use;
    /// checked before the client is built.
    #[error("{name}={value}: {problem}. Fix: {fix}")]
    Setting {
        /// The variable (`AWS_ENDPOINT`, …) or `root` for the URL itself.
        name: String,
        /// Its value as given (credentials in a URL are replaced by `***`).
        value: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A key the object store cannot address (an empty, `.` or `..` segment, a control character).
    #[error("{url}: key {key:?} cannot be stored: {reason}")]
    BadKey {
        /// The storage URL concerned.
        url: String,
        /// Key relative to the storage root.
        key: String,
        /// Why, in one line.
        reason: String,
    },
    /// An upload that failed on every try (the object is absent or keeps its old bytes).
    #[error(
        "{url}: upload of {} failed after {attempts} attempt(s): {cause}. Nothing was listed \
         under this key; re-run the same command to retry",
        file.display()
    )]
    Upload {
        /// The storage URL concerned.
        url: String,
        /// The local file being uploaded.
        file: std::path::PathBuf,
        /// Tries made.
        attempts: u32,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
}

/// A root under which keys are read and written. Every write is all-or-nothing: a reader sees
/// a key's old bytes (or nothing) or its new bytes, never a part.
pub trait Storage: Send + Sync {
    /// The root as the user wrote it (`/data/cache`, `s3://bucket/prefix`).
    fn url(&self) -> String;
    /// The local folder of a local root (`None` for an object store).
    fn local_root(&self) -> Option<&Path>;
    /// Creates or replaces `key`.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Creates `key` only if no object has that name: `Ok(true)` when this call created it,
    /// `Ok(false)` when it existed (its bytes are untouched).
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError>;
    /// The bytes of `key`, `None` when absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Uploads the local file `file` as `key` (multipart from [`MULTIPART_BYTES`]).
    fn put_file(&self, key: &str, file: &Path) -> Result<(), StorageError>;
    /// Downloads `key` into the local file `to` (atomically); `Ok(false)` when absent.
    fn get_file(&self, key: &str, to: &Path) -> Result<bool, StorageError>;
    /// Every key under `prefix` (a folder-like prefix, `""` for all), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError>;
    /// Deletes `key`; an absent key is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// True when `url` names an object store rather than a local path.
pub fn is_remote(url: &str) -> bool {
    url.contains("://") && !url.starts_with("file://")
}

/// Opens the root `url`: `s3://bucket/prefix` (feature `s3`, configured from the `AWS_*`
/// environment), `file:///path` or a local path (created when missing).
pub fn open(url: &str) -> Result<Box<dyn Storage>, StorageError> {
    open_with(url, &[])
}

/// [`open`] with object-store settings on top of the environment's: `(name, value)` pairs named
/// as the environment names them (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …). For programs that hold
/// their settings themselves (tests against a local S3 server); ignored for local roots.
pub fn open_with(
    url: &str,
    settings: &[(String, String)],
) -> Result<Box<dyn Storage>, StorageError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Box::new(LocalStore::open(Path::new(path))?));
    }
    if !is_remote(url) {
        return Ok(Box::new(LocalStore::open(Path::new(url))?));
    }
    #[cfg(feature = "s3")]
    if url.starts_with("s3://") || url.starts_with("s3a://") {
        return Ok(Box::new(object::ObjectRoot::s3(url, settings)?));
    }
    let _ = settings;
    Err(StorageError::Unsupported { url: url.into() })
}

/// `a/b` joined with `/` (keys never start or end with `/`).
pub fn join(a: &str, b: &str) -> String {
    match (a.trim_end_matches('/'), b.trim_start_matches('/')) {
        ("", b) => b.to_string(),
        (a, "") => a.to_string(),
        (a, b) => format!("{a}/{b}"),
    }
}
