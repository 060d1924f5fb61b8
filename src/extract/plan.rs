//! What a run must do: the image folder as found (entries, splits, content hashes) and, against
//! the rows already cached, which images to extract, which cached rows to keep, which to drop.
//!
//! [`Plan::discover`] reads the folder; [`Plan::against`] is a pure function of the plan and the
//! cache's `path → content hash` map, so a changed file is re-extracted and an unchanged folder
//! does no inference.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;

use crate::dataset::augment::{self, ViewRecipe};
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

/// Which views a run makes besides the plain image (see [`crate::dataset::augment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewSettings {
    /// Seeded augmented views per training image (`--views K`); 0 = none.
    pub train_views: u32,
    /// The fixed test-time views (flip and five crops) of every val and test image.
    pub tta: bool,
    /// With `tta`: test-time views of train images too, instead of augmented ones (`predict
    /// --tta` on a labelled folder).
    pub tta_every_split: bool,
    /// Seed of the augmentations, mixed with each image's content hash and view index.
    pub seed: u64,
}

impl ViewSettings {
    /// The views (index ≥ 1 and recipe) wanted of an image of `split` with `content_hash`.
    pub fn wanted(&self, split: Split, content_hash: &str) -> Vec<(u32, ViewRecipe)> {
        let tta = self.tta && (split != Split::Train || self.tta_every_split);
        match split {
            _ if tta => (1..=augment::TTA_VIEWS)
                .filter_map(|v| augment::tta_recipe(v).map(|r| (v, r)))
                .collect(),
            Split::Train => (1..=self.train_views)
                .map(|v| (v, augment::train_recipe(content_hash, v, self.seed)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// One view to run through the trunk: entry `entry` of the plan, view `view` (≥ 1) by `recipe`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewItem {
    /// Index into `dataset.entries`.
    pub entry: usize,
    /// The view index (≥ 1).
    pub view: u32,
    /// How the view is made.
    pub recipe: ViewRecipe,
}

/// [`Plan::views_against`]'s answer: views to make, views kept, views to drop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewDelta {
    /// Views to run through the trunk, in entry then view order.
    pub todo: Vec<ViewItem>,
    /// Cached views of an unchanged image with the recipe this run would draw.
    pub reused: usize,
    /// Cached `(path, view)` this run does not want (fewer views asked, no `--tta-views`).
    pub stale: Vec<(String, u32)>,
}

impl Plan {
    /// The views `settings` asks for, against the cached views `cached`
    /// (`(path, view, content hash, recipe)`): a view is reused when its image's content hash
    /// and its recipe are the ones this run would use, made otherwise; cached views no longer
    /// asked for go. Images in `skip` (unreadable, or dropped this run) get no views.
    pub fn views_against<'a>(
        &self,
        settings: &ViewSettings,
        cached: impl IntoIterator<Item = (&'a str, u32, &'a str, Option<&'a str>)>,
    ) -> ViewDelta {
        let cached: HashMap<(&str, u32), (&str, Option<&str>)> = cached
            .into_iter()
            .map(|(p, v, h, r)| ((p, v), (h, r)))
            .collect();
        let mut d = ViewDelta::default();
        let mut wanted: HashSet<(&str, u32)> = HashSet::new();
        for (i, (e, h)) in self.dataset.entries.iter().zip(&self.hashes).enumerate() {
            let Ok(hash) = h else { continue };
            for (view, recipe) in settings.wanted(e.split, hash) {
                wanted.insert((e.rel_path.as_str(), view));
                let json = recipe.to_json();
                match cached.get(&(e.rel_path.as_str(), view)) {
                    Some((h, Some(r))) if h == hash && *r == json => d.reused += 1,
                    _ => d.todo.push(ViewItem {
                        entry: i,
                        view,
                        recipe,
                    }),
                }
            }
        }
        d.stale = cached
            .keys()
            .filter(|k| !wanted.contains(*k))
            .map(|(p, v)| (p.to_string(), *v))
            .collect();
        d.stale.sort();
        d
    }

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
    fn views_of_unchanged_images_are_reused_and_views_no_longer_asked_for_go() {
        let (plan, _) = plan();
        let settings = ViewSettings {
            train_views: 2,
            seed: 5,
            ..ViewSettings::default()
        };
        // Nothing cached: two views of each readable train image (a, c), none of val b.
        let d = plan.views_against(&settings, std::iter::empty());
        let todo: Vec<(usize, u32)> = d.todo.iter().map(|t| (t.entry, t.view)).collect();
        assert_eq!(todo, [(0, 1), (0, 2), (2, 1), (2, 2)]);
        // a's views cached with this run's recipes; view 1 of c under another seed; a view 3.
        let r = |h: &str, v: u32, seed: u64| augment::train_recipe(h, v, seed).to_json();
        let (a1, a2, c1) = (r("ha", 1, 5), r("ha", 2, 5), r("hc", 1, 4));
        let cached = vec![
            ("cat/a.jpg", 1, "ha", Some(a1.as_str())),
            ("cat/a.jpg", 2, "ha", Some(a2.as_str())),
            ("cat/a.jpg", 3, "ha", Some(a2.as_str())),
            ("cat/c.jpg", 1, "hc", Some(c1.as_str())),
        ];
        let d = plan.views_against(&settings, cached);
        let todo: Vec<(usize, u32)> = d.todo.iter().map(|t| (t.entry, t.view)).collect();
        assert_eq!(todo, [(2, 1), (2, 2)]);
        assert_eq!(d.reused, 2);
        assert_eq!(d.stale, [("cat/a.jpg".to_string(), 3)]);
        // Test-time views go to val (b) only when asked.
        let tta = ViewSettings {
            tta: true,
            ..ViewSettings::default()
        };
        let d = plan.views_against(&tta, std::iter::empty());
        assert!(d.todo.iter().all(|t| t.entry == 1));
        assert_eq!(d.todo.len(), augment::TTA_VIEWS as usize);
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
