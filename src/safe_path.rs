//! The one path rule: a name that comes from data stays under the root it is joined onto.
//!
//! Names read from files vggcache did not just write itself (a manifest's shard files, a plan's
//! images, part records, object-store keys mapped to local files, row paths) are joined onto a
//! root folder only through this module. A name must be relative, non-empty, without a `..`
//! component and without a NUL byte ([`check_name`]); joined onto its root, the deepest part of
//! the result that exists must, with every symlink resolved, still lie under the root with its
//! symlinks resolved ([`resolve_under`], [`ensure_under`]). A violation is an [`UnsafePath`]
//! naming the entry and the root; nothing is read, written or moved for it.

use std::io;
use std::path::{Component, Path, PathBuf};

/// What vggcache does with names from data, said by every [`UnsafePath`] message.
const RULE: &str = "vggcache reads and writes only under the root it was given, so names \
                    recorded in its files must be relative paths under that root";

/// A name from data that would lead outside its root.
#[derive(Debug, thiserror::Error)]
pub enum UnsafePath {
    /// The name is empty.
    #[error("entry {entry:?} under {root} is empty; {RULE}")]
    Empty {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
    },
    /// The name holds a NUL byte.
    #[error("entry {entry:?} under {root} contains a NUL byte; {RULE}")]
    Nul {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
    },
    /// The name is an absolute path.
    #[error("entry {entry:?} under {root} is an absolute path; {RULE}")]
    Absolute {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
    },
    /// The name has a `..` component.
    #[error("entry {entry:?} under {root} has a `..` component; {RULE}")]
    ParentDir {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
    },
    /// The name resolves outside the root through a symlink.
    #[error(
        "entry {entry:?} under {root} resolves to {resolved}, outside the root (through a \
         symlink); {RULE}"
    )]
    Escapes {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
        /// Where it resolves to.
        resolved: PathBuf,
    },
    /// A component is a symlink whose target does not exist.
    #[error(
        "entry {entry:?} under {root}: {at} is a symlink whose target does not exist (it could \
         lead outside the root); remove it or make it point inside the root"
    )]
    DanglingLink {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
        /// The path that could not be resolved or is the dangling link.
        at: PathBuf,
    },
    /// The name could not be resolved (an I/O error).
    #[error("entry {entry:?} under {root}: cannot resolve {at}: {source}")]
    Io {
        /// The name as recorded in the data.
        entry: String,
        /// The root the name is joined onto.
        root: String,
        /// The path that could not be resolved or is the dangling link.
        at: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl UnsafePath {
    /// The offending entry as recorded.
    pub fn entry(&self) -> &str {
        match self {
            UnsafePath::Empty { entry, .. }
            | UnsafePath::Nul { entry, .. }
            | UnsafePath::Absolute { entry, .. }
            | UnsafePath::ParentDir { entry, .. }
            | UnsafePath::Escapes { entry, .. }
            | UnsafePath::DanglingLink { entry, .. }
            | UnsafePath::Io { entry, .. } => entry,
        }
    }
}

/// The lexical half of the rule: `entry` (recorded under `root`, a folder or URL named in the
/// error) is non-empty, has no NUL, is relative (no leading `/` or `\`, no drive prefix) and has
/// no `..` component. Touches no file.
pub fn check_name(entry: &str, root: &str) -> Result<(), UnsafePath> {
    let err = |make: fn(String, String) -> UnsafePath| Err(make(entry.into(), root.into()));
    if entry.is_empty() {
        return err(|entry, root| UnsafePath::Empty { entry, root });
    }
    if entry.contains('\0') {
        return err(|entry, root| UnsafePath::Nul { entry, root });
    }
    // A Windows-style absolute name is refused on every platform: the same manifest may be
    // read on either.
    let bytes = entry.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if entry.starts_with('/') || entry.starts_with('\\') || drive {
        return err(|entry, root| UnsafePath::Absolute { entry, root });
    }
    for c in Path::new(entry).components() {
        match c {
            Component::ParentDir => {
                return err(|entry, root| UnsafePath::ParentDir { entry, root })
            }
            Component::RootDir | Component::Prefix(_) => {
                return err(|entry, root| UnsafePath::Absolute { entry, root })
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    if entry.split(['/', '\\']).any(|part| part == "..") {
        return err(|entry, root| UnsafePath::ParentDir { entry, root });
    }
    Ok(())
}

/// `root/entry` after checking the whole rule: [`check_name`], then [`ensure_under`].
pub fn resolve_under(root: &Path, entry: &str) -> Result<PathBuf, UnsafePath> {
    check_name(entry, &root.display().to_string())?;
    let path = root.join(entry);
    ensure_under(root, &path, entry)?;
    Ok(path)
}

/// The resolution half of the rule: `path` (built from `entry` under `root`) is under `root`
/// once symlinks are resolved. The deepest ancestor of `path` that exists (`path` itself when it
/// does) is canonicalized and must start with the canonicalized `root`; a symlink on the way
/// whose target is missing is refused too (writing through it would create its target).
pub fn ensure_under(root: &Path, path: &Path, entry: &str) -> Result<(), UnsafePath> {
    let root_s = || root.display().to_string();
    let io_err = |at: &Path, source| UnsafePath::Io {
        entry: entry.into(),
        root: root_s(),
        at: at.into(),
        source,
    };
    let canon_root = root.canonicalize().map_err(|e| io_err(root, e))?;
    for at in path.ancestors() {
        if at.as_os_str().is_empty() {
            break;
        }
        match at.canonicalize() {
            Ok(real) => {
                if real.starts_with(&canon_root) {
                    return Ok(());
                }
                return Err(UnsafePath::Escapes {
                    entry: entry.into(),
                    root: root_s(),
                    resolved: real,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(at).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(UnsafePath::DanglingLink {
                        entry: entry.into(),
                        root: root_s(),
                        at: at.into(),
                    });
                }
            }
            Err(e) => return Err(io_err(at, e)),
        }
    }
    // Nothing of `path` exists, not even `root` (which canonicalized above): unreachable in
    // practice; refuse rather than guess.
    Err(io_err(
        path,
        io::Error::new(io::ErrorKind::NotFound, "no ancestor of the path exists"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_relative_and_stay_down() {
        for ok in [
            "shard-g0001-000000.parquet",
            "parts/shard-00003/part-00001-ab.parquet",
            "./cat/a.jpg",
            "cat/..a.jpg",
        ] {
            assert!(check_name(ok, "root").is_ok(), "{ok}");
        }
        let kind = |e: &str| match check_name(e, "root").unwrap_err() {
            UnsafePath::Empty { .. } => "empty",
            UnsafePath::Nul { .. } => "nul",
            UnsafePath::Absolute { .. } => "absolute",
            UnsafePath::ParentDir { .. } => "parent",
            other => panic!("{other}"),
        };
        assert_eq!(kind(""), "empty");
        assert_eq!(kind("a\0b"), "nul");
        assert_eq!(kind("/etc/passwd"), "absolute");
        assert_eq!(kind("\\\\server\\x"), "absolute");
        assert_eq!(kind("C:\\x"), "absolute");
        assert_eq!(kind("../x.parquet"), "parent");
        assert_eq!(kind("a/../../x"), "parent");
        assert_eq!(kind("a\\..\\x"), "parent");
        let msg = check_name("../x.parquet", "/data/cache")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"../x.parquet\"") && msg.contains("/data/cache"),
            "{msg}"
        );
    }

    #[test]
    fn symlinks_leading_out_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(outside.join("nope"), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("inner")).unwrap();

        assert_eq!(
            resolve_under(&root, "sub/new").unwrap(),
            root.join("sub/new")
        );
        assert!(resolve_under(&root, "inner/x").is_ok());
        assert!(resolve_under(&root, "not/yet/there").is_ok());
        for bad in ["link", "dirlink/secret", "dirlink/new/file"] {
            let e = resolve_under(&root, bad).unwrap_err();
            assert!(matches!(e, UnsafePath::Escapes { .. }), "{bad}: {e}");
            assert_eq!(e.entry(), bad);
        }
        assert!(matches!(
            resolve_under(&root, "dangling").unwrap_err(),
            UnsafePath::DanglingLink { .. }
        ));
    }
}
