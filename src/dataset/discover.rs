//! Dataset discovery: walk an image folder, recognise its layout, and assign split, label and class.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DatasetError, Split};

/// File extensions taken as images (compared ignoring ASCII case). The content decides the format
/// when decoding; the extension only decides what is looked at.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "webp", "bmp"];

/// How the folder's images are organised (the layout of its labelled part).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `DIR/{train,val,test}/CLASS/x.jpg` (split from the first level; val/validation/valid).
    ImageFolder,
    /// `DIR/CLASS/x.jpg`: no split folders; val taken by path hash.
    FlatClasses,
    /// Kaggle dogs-vs-cats: `DIR/train/cat.123.jpg` (or `DIR/cat.123.jpg`): class = name prefix.
    KaggleNames,
    /// No labels anywhere (`DIR/test/1.jpg`, `DIR/1.jpg`).
    Unlabelled,
}

impl Layout {
    /// The layout's name as shown and stored (`image_folder`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Layout::ImageFolder => "image_folder",
            Layout::FlatClasses => "flat_classes",
            Layout::KaggleNames => "kaggle_names",
            Layout::Unlabelled => "unlabelled",
        }
    }
}

/// One image file found by [`discover`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Path relative to the dataset root, with `/` separators.
    pub rel_path: String,
    /// Absolute path of the file.
    pub abs_path: PathBuf,
    /// The split the image belongs to.
    pub split: Split,
    /// Index of `class` in [`Dataset::classes`]; `None` for unlabelled images.
    pub label: Option<u32>,
    /// Class name; `None` for unlabelled images.
    pub class: Option<String>,
}

/// A path that discovery could not use, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path relative to the dataset root, with `/` separators.
    pub rel_path: String,
    /// Why, in one line.
    pub reason: String,
}

/// Everything [`discover`] found under one root.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The dataset root, as given.
    pub root: PathBuf,
    /// The folder layout that was recognised.
    pub layout: Layout,
    /// Class names, sorted; a label is an index into this list.
    pub classes: Vec<String>,
    /// Sorted by `rel_path`.
    pub entries: Vec<ImageEntry>,
    /// Sorted by `rel_path`: unreadable folders, broken symlinks, symlink loops, non-UTF-8 names,
    /// images outside the layout. Hidden files and non-image extensions are ignored silently.
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Number of entries in `split`.
    pub fn count(&self, split: Split) -> usize {
        self.entries.iter().filter(|e| e.split == split).count()
    }
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// SHA-256 of the file's bytes, lower-case hex (64 characters).
pub fn content_hash(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Position of `rel_path` in [0, 1): the first 8 bytes of SHA-256(rel_path) over 2^64.
/// An image goes to val when this is below the val fraction, so the choice for one file never
/// depends on the other files (stable when images are added or removed).
pub fn val_hash_fraction(rel_path: &str) -> f64 {
    let digest = Sha256::digest(rel_path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) as f64 / 18_446_744_073_709_551_616.0
}

/// A file found by the walk: its path components below the root.
struct Found {
    comps: Vec<String>,
    abs: PathBuf,
}

/// How an entry got its class.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LabelSource {
    Folder,
    NamePrefix,
    None,
}

