//! `vggcache compare-baselines`: the head beside linfa-logistic and a majority-class row, same features.

use std::path::PathBuf;
use std::time::Instant;

use super::features::{load_head, train_val};
use super::train_head::{self, TrainHeadArgs};
use super::CommandError;
use crate::baseline::{fit_logistic, fit_majority, Classifier, LogisticParams};
use crate::cache::FeatureCache;
use crate::report::{evaluate, write_predictions, CompareReport};

/// Options of `compare-baselines`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    #[arg(long, default_value = "cache")]
    pub features: PathBuf,
    /// A trained head (runs/NAME); default: train one with train-head's defaults.
    #[arg(long)]
    pub head: Option<PathBuf>,
    /// Logistic regression's inverse L2 strength, as scikit-learn's C (linfa alpha = 1/C).
    #[arg(long = "C", default_value_t = 1.0)]
    pub c: f64,
    /// L-BFGS iteration cap of the logistic regression.
    #[arg(long, default_value_t = 1000)]
    pub max_iter: u64,
    /// Standardize features before the logistic regression (train statistics).
    #[arg(long)]
    pub logistic_standardize: bool,
    /// Hold-out fraction of train when the cache has no val split (default: with --head the
    /// head's own, so it is scored on rows it did not train on; else train-head's 0.2).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Where compare.md, compare.json and predictions.csv go.
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
}

/// Fits the baselines, scores every model on the val split, prints and writes the report.
pub fn run(args: &CompareArgs) -> Result<CompareReport, CommandError> {
    if !(args.c.is_finite() && args.c > 0.0) {
        return Err(CommandError::Usage(format!(
            "--C must be > 0, got {}",
            args.c
        )));
    }
    if let Some(v) = args.val_fraction.filter(|v| !(0.0..1.0).contains(v)) {
        return Err(CommandError::Usage(format!(
            "--val-fraction must be in [0, 1), got {v}"
        )));
    }
    let cache = FeatureCache::open(&args.features)?;
    let classes = cache.classes().to_vec();
    // The head: given, or trained now with defaults (its own hold-out uses the same seed 0).
    let (head, head_fit_s, head_name) = match &args.head {
        Some(run) => {
            let (h, _) = load_head(run, Some(&cache))?;
            (h, f64::NAN, format!("mlp head ({})", run.display()))
        }
        None => {
            let t = Instant::now();
            let targs = TrainHeadArgs {
                features: args.features.clone(),
                val_fraction: args
                    .val_fraction
                    .unwrap_or(crate::head::HeadConfig::default().val_fraction),
                ..default_train_args()
            };
            let r = train_head::run(&targs)?;
            (
                r.outcome.head,
                t.elapsed().as_secs_f64(),
                format!("mlp head ({})", r.run_dir.display()),
            )
        }
    };
    // A given head is scored on the hold-out it did not train on: its own fraction and seed.
    let has_val = cache.split_names().iter().any(|n| n == "val");
    let own = head.config().val_fraction;
    let val_fraction = match (&args.head, args.val_fraction) {
        (Some(_), None) => {
            if !has_val {
                eprintln!(
                    "note: using the head's own hold-out (--val-fraction {own}, seed {})",
                    head.config().seed
                );
            }
            own
        }
        (Some(run), Some(v)) if v != own && !has_val => {
            return Err(CommandError::Input(format!(
                "cache {} has no val split and --val-fraction {v} is not the hold-out head {} was \
                 trained with (--val-fraction {own}): its score would count rows it trained on; \
                 leave --val-fraction out to use the head's",
                args.features.display(),
                run.display()
            )));
        }
        (_, Some(v)) => v,
        (None, None) => own,
    };
    let (train, val, held_out) = train_val(&cache, val_fraction, head.config().seed)?;
    let mut rows = Vec::new();

    let timed = |m: &dyn Classifier| {
        let t = Instant::now();
        let p = m.predict_proba(val.x.view());
        (p, t.elapsed().as_secs_f64())
    };
    let t = Instant::now();
    let majority = fit_majority(&train.y, classes.len())?;
    let fit = t.elapsed().as_secs_f64();
    let (p_majority, s) = timed(&majority);
    rows.push(evaluate(
        "majority class",
        p_majority.view(),
        &val.y,
        &classes,
        fit,
        s,
    )?);

    let params = LogisticParams {
        l2: LogisticParams::l2_from_sklearn_c(args.c),
        max_iter: args.max_iter,
        standardize: args.logistic_standardize,
        ..LogisticParams::default()
    };
    eprintln!(
        "fitting linfa-logistic (C = {}, max_iter {}) on {} x {}",
        args.c,
        args.max_iter,
        train.y.len(),
        cache.dim()
    );
    let t = Instant::now();
    let logistic = fit_logistic(&params, train.x.view(), &train.y, classes.len())?;
    let fit = t.elapsed().as_secs_f64();
    let (p_logistic, s) = timed(&logistic);
    rows.push(evaluate(
        "linfa-logistic",
        p_logistic.view(),
        &val.y,
        &classes,
        fit,
        s,
    )?);

    let t = Instant::now();
    let p_head = head.try_predict_proba(val.x.view())?;
    rows.push(evaluate(
        &head_name,
        p_head.view(),
        &val.y,
        &classes,
        head_fit_s,
        t.elapsed().as_secs_f64(),
    )?);

    let m = cache.manifest();
    let report = CompareReport {
        classes,
        n_train: train.y.len(),
        n_val: val.y.len(),
        feature_dim: cache.dim(),
        rows,
        notes: vec![
            format!(
                "features: {} ({})",
                args.features.display(),
                m.model.provenance
            ),
            format!(
                "val: {}",
                if held_out {
                    "held out of train (the cache has no val split)"
                } else {
                    "the cache's val split"
                }
            ),
            format!(
                "logistic: C = {} (linfa alpha = {}), max_iter {}, standardize {}",
                args.c, params.l2, args.max_iter, args.logistic_standardize
            ),
            "head fit s: NaN when a trained --head was given".into(),
        ],
    };
    println!("{}", report.to_text());
    let (md, json) = report.write_to(&args.out)?;
    let preds = write_predictions(
        &args.out,
        &report.classes,
        &val.paths,
        &val.y,
        &[
            ("majority class", p_majority.view()),
            ("linfa-logistic", p_logistic.view()),
            (&head_name, p_head.view()),
        ],
    )?;
    println!(
        "written: {}, {} and {}",
        md.display(),
        json.display(),
        preds.display()
    );
    Ok(report)
}

fn default_train_args() -> TrainHeadArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        a: TrainHeadArgs,
    }
    Wrap::parse_from(["train-head"]).a
}
