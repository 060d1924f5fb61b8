//! What a run must do: the image folder as found (entries, splits, content hashes) and, against
//! the rows already cached, which images to extract, which cached rows to keep, which to drop.
//!
//! [`Plan::discover`] reads the folder; [`Plan::against`] is a pure function of the plan and the
//! cache's `path → content hash` map, so a changed file is re-extracted and an unchanged folder
//! does no inference.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;

use crate::dataset::{self, Dataset, DatasetError, Split};

/// The image folder as found: discovery's entries and skips plus each entry's content hash
/// (`Err(reason)` when the file could not be read). `hashes[i]` belongs to `dataset.entries[i]`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The folder's images and the files skipped while scanning.
    pub dataset: Dataset,
    /// `(entries,)` each entry's sha256, or why its file could not be read.
    pub hashes: Vec<Result<String, String>>,
}

/// [`Plan::against`]'s answer for one cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Indices into `dataset.entries` to run through the trunk, in entry (path) order.
    pub todo: Vec<usize>,
    /// Cached rows whose file is present and unchanged.
    pub reused: usize,
    /// Cached rows to drop: the file is gone, unreadable or changed.
    pub stale: HashSet<String>,
    /// `(relative path, reason)` of images this run cannot use: discovery's skips and unreadable files.
    pub skipped: Vec<(String, String)>,
    /// `relative path → split` of every image whose cached row stays or is re-made.
    pub splits: HashMap<String, Split>,
}

impl Plan {
    /// Discovers `images` (see [`dataset::discover`]) and hashes every entry's content in parallel.
    pub fn discover(images: &Path, val_fraction: f64) -> Result<Self, DatasetError> {
        let dataset = dataset::discover(images, val_fraction)?;
        let hashes = dataset
            .entries
            .par_iter()
            .map(|e| dataset::content_hash(&e.abs_path).map_err(|err| format!("unreadable: {err}")))
            .collect();
        Ok(Self { dataset, hashes })
    }

    /// The work against a cache holding `cached`: `(relative path, content hash)` of each row.
    pub fn against<'a>(&self, cached: impl IntoIterator<Item = (&'a String, &'a String)>) -> Delta {
        let cached: HashMap<&str, &str> = cached
            .into_iter()
            .map(|(p, h)| (p.as_str(), h.as_str()))
            .collect();
        let entries = &self.dataset.entries;
        let present: HashSet<&str> = entries.iter().map(|e| e.rel_path.as_str()).collect();
        let mut d = Delta {
            stale: cached
                .keys()
                .filter(|p| !present.contains(*p))
                .map(|p| p.to_string())
                .collect(),
            skipped: self
                .dataset
                .skipped
                .iter()
                .map(|s| (s.rel_path.clone(), s.reason.clone()))
                .collect(),
            ..Delta::default()
        };
        for (i, (e, h)) in entries.iter().zip(&self.hashes).enumerate() {
            let old = cached.get(e.rel_path.as_str()).copied();
            match h {
                Err(reason) => {
                    d.skipped.push((e.rel_path.clone(), reason.clone()));
                    if old.is_some() {
                        d.stale.insert(e.rel_path.clone());
                    }
                }
                Ok(h) if old == Some(h.as_str()) => d.reused += 1,
                Ok(_) => {
                    if old.is_some() {
                        d.stale.insert(e.rel_path.clone()); // changed file: the old row goes
                    }
                    d.todo.push(i);
                }
            }
        }
        // A split is a function of (path, split options): cached rows take this run's split.
        d.splits = entries
            .iter()
            .filter(|e| !d.stale.contains(&e.rel_path))
            .map(|e| (e.rel_path.clone(), e.split))
            .collect();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{ImageEntry, Layout, Skipped};

    fn entry(path: &str, split: Split) -> ImageEntry {
        ImageEntry {
            rel_path: path.into(),
            abs_path: path.into(),
            split,
            label: Some(0),
            class: Some("cat".into()),
        }
    }

    /// a: unchanged, b: changed, c: new, d: unreadable but cached; e: cached, gone from the folder.
    fn plan() -> (Plan, HashMap<String, String>) {
        let dataset = Dataset {
            root: "root".into(),
            layout: Layout::FlatClasses,
            classes: vec!["cat".into()],
            entries: vec![
                entry("cat/a.jpg", Split::Train),
                entry("cat/b.jpg", Split::Val),
                entry("cat/c.jpg", Split::Train),
                entry("cat/d.jpg", Split::Train),
            ],
            skipped: vec![Skipped {
                rel_path: "odd/x.jpg".into(),
                reason: "outside the layout".into(),
            }],
        };
        let hashes = vec![
            Ok("ha".into()),
            Ok("hb2".into()),
            Ok("hc".into()),
            Err("unreadable: denied".into()),
        ];
        let cached = [
            ("cat/a.jpg", "ha"),
            ("cat/b.jpg", "hb"),
            ("cat/d.jpg", "hd"),
            ("cat/e.jpg", "he"),
        ]
        .into_iter()
        .map(|(p, h)| (p.to_string(), h.to_string()))
        .collect();
        (Plan { dataset, hashes }, cached)
    }

    #[test]
    fn new_and_changed_files_are_extracted_the_rest_reused_or_dropped() {
        let (plan, cached) = plan();
        let d = plan.against(&cached);
        assert_eq!(d.todo, vec![1, 2]);
        assert_eq!(d.reused, 1);
        let stale: HashSet<String> = ["cat/b.jpg", "cat/d.jpg", "cat/e.jpg"]
            .map(String::from)
            .into();
        assert_eq!(d.stale, stale);
        assert_eq!(
            d.skipped,
            vec![
                ("odd/x.jpg".to_string(), "outside the layout".to_string()),
                ("cat/d.jpg".to_string(), "unreadable: denied".to_string()),
            ]
        );
        let splits: HashMap<String, Split> =
            [("cat/a.jpg", Split::Train), ("cat/c.jpg", Split::Train)]
                .map(|(p, s)| (p.to_string(), s))
                .into();
        assert_eq!(d.splits, splits);
    }

    #[test]
    fn an_empty_cache_extracts_every_readable_image() {
        let (plan, _) = plan();
        let d = plan.against(&HashMap::new());
        assert_eq!(d.todo, vec![0, 1, 2]);
        assert_eq!((d.reused, d.stale.len()), (0, 0));
        assert_eq!(d.splits.len(), 4);
    }
}
