//! The predict job: a trained head on a folder of images (features from a cache, extracted
//! if missing), as CSV or Kaggle's submission format.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::rows::{check_model_file, load_head};
use super::JobError;
use crate::cache::FeatureCache;
use crate::events::{Event, Events};
use crate::extract::{self, ExtractConfig};
use crate::report::formula_safe;
use crate::trunk::TrunkOptions;

/// Output format of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PredictFormat {
    /// `path,class,prob_<class>...`
    #[default]
    Csv,
    /// `id,label` with id = file stem and label = P(class 1), as Kaggle's dogs-vs-cats-redux wants.
    Kaggle,
}

/// Settings of a prediction. `Default` is the only source of the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictConfig {
    /// A train-head run folder (runs/NAME).
    pub head: PathBuf,
    /// Images to classify (any layout `extract` understands).
    pub images: PathBuf,
    /// Feature cache for these images; `None` = [`default_cache`] of `images`.
    pub cache: Option<PathBuf>,
    /// Output file; `None` = the CSV is only returned.
    pub out: Option<PathBuf>,
    /// CSV or Kaggle.
    pub format: PredictFormat,
    /// The trunk ONNX model (the one the head was trained on).
    pub model: PathBuf,
    /// Where and how the trunk runs.
    pub trunk: TrunkOptions,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Test-time augmentation: extract each image's test-time views too (a flip and five
    /// crops) and predict the mean of the probabilities over the image and its views.
    pub tta: bool,
}

impl Default for PredictConfig {
    fn default() -> Self {
        let e = ExtractConfig::default();
        Self {
            head: PathBuf::new(),
            images: PathBuf::new(),
            cache: None,
            out: None,
            format: PredictFormat::default(),
            model: e.model,
            trunk: e.trunk,
            batch_size: e.batch_size,
            tta: false,
        }
    }
}

impl PredictConfig {
    /// Settings no prediction can use (the extraction's own are checked by [`extract::run`]).
    pub fn check(&self) -> Result<(), JobError> {
        if let Some(out) = &self.out {
            super::refuse_out_in_cache("--out", out)?;
        }
        Ok(())
    }
}

/// What a prediction made.
#[derive(Debug, Clone)]
pub struct PredictOutcome {
    /// The predictions, CSV text.
    pub csv: Vec<u8>,
    /// Images predicted.
    pub rows: usize,
    /// The file written (`out`), if any.
    pub written: Option<PathBuf>,
}

/// Folder of `predict`'s default caches, beside the default training cache `cache/` (not inside
/// it, so a glob over the training cache never sees prediction rows).
pub const DEFAULT_PREDICT_DIR: &str = "predict-cache";

/// Default per-folder cache: `predict-cache/<first 12 hex of sha256(canonical path)>`.
pub fn default_cache(images: &Path) -> PathBuf {
    PathBuf::from(DEFAULT_PREDICT_DIR).join(folder_hash(images))
}

/// First 12 hex digits of the sha256 of `images`' canonical path (as written when it cannot be
/// resolved).
fn folder_hash(images: &Path) -> String {
    let canon = images
        .canonicalize()
        .unwrap_or_else(|_| images.to_path_buf());
    let h = hex::encode(Sha256::digest(canon.to_string_lossy().as_bytes()));
    h[..12].to_string()
}

/// Moves the default caches that earlier versions kept inside the training cache
/// (`cache/predict-<12 hex>`) to `predict-cache/<12 hex>`: a rename, nothing is extracted again.
/// One that cannot move (its new place is taken, or the rename fails) stays where it is and is
/// named in a notice; `predict` never reads it again, so it breaks nothing.
fn move_legacy_caches(events: &dyn Events) {
    let legacy_root = Path::new(crate::cache::DEFAULT_DIR);
    let Ok(entries) = std::fs::read_dir(legacy_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(hash) = name.strip_prefix("predict-") else {
            continue;
        };
        let ours = hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !ours || !entry.path().is_dir() {
            continue;
        }
        let from = entry.path();
        let to = Path::new(DEFAULT_PREDICT_DIR).join(hash);
        let moved = if to.exists() {
            Err(format!("{} exists already", to.display()))
        } else {
            std::fs::create_dir_all(DEFAULT_PREDICT_DIR)
                .and_then(|()| std::fs::rename(&from, &to))
                .map_err(|e| e.to_string())
        };
        events.event(&Event::Notice(match moved {
            Ok(()) => format!(
                "moved predict's cache {} to {} (prediction features no longer live inside the \
                 training cache)",
                from.display(),
                to.display()
            ),
            Err(why) => format!(
                "left {} in place ({why}); predict no longer uses it: delete it with `rm -r {}`",
                from.display(),
                from.display()
            ),
        }));
    }
}