/// Walk `root` and describe its images.
///
/// Layouts (decided from the first folder level):
/// - some first-level folder is a split name (`train`, `val`/`validation`/`valid`, `test`):
///   `SPLIT/CLASS/…/x.jpg` is labelled by `CLASS` ([`Layout::ImageFolder`]); `SPLIT/x.jpg` is
///   labelled by a Kaggle-style name prefix (`cat.123.jpg` → `cat`, [`Layout::KaggleNames`]) or
///   unlabelled (`1.jpg`). Images outside the split folders are skipped with a reason.
/// - otherwise: `CLASS/…/x.jpg` ([`Layout::FlatClasses`]), `cat.1.jpg` (Kaggle names) or
///   unlabelled images at the top level (split `test`); labelled ones are split by path hash.
///
/// Where no labelled val image exists, each labelled train image goes to val when
/// [`val_hash_fraction`] of its relative path is below `val_fraction`.
/// Hidden names (starting with `.`) and non-image extensions are ignored; symlinks are followed
/// except into a folder that is already being walked (a loop), which is skipped.
pub fn discover(root: &Path, val_fraction: f64) -> Result<Dataset, DatasetError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(DatasetError::BadValFraction {
            value: val_fraction,
        });
    }
    let meta = fs::metadata(root).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DatasetError::NotFound {
                path: root.to_path_buf(),
            }
        } else {
            DatasetError::Unreadable {
                path: root.to_path_buf(),
                source: e,
            }
        }
    })?;
    if !meta.is_dir() {
        return Err(DatasetError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let canonical_root = fs::canonicalize(root).map_err(|e| DatasetError::Unreadable {
        path: root.to_path_buf(),
        source: e,
    })?;
    // The root itself must be listable; unreadable subfolders are skips.
    fs::read_dir(root).map_err(|e| DatasetError::Unreadable {
        path: root.to_path_buf(),
        source: e,
    })?;

    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut ancestors = vec![canonical_root];
    walk(
        root,
        &mut Vec::new(),
        &mut ancestors,
        &mut found,
        &mut skipped,
    );

    let has_split_dirs = found
        .iter()
        .any(|f| f.comps.len() >= 2 && Split::parse(&f.comps[0]).is_some());

    // (entry without label index, how it was labelled, whether its split came from a folder)
    let mut pending: Vec<(ImageEntry, LabelSource, bool)> = Vec::with_capacity(found.len());
    for f in found {
        let rel_path = f.comps.join("/");
        let (split, class, source, split_from_folder) = if has_split_dirs {
            if f.comps.len() == 1 {
                skipped.push(Skipped {
                    rel_path,
                    reason: "image at the top level, outside the split folders \
                             (train, val, validation, valid, test)"
                        .into(),
                });
                continue;
            }
            let Some(split) = Split::parse(&f.comps[0]) else {
                skipped.push(Skipped {
                    reason: format!(
                        "folder {:?} is not a split name (expected train, val, validation, valid or test)",
                        f.comps[0]
                    ),
                    rel_path,
                });
                continue;
            };
            let (class, source) = label_of(&f.comps[1..]);
            (split, class, source, true)
        } else {
            let (class, source) = label_of(&f.comps);
            let split = if source == LabelSource::None {
                Split::Test
            } else {
                Split::Train
            };
            (split, class, source, false)
        };
        pending.push((
            ImageEntry {
                rel_path,
                abs_path: f.abs,
                split,
                label: None,
                class,
            },
            source,
            split_from_folder,
        ));
    }

    if pending.is_empty() {
        return Err(DatasetError::NoImages {
            path: root.to_path_buf(),
            skipped: skipped.len(),
        });
    }

    let has_labelled_val = pending
        .iter()
        .any(|(e, s, _)| e.split == Split::Val && *s != LabelSource::None);
    if !has_labelled_val && val_fraction > 0.0 {
        for (e, s, _) in pending.iter_mut() {
            if e.split == Split::Train
                && *s != LabelSource::None
                && val_hash_fraction(&e.rel_path) < val_fraction
            {
                e.split = Split::Val;
            }
        }
    }

    let any_folder = pending.iter().any(|(_, s, _)| *s == LabelSource::Folder);
    let any_prefix = pending
        .iter()
        .any(|(_, s, _)| *s == LabelSource::NamePrefix);
    let layout = match (any_folder, any_prefix, has_split_dirs) {
        (true, _, true) => Layout::ImageFolder,
        (true, _, false) => Layout::FlatClasses,
        (false, true, _) => Layout::KaggleNames,
        (false, false, _) => Layout::Unlabelled,
    };

    let classes: Vec<String> = pending
        .iter()
        .filter_map(|(e, _, _)| e.class.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut entries: Vec<ImageEntry> = pending
        .into_iter()
        .map(|(mut e, _, _)| {
            e.label = e.class.as_ref().map(|c| {
                let idx = classes
                    .binary_search(c)
                    .expect("every class name was collected into the sorted class list");
                u32::try_from(idx).expect("fewer than 2^32 classes")
            });
            e
        })
        .collect();
    entries.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    skipped.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));

    Ok(Dataset {
        root: root.to_path_buf(),
        layout,
        classes,
        entries,
        skipped,
    })
}

/// Class of an image from its path below the split level: `CLASS/…/x.jpg` → folder name;
/// `x.jpg` → Kaggle name prefix or none.
fn label_of(comps: &[String]) -> (Option<String>, LabelSource) {
    if comps.len() >= 2 {
        (Some(comps[0].clone()), LabelSource::Folder)
    } else {
        match kaggle_prefix(&comps[0]) {
            Some(p) => (Some(p), LabelSource::NamePrefix),
            None => (None, LabelSource::None),
        }
    }
}

