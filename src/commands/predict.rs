//! `vggcache predict`: flags → [`PredictConfig`] → [`crate::jobs::predict`]; the CSV goes to
//! `--out` or standard output.

use std::io::Write;
use std::path::PathBuf;

use super::render::Render;
use super::{CommandError, TrunkArgs};
use crate::jobs::{PredictConfig, PredictFormat};

/// Output format of `predict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictFormatArg {
    /// `path,class,prob_<class>...`
    Csv,
    /// `id,label` with id = file stem and label = P(class 1), as Kaggle's dogs-vs-cats-redux wants.
    Kaggle,
}

impl From<PredictFormatArg> for PredictFormat {
    fn from(f: PredictFormatArg) -> Self {
        match f {
            PredictFormatArg::Csv => PredictFormat::Csv,
            PredictFormatArg::Kaggle => PredictFormat::Kaggle,
        }
    }
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
    /// Feature cache for these images (default: predict-cache/<hash of the folder's path>, beside
    /// the training cache and never inside it; one left in cache/predict-<hash> by an earlier
    /// version is moved there).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// csv: path, class and one probability per class; kaggle: id,label for 2 classes.
    #[arg(long, value_enum, default_value_t = PredictFormatArg::Csv)]
    pub format: PredictFormatArg,
    #[command(flatten)]
    pub trunk: TrunkArgs,
    /// Images per inference batch.
    #[arg(long, default_value_t = PredictConfig::default().batch_size)]
    pub batch_size: usize,
    /// Test-time augmentation: also extract each image's test-time views (a flip and five
    /// crops; cached, so a re-run reuses them) and predict the mean of the probabilities over
    /// the image and its views.
    #[arg(long)]
    pub tta: bool,
}

/// Runs `predict`; returns the number of images written.
pub fn run(args: &PredictArgs) -> Result<usize, CommandError> {
    if let Some(out) = &args.out {
        super::refuse_out_in_cache("--out", out)?; // before the model is resolved, as always
    }
    let cfg = PredictConfig {
        head: args.head.clone(),
        images: args.images.clone(),
        cache: args.cache.clone(),
        out: args.out.clone(),
        format: args.format.into(),
        model: args.trunk.model_path()?,
        trunk: args.trunk.options(),
        batch_size: args.batch_size,
        tta: args.tta,
    };
    // Standard output is the CSV: the extraction summary goes to stderr.
    let r = crate::jobs::predict(&cfg, &Render::default())?;
    match &r.written {
        Some(path) => eprintln!("{} predictions written to {}", r.rows, path.display()),
        None => std::io::stdout()
            .write_all(&r.csv)
            .map_err(|source| CommandError::Io {
                what: "writing",
                path: "<stdout>".into(),
                source,
            })?,
    }
    Ok(r.rows)
}
