//! Labelled train/val rows of a cache, as the head and the baselines take them: feature matrices
//! in memory, or the cache's row groups as a stream source ([`crate::head::RowGroups`]); and the
//! checks that a trained head fits a cache or a trunk.

use std::collections::HashMap;

use ndarray::Array2;

use super::JobError;
use crate::cache::{FeatureCache, FeatureSource};
use crate::dataset::augment::ViewKind;
use crate::dataset::Split;

/// Labelled rows of one split. `x: (n, d)`, `y: (n,)` class indices.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// `(n, d)` features.
    pub x: Array2<f32>,
    /// `(n,)` class indices.
    pub y: Vec<usize>,
    /// `(n,)` image paths, as the cache records them.
    pub paths: Vec<String>,
}

/// Labelled rows of one split, as global cache rows (ascending) and their class indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    /// `(n,)` strictly ascending indices into the cache's rows.
    pub rows: Vec<usize>,
    /// `(n,)` class of each row.
    pub labels: Vec<usize>,
}

impl Rows {
    /// The rows at positions `idx` of these rows.
    pub(crate) fn pick(&self, idx: &[usize]) -> Rows {
        Rows {
            rows: idx.iter().map(|&i| self.rows[i]).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// A seeded uniform sample of `n` of these rows (all when `n >= len`), in cache order.
    pub fn sample(&self, n: usize, seed: u64) -> Rows {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut idx: Vec<usize> = (0..self.rows.len()).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        idx.truncate(n);
        idx.sort_unstable();
        self.pick(&idx)
    }

    /// The features of these rows: `(n, d)`, read row groups in parallel.
    pub fn read<C: FeatureSource + ?Sized>(&self, cache: &C) -> Result<Labelled, JobError> {
        let data = cache.rows(&self.rows)?;
        Ok(Labelled {
            x: data.features,
            y: self.labels.clone(),
            paths: data.paths,
        })
    }
}

/// Which rows train and val are, without reading features: train = labelled rows of split
/// `train`; val = labelled rows of split `val`, or, when the cache has none, a stratified seeded
/// hold-out of `val_fraction` of train (reported by the bool). Both in cache order.
pub fn split_rows<C: FeatureSource + ?Sized>(
    cache: &C,
    val_fraction: f64,
    seed: u64,
) -> Result<(Rows, Rows, bool), JobError> {
    let names_text = || {
        let v: Vec<&str> = cache.split_names().iter().map(Split::as_str).collect();
        v.join(", ")
    };
    let labelled = |split: Split| {
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (i, (&s, l)) in cache
            .row_splits()
            .iter()
            .zip(cache.row_labels())
            .enumerate()
        {
            // The plain view only: an image is one row here, its views are read through
            // `view_groups`.
            if let (true, Some(l), 0) = (s == split, l, cache.row_views()[i]) {
                rows.push(i);
                labels.push(*l as usize);
            }
        }
        Rows { rows, labels }
    };
    if !cache.has_split(Split::Train) {
        return Err(JobError::NoTrainSplit {
            cache: cache.dir().to_path_buf(),
            splits: names_text(),
        });
    }
    let train = labelled(Split::Train);
    if train.rows.is_empty() {
        return Err(JobError::NoLabelledTrain {
            cache: cache.dir().to_path_buf(),
        });
    }
    let val = labelled(Split::Val);
    if !val.rows.is_empty() {
        return Ok((train, val, false));
    }
    let (tr, va) = crate::head::holdout_split(&train.labels, val_fraction, seed);
    if va.is_empty() {
        return Err(JobError::EmptyHoldout {
            cache: cache.dir().to_path_buf(),
            val_fraction,
        });
    }
    Ok((train.pick(&tr), train.pick(&va), true))
}

/// For each of `plain`'s rows (plain views), the global rows of its image's views of `kind` in
/// the same split, its own row first, the rest by view index: `(plain.rows.len(),)` lists.
/// An image without such views is a group of one.
pub fn view_groups(cache: &FeatureCache, plain: &[usize], kind: ViewKind) -> Vec<Vec<usize>> {
    let (paths, splits, views) = (cache.row_paths(), cache.row_splits(), cache.row_views());
    let mut of: HashMap<(&str, Split), Vec<usize>> = HashMap::new();
    for (i, k) in cache.row_view_kinds().iter().enumerate() {
        if *k == Some(kind) {
            of.entry((paths[i].as_str(), splits[i]))
                .or_default()
                .push(i);
        }
    }
    plain
        .iter()
        .map(|&r| {
            let mut g = of
                .remove(&(paths[r].as_str(), splits[r]))
                .unwrap_or_default();
            g.sort_by_key(|&i| views[i]);
            g.insert(0, r);
            g
        })
        .collect()
}

/// The features of the rows of `groups` (global rows) read once: `(x: (distinct rows, d),
/// groups as positions in x)`.
pub fn read_groups(
    cache: &FeatureCache,
    groups: &[Vec<usize>],
) -> Result<(Array2<f32>, Vec<Vec<usize>>), JobError> {
    let mut rows: Vec<usize> = groups.iter().flatten().copied().collect();
    rows.sort_unstable();
    rows.dedup();
    let at: HashMap<usize, usize> = rows.iter().enumerate().map(|(p, &r)| (r, p)).collect();
    let x = cache.rows(&rows)?.features;
    let pos = groups
        .iter()
        .map(|g| g.iter().map(|r| at[r]).collect())
        .collect();
    Ok((x, pos))
}

/// The features of the images of `rows` (global rows of plain views) with their cached test-time
/// views, read once: `(x: (distinct rows, d), groups)`, group k = image k's plain row then its
/// test-time views, as positions in x. Refuses a cache where none of them has a test-time view.
pub fn tta_views(
    cache: &FeatureCache,
    rows: &[usize],
    split: &'static str,
) -> Result<(Array2<f32>, Vec<Vec<usize>>), JobError> {
    let groups = view_groups(cache, rows, ViewKind::Tta);
    if groups.iter().all(|g| g.len() == 1) {
        return Err(JobError::NoTtaViews {
            cache: cache.dir().to_path_buf(),
            split,
        });
    }
    read_groups(cache, &groups)
}

/// The images of `train` with every cached augmented view as a row of its own, labelled as its
/// image: `x: (images + views, d)`. Refuses a cache where none of them has an augmented view.
pub fn with_aug_views(cache: &FeatureCache, train: &Rows) -> Result<Labelled, JobError> {
    let groups = view_groups(cache, &train.rows, ViewKind::Aug);
    if groups.iter().all(|g| g.len() == 1) {
        return Err(JobError::NoAugViews {
            cache: cache.dir().to_path_buf(),
        });
    }
    let (x, at) = read_groups(cache, &groups)?;
    let (mut y, mut paths) = (vec![0; x.nrows()], vec![String::new(); x.nrows()]);
    for ((g, pos), &label) in groups.iter().zip(&at).zip(&train.labels) {
        for (&r, &p) in g.iter().zip(pos) {
            y[p] = label;
            paths[p] = cache.row_paths()[r].clone();
        }
    }
    Ok(Labelled { x, y, paths })
}

/// [`split_rows`] with the features read: `(train, val, held_out)`.
pub fn train_val<C: FeatureSource + ?Sized>(
    cache: &C,
    val_fraction: f64,
    seed: u64,
) -> Result<(Labelled, Labelled, bool), JobError> {
    let (train, val, held_out) = split_rows(cache, val_fraction, seed)?;
    Ok((train.read(cache)?, val.read(cache)?, held_out))
}

/// The cache's row groups as the head's stream source (the head never sees Parquet).
impl crate::head::RowGroups for FeatureCache {
    fn dim(&self) -> usize {
        FeatureCache::dim(self)
    }

    fn groups(&self) -> usize {
        self.row_group_count()
    }

    fn group_rows(&self, g: usize) -> std::ops::Range<usize> {
        self.row_group_span(g)
    }

    type Error = crate::cache::CacheError;

    fn read_group(&self, g: usize, dest: &mut [f32]) -> Result<(), crate::cache::CacheError> {
        self.read_row_group(g, dest)
    }
}

/// Loads `RUN/head.safetensors` (a folder written by `train-head`). With `cache`, checks that the
/// head was trained on features of the same trunk, with the same D and class names.
pub fn load_head(
    run: &std::path::Path,
    cache: Option<&dyn FeatureSource>,
) -> Result<
    (
        crate::head::FittedHead,
        std::collections::BTreeMap<String, String>,
    ),
    JobError,
> {
    let file = run.join("head.safetensors");
    if !file.is_file() {
        return Err(JobError::NotARun {
            run: run.to_path_buf(),
            file,
        });
    }
    let (head, meta) = crate::head::FittedHead::load(&file)?;
    if let Some(cache) = cache {
        check_head_fits_cache(run, &head, &meta, cache)?;
    }
    Ok((head, meta))
}

/// A head loaded from `run` (metadata `meta`) against `cache`: the same trunk (the same trunks in
/// the same order for joined caches), D and class names.
pub fn check_head_fits_cache(
    run: &std::path::Path,
    head: &crate::head::FittedHead,
    meta: &std::collections::BTreeMap<String, String>,
    cache: &dyn FeatureSource,
) -> Result<(), JobError> {
    let dirs: Vec<String> = cache
        .parts()
        .iter()
        .map(|p| p.dir.display().to_string())
        .collect();
    let what = match dirs.len() {
        1 => format!("cache {}", dirs[0]),
        _ => format!("caches {} joined", dirs.join(" + ")),
    };
    check_same_trunk(run, meta, &cache.trunk_fingerprint(), &what)?;
    head.check_compatible(cache.dim(), cache.classes())?;
    Ok(())
}

/// [`check_same_trunk`] for a model file: fingerprints `model` and compares.
pub fn check_model_file(
    run: &std::path::Path,
    meta: &std::collections::BTreeMap<String, String>,
    model: &std::path::Path,
) -> Result<(), JobError> {
    let fp = crate::trunk::fingerprint_file(model)?;
    check_same_trunk(run, meta, &fp, &format!("model {}", model.display()))
}

/// The one check that a head (run folder `run`, checkpoint metadata `meta`) was trained on
/// features of the trunk with fingerprint `want`, which `what` (a cache, a model file) carries.
pub fn check_same_trunk(
    run: &std::path::Path,
    meta: &std::collections::BTreeMap<String, String>,
    want: &str,
    what: &str,
) -> Result<(), JobError> {
    match meta.get("trunk_fingerprint") {
        Some(got) if got == want => Ok(()),
        got => Err(JobError::OtherTrunk {
            run: run.to_path_buf(),
            got: got.cloned(),
            want: want.to_string(),
            what: what.to_string(),
        }),
    }
}