/// Extracts the features of `args.images` (cached), applies the head, and returns (and with
/// `args.out` writes) the predictions in natural path order. The extraction's progress goes to
/// `events`, and so do the job's own notices.
pub fn predict(args: &PredictConfig, events: &dyn Events) -> Result<PredictOutcome, JobError> {
    args.check()?;
    let (head, meta) = load_head(&args.head, None)?;
    super::source::refuse_joined(&args.head, &meta, "predict")?;
    let model = args.model.clone();
    if model.is_dir() {
        return Err(crate::trunk::TrunkError::ModelIsFolder { path: model }.into());
    }
    if !model.is_file() {
        return Err(crate::trunk::TrunkError::ModelMissing { path: model }.into());
    }
    check_model_file(&args.head, &meta, &model)?;
    if args.format == PredictFormat::Kaggle && head.classes().len() != 2 {
        return Err(JobError::KaggleClasses {
            classes: head.classes().len(),
        });
    }
    let cache_dir = match &args.cache {
        Some(dir) => dir.clone(),
        None => {
            move_legacy_caches(events);
            default_cache(&args.images)
        }
    };
    let cfg = ExtractConfig {
        images: args.images.clone(),
        out: cache_dir.clone(),
        model,
        trunk: args.trunk.clone(),
        batch_size: args.batch_size,
        val_fraction: 0.0,
        views: extract::ViewSettings {
            tta: args.tta,
            tta_every_split: args.tta,
            ..Default::default()
        },
        ..ExtractConfig::default()
    };
    let summary = extract::run(&cfg, events)?;
    events.event(&Event::Notice(summary.render(&cfg.out)));
    let cache = FeatureCache::open(&cache_dir)?;
    if cache.dim() != head.dim() {
        return Err(JobError::DimMismatch {
            head_dim: head.dim(),
            cache: cache_dir,
            cache_dim: cache.dim(),
        });
    }
    // One row per image: its plain view, or with --tta the mean over it and its views.
    let plain: Vec<usize> = (0..cache.len())
        .filter(|&i| cache.row_views()[i] == 0)
        .collect();
    let all = cache.rows(&plain)?;
    let proba = match args.tta {
        true => super::train::tta_proba(&cache, &head, &plain, "predicted")?,
        false => head.try_predict_proba(all.features.view())?,
    };
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|&a, &b| natural_key(&all.paths[a]).cmp(&natural_key(&all.paths[b])));
    let best = crate::metrics::argmax_rows(
        proba
            .as_slice()
            .expect("predict_proba returns a standard-layout array"),
        head.classes().len(),
    );
    let csv = predictions_csv(
        args.format,
        head.classes(),
        &all.paths,
        &order,
        &best,
        &proba,
    )
    .map_err(|source| JobError::Io {
        what: "formatting",
        path: "predictions".into(),
        source,
    })?;
    if let Some(path) = &args.out {
        crate::fsutil::write_atomic(path, &csv).map_err(JobError::writing)?;
    }
    Ok(PredictOutcome {
        csv,
        rows: order.len(),
        written: args.out.clone(),
    })
}

/// Sort key that orders `10.jpg` after `9.jpg`: (non-digit prefix, number, rest).
fn natural_key(path: &str) -> (String, u64, String) {
    let stem_start = path.rfind('/').map_or(0, |i| i + 1);
    let (dir, name) = path.split_at(stem_start);
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.parse::<u64>() {
        Ok(n) => (dir.to_string(), n, name[digits.len()..].to_string()),
        Err(_) => (dir.to_string(), u64::MAX, name.to_string()),
    }
}

/// The predictions as CSV, rows in `order`: `path,class,prob_<class>...` or Kaggle's `id,label`
/// (label = P(class 1)). `proba` is `(rows, classes)`, `best[i]` the argmax of its row `i`.
fn predictions_csv(
    format: PredictFormat,
    classes: &[String],
    paths: &[String],
    order: &[usize],
    best: &[usize],
    proba: &ndarray::Array2<f32>,
) -> std::io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    match format {
        PredictFormat::Csv => {
            let mut header = vec!["path".to_string(), "class".to_string()];
            header.extend(classes.iter().map(|c| format!("prob_{c}")));
            w.write_record(&header)?;
            for &i in order {
                // Names and paths are text from data: made inert for spreadsheets.
                let mut rec = vec![
                    formula_safe(&paths[i]).into_owned(),
                    formula_safe(&classes[best[i]]).into_owned(),
                ];
                rec.extend(proba.row(i).iter().map(|p| format!("{p:.6}")));
                w.write_record(&rec)?;
            }
        }
        PredictFormat::Kaggle => {
            w.write_record(["id", "label"])?;
            for &i in order {
                let stem = Path::new(&paths[i])
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned());
                let id = formula_safe(&stem).into_owned();
                w.write_record([id, format!("{:.6}", proba[[i, 1]])])?;
            }
        }
    }
    w.into_inner().map_err(|e| e.into_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_quote_what_csv_must() {
        let classes = vec!["cat".to_string(), "dog, big".to_string()];
        let paths = vec!["a,\"b\".jpg".to_string(), "test/10.jpg".to_string()];
        let proba = ndarray::array![[0.25f32, 0.75], [0.9, 0.1]];
        let csv = predictions_csv(
            PredictFormat::Csv,
            &classes,
            &paths,
            &[1, 0],
            &[1, 0],
            &proba,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "path,class,prob_cat,\"prob_dog, big\"\n\
             test/10.jpg,cat,0.900000,0.100000\n\
             \"a,\"\"b\"\".jpg\",\"dog, big\",0.250000,0.750000\n"
        );
        let kaggle = predictions_csv(
            PredictFormat::Kaggle,
            &classes,
            &paths,
            &[1],
            &[0, 1],
            &proba,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(kaggle).unwrap(),
            "id,label\n10,0.100000\n"
        );
    }
}
