//! Durable file replacement: the one temp-file-then-rename of the crate.
//!
//! Every file vggcache replaces (manifest, shards, skipped.csv, reports, predictions, exported
//! ONNX graphs, head checkpoints) goes through [`write_atomic`] or [`write_atomic_with`], so all of
//! them behave alike: the new bytes are written to `path.tmp` in the SAME folder (a rename across
//! file systems is a copy), the temp file is fsynced, renamed over `path`, and the folder is
//! fsynced so the rename itself survives a power cut. A reader sees the old file or the new one,
//! never a mix; on failure the temp file is removed and `path` is untouched.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O failure and the path it concerns (the temp file while writing, `path` while renaming).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// A `map_err` adapter naming `path`.
    pub fn at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> FsError {
        let path = path.into();
        move |source| FsError { path, source }
    }
}

/// `path` with `.tmp` appended: beside `path`, and never ending in `.parquet`, `.csv` or `.json`,
/// so tools globbing finished files skip it.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_atomic_with(path, |tmp, mut file| {
        file.write_all(bytes).map_err(FsError::at(tmp))?;
        Ok((file, ()))
    })
}

/// [`write_atomic`] for content that is streamed: `write` gets the temp file's path (for its
/// error messages) and the freshly created file, writes through it (e.g. wrapped in a Parquet
/// writer) and hands the file back with its result. The file is then fsynced and renamed over
/// `path`, and the folder fsynced. When `write` or any step fails the temp file is removed.
pub fn write_atomic_with<T, E: From<FsError>>(
    path: &Path,
    write: impl FnOnce(&Path, File) -> Result<(File, T), E>,
) -> Result<T, E> {
    let tmp = tmp_path(path);
    let file = File::create(&tmp).map_err(FsError::at(&tmp))?;
    let result = write(&tmp, file).and_then(|(file, value)| {
        file.sync_all().map_err(FsError::at(&tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(FsError::at(path))?;
        Ok(value)
    });
    match result {
        Ok(value) => {
            sync_dir(parent_of(path))?;
            Ok(value)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Moves the finished folder `tmp` to `dir` durably: every file directly inside `tmp` and `tmp`
/// itself are fsynced, then `tmp` is renamed to `dir` and the parent fsynced. `tmp` must be a
/// sibling of `dir` (same file system).
pub fn publish_dir(tmp: &Path, dir: &Path) -> Result<(), FsError> {
    for entry in fs::read_dir(tmp).map_err(FsError::at(tmp))? {
        let path = entry.map_err(FsError::at(tmp))?.path();
        if path.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(FsError::at(&path))?;
        }
    }
    sync_dir(tmp)?;
    fs::rename(tmp, dir).map_err(FsError::at(dir))?;
    sync_dir(parent_of(dir))
}

/// fsync of a folder, so a rename or removal inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FsError::at(dir))
}

/// Removes `path`; a file already gone is not an error.
pub fn remove_if_exists(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::at(path)(e)),
    }
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(names(d.path()), ["a.json"]);
    }

    #[test]
    fn temp_file_is_beside_the_target() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub").join("x.parquet");
        fs::create_dir(d.path().join("sub")).unwrap();
        let seen =
            write_atomic_with(&p, |tmp, f| Ok::<_, FsError>((f, tmp.to_path_buf()))).unwrap();
        assert_eq!(seen.parent(), p.parent());
        assert_eq!(seen, tmp_path(&p));
        assert!(!seen.to_string_lossy().ends_with(".parquet"));
    }

    #[test]
    fn failure_leaves_the_old_file_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.json");
        write_atomic(&p, b"committed").unwrap();
        let err = write_atomic_with(&p, |tmp, mut f| {
            f.write_all(b"half").map_err(FsError::at(tmp))?;
            Err::<(File, ()), _>(FsError {
                path: tmp.to_path_buf(),
                source: io::Error::other("disk full"),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"committed");
        assert_eq!(names(d.path()), ["m.json"]);
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope").join("f.csv");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(err.path, tmp_path(&p));
        assert!(!p.exists());
    }

    #[test]
    fn publish_dir_moves_a_finished_folder() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(".run.tmp");
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("a.txt"), "a").unwrap();
        let dir = d.path().join("run");
        publish_dir(&tmp, &dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a.txt")).unwrap(), "a");
        assert_eq!(names(d.path()), ["run"]);
    }

    #[test]
    fn remove_if_exists_ignores_missing_files() {
        let d = tempfile::tempdir().unwrap();
        remove_if_exists(&d.path().join("gone")).unwrap();
    }
}
