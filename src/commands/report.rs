//! `vggcache report`: a train-head run (and optionally a compare-baselines output) as one HTML page.

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use super::features::{check_head_fits_cache, load_head, train_val, Labelled};
use super::CommandError;
use crate::baseline::LogisticParams;
use crate::cache::FeatureCache;
use crate::head::HeadConfig;
use crate::report::html::{self, Page};
use crate::report::review::{label_issues, leakage, Review};
use crate::report::CompareReport;

/// What to put on the page; `Default` holds the defaults the CLI shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    pub run: PathBuf,
    pub features: Option<PathBuf>,
    pub images: Option<PathBuf>,
    pub compare: Option<PathBuf>,
    pub out: Option<PathBuf>,
    /// Images per list. Default 24.
    pub top: usize,
    /// Folds of the out-of-fold logistic fits; 0 = no label review. Default 5.
    pub folds: usize,
}

impl ReportConfig {
    /// Settings no page can be made with.
    fn check(&self) -> Result<(), CommandError> {
        if self.folds == 1 {
            return Err(CommandError::Usage(
                "--folds must be 0 (no label review) or at least 2".into(),
            ));
        }
        Ok(())
    }
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            run: PathBuf::new(),
            features: None,
            images: None,
            compare: None,
            out: None,
            top: 24,
            folds: 5,
        }
    }
}

/// Options of `report`; defaults from [`ReportConfig::default`].
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A train-head run folder (runs/NAME).
    #[arg(long)]
    pub run: PathBuf,
    /// Feature cache (default: the cache the run was trained on, as it recorded).
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// The image folder the cache was extracted from, for thumbnails (without it, or for an image
    /// no longer there, the page says "missing").
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// A compare-baselines output folder (its compare.json joins the page).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Output file (default: RUN/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Images per list (most confidently wrong, least confident right, likely label errors).
    #[arg(long, default_value_t = ReportConfig::default().top)]
    pub top: usize,
    /// Folds of the out-of-fold logistic fits that rank likely label errors (0: skip them).
    #[arg(long, default_value_t = ReportConfig::default().folds)]
    pub folds: usize,
}

impl ReportArgs {
    pub fn config(&self) -> ReportConfig {
        ReportConfig {
            run: self.run.clone(),
            features: self.features.clone(),
            images: self.images.clone(),
            compare: self.compare.clone(),
            out: self.out.clone(),
            top: self.top,
            folds: self.folds,
        }
    }
}

/// Runs `report`.
pub fn run(args: &ReportArgs) -> Result<PathBuf, CommandError> {
    let out = write(&args.config())?;
    println!("report written to {}", out.display());
    Ok(out)
}

/// What the page is made of. `write` loads it from the run and its cache; `train-head` and
/// `compare-baselines` pass what they already hold instead of reading it all again.
pub struct PageInputs<'a> {
    /// The cache's folder (its `skipped.csv` is listed).
    pub features: &'a Path,
    pub cache: &'a FeatureCache,
    /// The head's settings (its hold-out fraction and seed are named when val was held out).
    pub head: &'a HeadConfig,
    pub train: &'a Labelled,
    pub val: &'a Labelled,
    /// Whether `val` was held out of the train split (the cache has none).
    pub held_out: bool,
    /// The head's probabilities on `val`: `(val rows, classes)`.
    pub val_proba: ArrayView2<'a, f32>,
    pub compare: Option<&'a CompareReport>,
}

