//! `vggcache predict`: a trained head on a folder of images (features from a cache, extracted if missing).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::features::{check_model_file, load_head};
use super::{CommandError, TrunkArgs};
use crate::cache::FeatureCache;
use crate::extract::{self, ExtractConfig};
use crate::report::formula_safe;

/// Output format of `predict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictFormat {
    /// `path,class,prob_<class>...`
    Csv,
    /// `id,label` with id = file stem and label = P(class 1), as Kaggle's dogs-vs-cats-redux wants.
    Kaggle,
}

/// Options of `predict`.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// A train-head run folder (runs/NAME).
    #[arg(long)]
    pub head: PathBuf,
    /// Images to classify (any layout `extract` understands).
    #[arg(long)]
    pub images: PathBuf,
    /// Feature cache for these images (default: cache/predict-<hash of the folder's path>, so the
    /// training cache is never touched).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PredictFormat::Csv)]
    pub format: PredictFormat,
    #[command(flatten)]
    pub trunk: TrunkArgs,
    /// Images per inference batch.
    #[arg(long, default_value_t = ExtractConfig::default().batch_size)]
    pub batch_size: usize,
}

/// Default per-folder cache: `cache/predict-<first 12 hex of sha256(canonical path)>`.
fn default_cache(images: &Path) -> PathBuf {
    let canon = images
        .canonicalize()
        .unwrap_or_else(|_| images.to_path_buf());
    let h = hex::encode(Sha256::digest(canon.to_string_lossy().as_bytes()));
    PathBuf::from("cache").join(format!("predict-{}", &h[..12]))
}

/// Runs `predict`; returns the number of images written.
pub fn run(args: &PredictArgs) -> Result<usize, CommandError> {
    if let Some(out) = &args.out {
        super::refuse_out_in_cache("--out", out)?;
    }
    let (head, meta) = load_head(&args.head, None)?;
    let model = args.trunk.model_path()?;
    if model.is_dir() {
        return Err(crate::trunk::TrunkError::ModelIsFolder { path: model }.into());
    }
    if !model.is_file() {
        return Err(crate::trunk::TrunkError::ModelMissing { path: model }.into());
    }
    check_model_file(&args.head, &meta, &model)?;
    if args.format == PredictFormat::Kaggle && head.classes().len() != 2 {
        return Err(CommandError::Input(format!(
            "--format kaggle needs a 2-class head, this one has {}",
            head.classes().len()
        )));
    }
    let cache_dir = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache(&args.images));
    let cfg = ExtractConfig {
        images: args.images.clone(),
        out: cache_dir.clone(),
        model,
        trunk: args.trunk.options(),
        batch_size: args.batch_size,
        val_fraction: 0.0,
        ..ExtractConfig::default()
    };
    // Standard output is the CSV: the extraction summary goes to stderr.
    let summary = extract::run(&cfg, &super::render::Render::default())?;
    eprintln!("{}", summary.render(&cfg.out));
    let cache = FeatureCache::open(&cache_dir)?;
    if cache.dim() != head.dim() {
        return Err(CommandError::Input(format!(
            "head expects {} features, cache {} has {}",
            head.dim(),
            cache_dir.display(),
            cache.dim()
        )));
    }
    let all = cache.all()?;
    let proba = head.try_predict_proba(all.features.view())?;
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|&a, &b| natural_key(&all.paths[a]).cmp(&natural_key(&all.paths[b])));
    let best = crate::metrics::argmax_rows(
        proba
            .as_slice()
            .expect("predict_proba returns a standard-layout array"),
        head.classes().len(),
    );
    let text = predictions_csv(
        args.format,
        head.classes(),
        &all.paths,
        &order,
        &best,
        &proba,
    )
    .map_err(|source| CommandError::Io {
        what: "formatting",
        path: "predictions".into(),
        source,
    })?;
    match &args.out {
        Some(path) => {
            crate::fsutil::write_atomic(path, &text).map_err(CommandError::writing)?;
            eprintln!("{} predictions written to {}", order.len(), path.display());
        }
        None => {
            std::io::stdout()
                .write_all(&text)
                .map_err(|source| CommandError::Io {
                    what: "writing",
                    path: "<stdout>".into(),
                    source,
                })?;
        }
    }
    Ok(order.len())
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
