//! Labelled train/val feature matrices from a cache, as the head and the baselines take them.

use ndarray::{Array2, Axis};

use super::CommandError;
use crate::cache::{FeatureCache, SplitData};
use crate::dataset::Split;

/// Labelled rows of one split. `x: (n, d)`, `y: (n,)` class indices.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub x: Array2<f32>,
    pub y: Vec<usize>,
    pub paths: Vec<String>,
}

impl Labelled {
    fn from_rows(data: SplitData, keep: &[usize]) -> Self {
        Labelled {
            x: data.features.select(Axis(0), keep),
            y: keep
                .iter()
                .map(|&i| data.labels[i].expect("kept rows are labelled") as usize)
                .collect(),
            paths: keep.iter().map(|&i| data.paths[i].clone()).collect(),
        }
    }
}

/// Train = labelled rows of split `train`; val = labelled rows of split `val`, or, when the cache
/// has none, a stratified seeded hold-out of `val_fraction` of train (reported by the bool).
pub fn train_val(
    cache: &FeatureCache,
    val_fraction: f64,
    seed: u64,
) -> Result<(Labelled, Labelled, bool), CommandError> {
    let names = cache.split_names();
    let names_text = || {
        let v: Vec<&str> = names.iter().map(Split::as_str).collect();
        v.join(", ")
    };
    let labelled_rows =
        |d: &SplitData| -> Vec<usize> { (0..d.len()).filter(|&i| d.labels[i].is_some()).collect() };
    if !cache.has_split(Split::Train) {
        return Err(CommandError::Input(format!(
            "cache {} has no `train` split (splits: {}); nothing to train on",
            cache.dir().display(),
            names_text()
        )));
    }
    let train = cache.split(Split::Train)?;
    let rows = labelled_rows(&train);
    if rows.is_empty() {
        return Err(CommandError::Input(format!(
            "cache {}: the train split has no labelled rows",
            cache.dir().display()
        )));
    }
    let val = if cache.has_split(Split::Val) {
        Some(cache.split(Split::Val)?)
    } else {
        None
    };
    match val {
        Some(v) if v.labels.iter().any(Option::is_some) => {
            let vrows = labelled_rows(&v);
            Ok((
                Labelled::from_rows(train, &rows),
                Labelled::from_rows(v, &vrows),
                false,
            ))
        }
        _ => {
            let all = Labelled::from_rows(train, &rows);
            let (tr, va) = crate::head::holdout_split(&all.y, val_fraction, seed);
            if va.is_empty() {
                return Err(CommandError::Input(format!(
                    "cache {}: no val split and --val-fraction {val_fraction} holds out no row",
                    cache.dir().display()
                )));
            }
            let pick = |idx: &[usize]| Labelled {
                x: all.x.select(Axis(0), idx),
                y: idx.iter().map(|&i| all.y[i]).collect(),
                paths: idx.iter().map(|&i| all.paths[i].clone()).collect(),
            };
            Ok((pick(&tr), pick(&va), true))
        }
    }
}

/// Loads `RUN/head.safetensors` (a folder written by `train-head`). With `cache`, checks that the
/// head was trained on features of the same trunk, with the same D and class names.
pub fn load_head(
    run: &std::path::Path,
    cache: Option<&FeatureCache>,
) -> Result<
    (
        crate::head::FittedHead,
        std::collections::BTreeMap<String, String>,
    ),
    CommandError,
> {
    let file = run.join("head.safetensors");
    if !file.is_file() {
        return Err(CommandError::Input(format!(
            "{} is not a train-head run: {} is missing",
            run.display(),
            file.display()
        )));
    }
    let (head, meta) = crate::head::FittedHead::load(&file)?;
    if let Some(cache) = cache {
        check_head_fits_cache(run, &head, &meta, cache)?;
    }
    Ok((head, meta))
}

/// A head loaded from `run` (metadata `meta`) against `cache`: the same trunk, D and class names.
pub fn check_head_fits_cache(
    run: &std::path::Path,
    head: &crate::head::FittedHead,
    meta: &std::collections::BTreeMap<String, String>,
    cache: &FeatureCache,
) -> Result<(), CommandError> {
    let what = format!("cache {}", cache.dir().display());
    check_same_trunk(run, meta, &cache.manifest().model.fingerprint, &what)?;
    head.check_compatible(cache.dim(), cache.classes())?;
    Ok(())
}

/// [`check_same_trunk`] for a model file: fingerprints `model` and compares.
pub fn check_model_file(
    run: &std::path::Path,
    meta: &std::collections::BTreeMap<String, String>,
    model: &std::path::Path,
) -> Result<(), CommandError> {
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
) -> Result<(), CommandError> {
    match meta.get("trunk_fingerprint") {
        Some(got) if got == want => Ok(()),
        got => Err(CommandError::Input(format!(
            "head {} was trained on features of another trunk (fingerprint {}) than {what} ({want}): \
             use the trunk it was trained with (--model or --trunk)",
            run.display(),
            got.map_or("unrecorded", |s| s.as_str()),
        ))),
    }
}
