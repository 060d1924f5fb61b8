//! Local staging of files bound for an object store: one folder per run, locked while the run
//! lives and removed when it ends (error paths included); folders of runs that were killed are
//! swept by the next run.
//!
//! Where: `$XDG_CACHE_HOME/vggcache/staging`, else `$HOME/.cache/vggcache/staging`, else
//! `<temp dir>/vggcache-staging`. Never the shared temp folder's top level, so a kill -9 leaves
//! nothing there, and the next run on the machine finds and removes what the killed run left.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::StorageError;
use crate::fsutil::FsError;

/// A run's staging folder (see the module docs); removed with everything in it on drop. Beside
/// it, `run-ID.lock` is held (flock) while the run lives: a folder whose lock file can be
/// locked belongs to no live run. The lock is taken before the folder exists, so a sweep never
/// removes a starting run's folder.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl Staging {
    /// Creates the folder of run `run` under [`staging_base`], after removing the folders of
    /// runs no longer alive.
    pub fn new(run: &str) -> Result<Staging, StorageError> {
        Self::new_in(&staging_base(), run)
    }

    /// [`Staging::new`] under `base`.
    pub fn new_in(base: &Path, run: &str) -> Result<Staging, StorageError> {
        std::fs::create_dir_all(base).map_err(FsError::at(base))?;
        sweep(base);
        let lock_path = base.join(format!("run-{run}.lock"));
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(FsError::at(&lock_path))?;
        FileExt::lock_exclusive(&lock).map_err(FsError::at(&lock_path))?;
        let dir = base.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir).map_err(FsError::at(&dir))?;
        Ok(Staging {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file `name` in the folder, removed when the returned guard drops.
    pub fn file(&self, name: &str) -> TempFile {
        TempFile {
            path: self.dir.join(name),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// A local file removed (with its `.tmp` sibling) when the guard drops, whichever way the code
/// holding it ends.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Its path (the file may not exist yet).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(crate::fsutil::tmp_path(&self.path));
    }
}

/// Where run folders go (see the module docs).
pub fn staging_base() -> PathBuf {
    let home_cache = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".cache"))
    };
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|x| !x.is_empty() && Path::new(x).is_absolute())
        .map(PathBuf::from)
        .or_else(home_cache)
        .map(|c| c.join("vggcache").join("staging"))
        .unwrap_or_else(|| std::env::temp_dir().join("vggcache-staging"))
}

/// Removes the run folders under `base` whose lock nobody holds (their run was killed), with
/// their lock files. Best effort: what cannot be inspected or removed is left for the next sweep.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(run) = name
            .strip_prefix("run-")
            .and_then(|n| n.strip_suffix(".lock"))
        else {
            continue;
        };
        let Ok(f) = OpenOptions::new().write(true).open(e.path()) else {
            continue;
        };
        if FileExt::try_lock_exclusive(&f).unwrap_or(false) {
            let _ = std::fs::remove_dir_all(base.join(format!("run-{run}")));
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_run_keeps_its_folder_and_a_dead_one_is_swept() {
        let base = tempfile::tempdir().unwrap();
        let live = Staging::new_in(base.path(), "a").unwrap();
        let f = live.file("part.parquet");
        std::fs::write(f.path(), b"x").unwrap();
        // A killed run: its folder and lock file are there, its lock is not held.
        let dead = base.path().join("run-dead");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(base.path().join("run-dead.lock"), b"").unwrap();
        std::fs::write(dead.join("part.parquet"), b"x").unwrap();
        let other = Staging::new_in(base.path(), "b").unwrap();
        assert!(!dead.exists(), "the dead run's folder is swept");
        assert!(!base.path().join("run-dead.lock").exists());
        assert!(f.path().exists(), "the live run's file stays");
        drop(f);
        assert!(!live.dir().join("part.parquet").exists());
        let dir = live.dir().to_path_buf();
        drop(live);
        assert!(!dir.exists());
        drop(other);
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }
}