/// Writes the report page of `args.run` (default `RUN/report.html`), loading the head, its cache
/// and `args.compare`; returns the page's path.
pub fn write(args: &ReportConfig) -> Result<PathBuf, CommandError> {
    args.check()?; // before anything is read
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("report.html"));
    super::refuse_out_in_cache("--out", &out)?;
    let (head, meta) = load_head(&args.run, None)?;
    let features = match (&args.features, meta.get("cache")) {
        (Some(f), _) => f.clone(),
        (None, Some(c)) => PathBuf::from(c),
        (None, None) => {
            return Err(CommandError::Input(format!(
                "run {} does not record its cache: pass --features",
                args.run.display()
            )))
        }
    };
    let cache = FeatureCache::open(&features)?;
    check_head_fits_cache(&args.run, &head, &meta, &cache)?;
    let cfg = head.config();
    let (train, val, held_out) = train_val(&cache, cfg.val_fraction, cfg.seed)?;
    let val_proba = head.try_predict_proba(val.x.view())?;
    let compare = match &args.compare {
        Some(dir) => {
            let file = dir.join("compare.json");
            let text = std::fs::read_to_string(&file).map_err(|source| CommandError::Io {
                what: "reading",
                path: file.clone(),
                source,
            })?;
            Some(CompareReport::from_json(&text)?)
        }
        None => None,
    };
    write_page(
        args,
        &PageInputs {
            features: &features,
            cache: &cache,
            head: cfg,
            train: &train,
            val: &val,
            held_out,
            val_proba: val_proba.view(),
            compare: compare.as_ref(),
        },
    )
}

/// Writes the page of `args.run` from `inp` (`args.features` and `args.compare` are not read:
/// `inp` has them); returns its path.
pub fn write_page(args: &ReportConfig, inp: &PageInputs) -> Result<PathBuf, CommandError> {
    args.check()?;
    let (cache, cfg, train, val) = (inp.cache, inp.head, inp.train, inp.val);
    let classes = cache.classes().to_vec();
    let review = Review::new(&val.paths, &val.y, inp.val_proba, args.top);
    let labels = if args.folds >= 2 {
        eprintln!(
            "scoring {} train images out of fold ({} logistic fits)",
            train.y.len(),
            args.folds
        );
        // The baseline's defaults: standardized features, C = 1.
        let params = LogisticParams::default();
        Some(label_issues(
            &train.paths,
            train.x.view(),
            &train.y,
            classes.len(),
            args.folds,
            &params,
            args.top,
        )?)
    } else {
        None
    };
    let leaks = leakage(&train.paths, train.x.view(), &val.paths, val.x.view());
    let skipped = crate::extract::skipped::read(inp.features);
    let accuracy = review
        .confusion
        .iter()
        .enumerate()
        .map(|(k, row)| row[k])
        .sum::<usize>() as f64
        / val.y.len().max(1) as f64;
    let m = cache.manifest();
    let facts = vec![
        ("run".into(), args.run.display().to_string()),
        (
            "val accuracy".into(),
            format!(
                "{accuracy:.4} on {} images{}",
                val.y.len(),
                if inp.held_out {
                    format!(
                        " (held out of train: --val-fraction {}, seed {})",
                        cfg.val_fraction, cfg.seed
                    )
                } else {
                    String::new()
                }
            ),
        ),
        ("trunk".into(), m.model.provenance.clone()),
        ("trunk fingerprint".into(), m.model.fingerprint.clone()),
        (
            "cache".into(),
            format!("{} (fingerprint {})", inp.features.display(), m.fingerprint),
        ),
        (
            "images".into(),
            format!(
                "{} train, {} val, {} skipped at extraction; classes {}",
                train.y.len(),
                val.y.len(),
                skipped.len(),
                classes.join(", ")
            ),
        ),
    ];
    let page = Page {
        title: format!("vggcache report: {}", args.run.display()),
        facts,
        classes: &classes,
        curves_png: std::fs::read(args.run.join("loss_acc.png")).ok(),
        review: &review,
        compare: inp.compare,
        labels: labels.as_ref(),
        leakage: &leaks,
        skipped: &skipped,
        images: args.images.as_deref(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("report.html"));
    crate::report::write_atomic(&out, html::render(&page).as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReportArgs,
    }

    #[test]
    fn cli_defaults_are_the_config_defaults() {
        let cfg = Cli::parse_from(["x", "--run", "r"]).args.config();
        assert_eq!(
            cfg,
            ReportConfig {
                run: "r".into(),
                ..ReportConfig::default()
            }
        );
    }
}