/// `cat.123.jpg` → `cat`: the part before the first dot of the name without its extension, when
/// that part is non-empty, not all digits, and something follows it.
fn kaggle_prefix(file_name: &str) -> Option<String> {
    let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s);
    let (prefix, rest) = stem.split_once('.')?;
    if prefix.is_empty() || rest.is_empty() || prefix.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(prefix.to_string())
}

/// Depth-first walk in name order. `comps`: path components of `dir` below the root;
/// `ancestors`: canonical paths of the folders being walked (for loop detection).
fn walk(
    dir: &Path,
    comps: &mut Vec<String>,
    ancestors: &mut Vec<PathBuf>,
    found: &mut Vec<Found>,
    skipped: &mut Vec<Skipped>,
) {
    let rel = |comps: &[String], name: &str| {
        let mut s = comps.join("/");
        if !s.is_empty() {
            s.push('/');
        }
        s.push_str(name);
        s
    };
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            skipped.push(Skipped {
                rel_path: comps.join("/"),
                reason: format!("unreadable folder: {e}"),
            });
            return;
        }
    };
    let mut children: Vec<(std::ffi::OsString, PathBuf, Option<fs::FileType>)> = Vec::new();
    for item in read {
        match item {
            Ok(de) => children.push((de.file_name(), de.path(), de.file_type().ok())),
            Err(e) => skipped.push(Skipped {
                rel_path: comps.join("/"),
                reason: format!("error while listing folder: {e}"),
            }),
        }
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (os_name, path, ftype) in children {
        let Some(name) = os_name.to_str() else {
            let lossy = os_name.to_string_lossy().into_owned();
            if !lossy.starts_with('.') {
                skipped.push(Skipped {
                    rel_path: rel(comps, &lossy),
                    reason: "file name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let is_symlink = ftype.is_some_and(|t| t.is_symlink());
        // Follow symlinks: metadata() resolves them.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                if is_symlink || is_image_extension(&path) {
                    skipped.push(Skipped {
                        rel_path: rel(comps, name),
                        reason: if is_symlink {
                            format!("broken symlink: {e}")
                        } else {
                            format!("unreadable: {e}")
                        },
                    });
                }
                continue;
            }
        };
        if meta.is_dir() {
            let canonical = match fs::canonicalize(&path) {
                Ok(c) => c,
                Err(e) => {
                    skipped.push(Skipped {
                        rel_path: rel(comps, name),
                        reason: format!("cannot resolve folder: {e}"),
                    });
                    continue;
                }
            };
            if ancestors.contains(&canonical) {
                skipped.push(Skipped {
                    rel_path: rel(comps, name),
                    reason: format!(
                        "symlink loop: points to {} which contains it; not followed",
                        canonical.display()
                    ),
                });
                continue;
            }
            ancestors.push(canonical);
            comps.push(name.to_string());
            walk(&path, comps, ancestors, found, skipped);
            comps.pop();
            ancestors.pop();
        } else if meta.is_file() && is_image_extension(&path) {
            let mut c = comps.clone();
            c.push(name.to_string());
            found.push(Found {
                comps: c,
                abs: path,
            });
        } else if is_image_extension(&path) {
            // A FIFO, socket or device (e.g. a link to /dev/zero) named like an image: never
            // opened (reading it could block or never end), but listed with the reason.
            skipped.push(Skipped {
                rel_path: rel(comps, name),
                reason: format!("not a regular file ({:?}); not read", meta.file_type()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaggle_prefix_rules() {
        assert_eq!(kaggle_prefix("cat.123.jpg").as_deref(), Some("cat"));
        assert_eq!(kaggle_prefix("dog.1.JPG").as_deref(), Some("dog"));
        assert_eq!(kaggle_prefix("1.jpg"), None);
        assert_eq!(kaggle_prefix("12.5.jpg"), None);
        assert_eq!(kaggle_prefix("photo.jpg"), None);
        assert_eq!(kaggle_prefix(".x.jpg"), None);
    }

    #[test]
    fn split_names() {
        for (s, want) in [
            ("train", Some(Split::Train)),
            ("Val", Some(Split::Val)),
            ("validation", Some(Split::Val)),
            ("valid", Some(Split::Val)),
            ("test", Some(Split::Test)),
            ("test1", None),
        ] {
            assert_eq!(Split::parse(s), want, "{s}");
        }
    }
}
