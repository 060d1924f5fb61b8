//! [`LocalStore`]: a folder as a [`Storage`] root, with fsync + rename for every write.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Listed, Storage, StorageError};
use crate::fsutil::{self, FsError};

/// A local folder. Keys map to files under it; folders are created as needed.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The folder `root`, created when missing.
    pub fn open(root: &Path) -> Result<LocalStore, StorageError> {
        fs::create_dir_all(root).map_err(FsError::at(root))?;
        Ok(LocalStore { root: root.into() })
    }

    /// The file of `key` under the root, checked against the path rule ([`crate::safe_path`]):
    /// keys come from records and manifests too.
    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        Ok(crate::safe_path::resolve_under(&self.root, key)?)
    }

    /// The file of `key`, its folder created.
    fn file(&self, key: &str) -> Result<PathBuf, StorageError> {
        let path = self.path_of(key)?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(FsError::at(dir))?;
        }
        Ok(path)
    }
}

/// A temp name beside `path` no other process uses (`path.<pid>-<nanos>.tmp`).
fn unique_tmp(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}-{nanos}.tmp", std::process::id()));
    PathBuf::from(s)
}

impl Storage for LocalStore {
    fn url(&self) -> String {
        self.root.display().to_string()
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        Ok(fsutil::write_atomic(&self.file(key)?, bytes)?)
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        let path = self.file(key)?;
        let tmp = unique_tmp(&path);
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .map_err(FsError::at(&tmp));
        // link(2) fails with EEXIST when the name is taken: the one atomic create-if-absent of a
        // whole, already-durable file.
        let linked = written.and_then(|()| match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(FsError::at(&path)(e)),
        });
        let _ = fs::remove_file(&tmp);
        let created = linked?;
        if created {
            fsutil::sync_dir(path.parent().unwrap_or(&self.root))?;
        }
        Ok(created)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path_of(key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::at(path)(e).into()),
        }
    }

    fn put_file(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        let path = self.file(key)?;
        if path == file {
            return Ok(());
        }
        fsutil::write_atomic_with(&path, |tmp, mut out| {
            let mut src = fs::File::open(file).map_err(FsError::at(file))?;
            io::copy(&mut src, &mut out).map_err(FsError::at(tmp))?;
            Ok::<_, FsError>((out, ()))
        })?;
        Ok(())
    }

    fn get_file(&self, key: &str, to: &Path) -> Result<bool, StorageError> {
        let from = self.path_of(key)?;
        if !from.exists() {
            return Ok(false);
        }
        LocalStore::open(to.parent().unwrap_or(Path::new(".")))?;
        fsutil::write_atomic_with(to, |tmp, mut out| {
            let mut src = fs::File::open(&from).map_err(FsError::at(&from))?;
            io::copy(&mut src, &mut out).map_err(FsError::at(tmp))?;
            Ok::<_, FsError>((out, ()))
        })?;
        Ok(true)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path_of(prefix)?
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::at(&dir)(e).into()),
            };
            for entry in entries {
                let entry = entry.map_err(FsError::at(&dir))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(FsError::at(&path))?;
                if meta.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push(Listed {
                        key,
                        bytes: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        Ok(fsutil::remove_if_exists(&self.path_of(key)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_if_absent_creates_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        assert!(s.put_if_absent("records/a.json", b"first").unwrap());
        assert!(!s.put_if_absent("records/a.json", b"second").unwrap());
        assert_eq!(s.get("records/a.json").unwrap().unwrap(), b"first");
        assert_eq!(s.get("records/b.json").unwrap(), None);
        // No temp file is left behind by either call.
        let keys: Vec<String> = s.list("").unwrap().into_iter().map(|l| l.key).collect();
        assert_eq!(keys, vec!["records/a.json".to_string()]);
    }

    #[test]
    fn list_is_sorted_and_prefix_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        s.put("parts/s1/b", b"22").unwrap();
        s.put("parts/s0/a", b"1").unwrap();
        s.put("other/c", b"333").unwrap();
        let got = s.list("parts").unwrap();
        assert_eq!(
            got,
            vec![
                Listed {
                    key: "parts/s0/a".into(),
                    bytes: 1
                },
                Listed {
                    key: "parts/s1/b".into(),
                    bytes: 2
                }
            ]
        );
        s.delete("parts/s0/a").unwrap();
        s.delete("parts/s0/a").unwrap();
        assert_eq!(s.list("parts").unwrap().len(), 1);
    }
}
