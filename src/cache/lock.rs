//! The cache's advisory lock: one writer at a time, readers share, none waits.
//!
//! The lock is taken on the cache folder itself (flock on its descriptor, which nobody can
//! delete from under a running writer) and on `vggcache.lock`, which names the holder for the
//! message a refused run prints. Deleting the lock file therefore lets no second writer in.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::{CacheError, LOCK_FILE};

/// A held lock on `dir/vggcache.lock` (flock). The OS releases it when the holder exits, even on
/// kill -9, so a lock file left behind by a crashed run never blocks the next one.
#[derive(Debug)]
pub struct CacheLock {
    file: File,
    /// The cache folder, flocked too (the authoritative lock).
    dir: Option<File>,
    path: PathBuf,
    exclusive: bool,
}

impl CacheLock {
    /// Takes the exclusive (writer) lock, or fails at once with [`CacheError::Locked`] naming the
    /// holder (pid and start time written by the holding writer).
    pub fn exclusive(dir: &Path) -> Result<CacheLock, CacheError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(CacheError::io(&path))?;
        let dir_file = File::open(dir).map_err(CacheError::io(dir))?;
        if !FileExt::try_lock_exclusive(&dir_file).map_err(CacheError::io(dir))?
            || !FileExt::try_lock_exclusive(&file).map_err(CacheError::io(&path))?
        {
            return Err(CacheError::Locked {
                holder: holder(&mut file),
                path,
            });
        }
        let me = format!(
            "writer pid {} since {}\n",
            std::process::id(),
            super::manifest::now()
        );
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .map_err(CacheError::io(&path))?;
        Ok(CacheLock {
            file,
            dir: Some(dir_file),
            path,
            exclusive: true,
        })
    }

    /// Takes a shared (reader) lock so no writer deletes shards while they are read. `Ok(None)`
    /// when the lock file cannot be opened (a read-only copy of a cache); fails at once when a
    /// writer holds the lock.
    pub fn shared(dir: &Path) -> Result<Option<CacheLock>, CacheError> {
        let path = dir.join(LOCK_FILE);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        let dir_file = File::open(dir).ok();
        let dir_free = match &dir_file {
            Some(d) => FileExt::try_lock_shared(d).map_err(CacheError::io(dir))?,
            None => true,
        };
        if !dir_free || !FileExt::try_lock_shared(&file).map_err(CacheError::io(&path))? {
            return Err(CacheError::Locked {
                holder: holder(&mut file),
                path,
            });
        }
        Ok(Some(CacheLock {
            file,
            dir: dir_file,
            path,
            exclusive: false,
        }))
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        // Closing the file releases the flock as well; unlocking first makes it immediate even
        // if a duplicated descriptor survives (e.g. inherited by a child process).
        if self.exclusive {
            let _ = self.file.set_len(0);
        }
        let _ = FileExt::unlock(&self.file);
        if let Some(d) = &self.dir {
            let _ = FileExt::unlock(d);
        }
    }
}

/// What the lock holder wrote into the lock file, for the error message.
fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.take(200).read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "a reader, or a writer that has not yet written its pid".into()
    } else {
        format!("lock file says: {s}")
    }
}
