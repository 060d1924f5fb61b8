//! `vggcache predict`: a trained head on a folder of images (features from a cache, extracted if missing).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::extract::{self, ExtractArgs};
use super::features::load_head;
use super::{CommandError, TrunkArgs};
use crate::cache::FeatureCache;
use crate::trunk::fingerprint_file;

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
    #[arg(long, default_value_t = 16)]
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
    let (head, meta) = load_head(&args.head, None)?;
    let model = args.trunk.model_path()?;
    if !model.is_file() {
        return Err(crate::trunk::TrunkError::ModelMissing { path: model }.into());
    }
    let fp = fingerprint_file(&model)?;
    if meta.get("trunk_fingerprint") != Some(&fp) {
        return Err(CommandError::Usage(format!(
            "head {} was trained on features of another trunk ({}) than {} ({fp}): pass the same --model",
            args.head.display(),
            meta.get("trunk_fingerprint").map_or("unrecorded", |s| s.as_str()),
            model.display()
        )));
    }
    if args.format == PredictFormat::Kaggle && head.classes().len() != 2 {
        return Err(CommandError::Usage(format!(
            "--format kaggle needs a 2-class head, this one has {}",
            head.classes().len()
        )));
    }
    let cache_dir = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache(&args.images));
    let ex = ExtractArgs {
        images: args.images.clone(),
        out: cache_dir.clone(),
        trunk: TrunkArgs {
            model: Some(model),
            trunk: None,
            ..args.trunk.clone()
        },
        batch_size: args.batch_size,
        workers: None,
        sessions: None,
        shard_rows: 128,
        val_fraction: 0.0,
        force: false,
        strict: false,
    };
    // Standard output is the CSV: the extraction summary goes to stderr.
    extract::run_with(&ex, extract::SummaryTo::Stderr)?;
    let cache = FeatureCache::open(&cache_dir)?;
    if cache.dim() != head.dim() {
        return Err(CommandError::Usage(format!(
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
    let mut text = String::new();
    match args.format {
        PredictFormat::Csv => {
            text.push_str("path,class");
            for c in head.classes() {
                text.push_str(&format!(",prob_{c}"));
            }
            text.push('\n');
            for &i in &order {
                text.push_str(&format!(
                    "{},{}",
                    csv_field(&all.paths[i]),
                    head.classes()[best[i]]
                ));
                for p in proba.row(i) {
                    text.push_str(&format!(",{p:.6}"));
                }
                text.push('\n');
            }
        }
        PredictFormat::Kaggle => {
            text.push_str("id,label\n");
            for &i in &order {
                let stem = Path::new(&all.paths[i])
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned());
                text.push_str(&format!("{},{:.6}\n", csv_field(&stem), proba[[i, 1]]));
            }
        }
    }
    match &args.out {
        Some(path) => {
            crate::fsutil::write_atomic(path, text.as_bytes()).map_err(CommandError::writing)?;
            eprintln!("{} predictions written to {}", order.len(), path.display());
        }
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
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

/// Quotes a CSV field when it holds a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
