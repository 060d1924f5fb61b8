//! The compare-baselines job: the head beside linfa-logistic and a majority-class row on the same
//! features: the hold-out choice, sampling to the memory budget, the C search, the report's rows,
//! the predictions and the page.

use std::path::PathBuf;
use std::time::Instant;

use super::page::{write_page, PageInputs, ReportConfig};
use super::rows::{load_head, split_rows, tta_views, with_aug_views, Rows};
use super::train::{train, TrainConfig, TrainRunOutcome};
use super::{memory_budget, JobError};
use crate::baseline::{
    fit_logistic, fit_majority, search_c, CRule, CSearch, CSearchParams, Classifier, LogisticParams,
};
use crate::events::{Event, Events};
use crate::report::{evaluate, write_predictions, CompareReport, Section};

/// Settings of a comparison. `Default` is the only source of the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// Feature cache made by `extract`.
    pub features: PathBuf,
    /// More caches of the same images, made by other trunks, joined to `features` by content
    /// hash: every model fits the concatenated features (as [`TrainConfig::extra_features`]).
    pub extra_features: Vec<PathBuf>,
    /// With `extra_features`: leave out images some cache lacks instead of refusing.
    pub drop_unmatched: bool,
    /// A trained head (runs/NAME); `None` = train one with [`TrainConfig::default`]'s settings.
    pub head: Option<PathBuf>,
    /// Logistic regression's inverse L2 strength, as scikit-learn's C; `None` = chosen by
    /// cross-validation on the train rows ([`search_c`]).
    pub c: Option<f64>,
    /// How the search chooses `C` when `c` is `None` ([`CRule::default`]: anchored at C = 1).
    pub c_rule: CRule,
    /// L-BFGS iteration cap of the logistic regression.
    pub max_iter: u64,
    /// Standardize the features for the logistic regression (train rows' statistics).
    pub standardize: bool,
    /// Fit the logistic regression on every cached augmented view of the train images too
    /// (`extract --views`), each a row labelled as its image; `false` = the plain views. C is
    /// searched on the plain views either way (folds by image: no image's views on both sides).
    pub logistic_views: bool,
    /// Score every model on val by test-time augmentation: the mean of its probabilities over
    /// each image's plain view and cached test-time views (`extract --tta-views`).
    pub tta: bool,
    /// Hold-out fraction of train when the cache has no val split; `None` = a given head's own,
    /// else [`crate::head::HeadConfig::default`]'s.
    pub val_fraction: Option<f64>,
    /// Bytes the loaded features may take; `None` = half of the machine's RAM ([`memory_budget`]).
    pub memory_budget: Option<u64>,
    /// Where compare.md, compare.json, predictions.csv and report.html go.
    pub out: PathBuf,
    /// The image folder the cache was extracted from: thumbnails in report.html.
    pub images: Option<PathBuf>,
}

impl Default for CompareConfig {
    fn default() -> Self {
        let logistic = LogisticParams::default();
        Self {
            features: PathBuf::from(super::DEFAULT_CACHE),
            extra_features: Vec::new(),
            drop_unmatched: false,
            head: None,
            c: None,
            c_rule: CRule::default(),
            max_iter: logistic.max_iter,
            standardize: logistic.standardize,
            logistic_views: false,
            tta: false,
            val_fraction: None,
            memory_budget: None,
            out: PathBuf::from(super::DEFAULT_COMPARE_OUT),
            images: None,
        }
    }
}

impl CompareConfig {
    /// Settings no comparison can use.
    pub fn check(&self) -> Result<(), JobError> {
        super::refuse_out_in_cache("--out", &self.out)?;
        if let Some(c) = self.c.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(JobError::BadC { c });
        }
        if let Some(value) = self.val_fraction.filter(|v| !(0.0..1.0).contains(v)) {
            return Err(JobError::BadValFraction { value });
        }
        Ok(())
    }

    /// The logistic regression's settings for `C`: [`LogisticParams::default`] with these.
    pub fn logistic_params(&self, c: f64) -> LogisticParams {
        LogisticParams {
            l2: LogisticParams::l2_from_sklearn_c(c),
            max_iter: self.max_iter,
            standardize: self.standardize,
            ..LogisticParams::default()
        }
    }
}

/// A model's `(n, d) → (n, classes)` probabilities, as the scoring takes it.
type Predict<'a> = dyn Fn(ndarray::ArrayView2<f32>) -> Result<ndarray::Array2<f32>, JobError> + 'a;

/// What a comparison made.
#[derive(Debug, Clone)]
pub struct CompareOutcome {
    /// The scores of every model, with the notes and the C search's table.
    pub report: CompareReport,
    /// The head trained for the comparison (`None` when one was given).
    pub trained: Option<TrainRunOutcome>,
    /// compare.md.
    pub markdown: PathBuf,
    /// compare.json.
    pub json: PathBuf,
    /// predictions.csv.
    pub predictions: PathBuf,
    /// report.html.
    pub page: PathBuf,
}

/// Fits the baselines, scores every model on the val split, writes the report, the predictions
/// and the page into `args.out`.
pub fn compare(args: &CompareConfig, events: &dyn Events) -> Result<CompareOutcome, JobError> {
    args.check()?;
    let opened = super::source::open_features(
        &args.features,
        &args.extra_features,
        args.drop_unmatched,
        events,
    )?;
    let cache = opened.source();
    let classes = cache.classes().to_vec();
    // Views are read from one cache: a join pairs plain views only.
    let one = opened.views_cache(&[
        ("tta", "test-time", args.tta),
        ("logistic-views", "augmented", args.logistic_views),
    ])?;
    // The head: given, or trained now with defaults (its own hold-out uses the same seed 0).
    let (head, head_fit_s, run_dir, trained) = match &args.head {
        Some(run) => {
            let (h, _) = load_head(run, Some(cache))?;
            (h, f64::NAN, run.clone(), None)
        }
        None => {
            let t = Instant::now();
            let defaults = TrainConfig::default();
            let run = TrainConfig {
                features: args.features.clone(),
                extra_features: args.extra_features.clone(),
                drop_unmatched: args.drop_unmatched,
                head: crate::head::HeadConfig {
                    val_fraction: args.val_fraction.unwrap_or(defaults.head.val_fraction),
                    ..defaults.head.clone()
                },
                memory_budget: args.memory_budget,
                ..defaults
            };
            let r = train(&run, events)?;
            events.event(&Event::Trained {
                run_dir: r.run_dir.clone(),
                summary: r.summary.clone(),
                page: r.page.clone(),
            });
            let head = r.outcome.head.clone();
            let run_dir = r.run_dir.clone();
            (head, t.elapsed().as_secs_f64(), run_dir, Some(r))
        }
    };
    let head_name = format!("mlp head ({})", run_dir.display());
    // A given head is scored on the hold-out it did not train on: its own fraction and seed.
    let has_val = cache.has_split(crate::dataset::Split::Val);
    let own = head.config().val_fraction;
    let val_fraction = match (&args.head, args.val_fraction) {
        (Some(_), None) => {
            if !has_val {
                events.event(&Event::Notice(format!(
                    "note: using the head's own hold-out (--val-fraction {own}, seed {})",
                    head.config().seed
                )));
            }
            own
        }
        (Some(run), Some(value)) if value != own && !has_val => {
            return Err(JobError::HoldoutMismatch {
                features: args.features.clone(),
                value,
                run: run.clone(),
                own,
            });
        }
        (_, Some(v)) => v,
        (None, None) => own,
    };
    let (train, val, held_out) = split_rows(cache, val_fraction, head.config().seed)?;
    let budget = memory_budget(args.memory_budget);
    let (train_rows, val_rows, sampled) =
        sample_to_budget(train, val, cache.dim(), budget, head.config().seed);
    if let Some(s) = &sampled {
        events.event(&Event::Notice(format!("note: {s}")));
    }
    let (train, val) = (train_rows.read(cache)?, val_rows.read(cache)?);
    // With --tta: each val image's plain and test-time views, scored together.
    let tta = one
        .filter(|_| args.tta)
        .map(|c| tta_views(c, &val_rows.rows, "val"))
        .transpose()?;
    let views = one
        .filter(|_| args.logistic_views)
        .map(|c| with_aug_views(c, &train_rows))
        .transpose()?;
    let mut rows = Vec::new();

    // `(n_val, classes)` probabilities of a model and the seconds they took.
    let timed = |m: &Predict| {
        let t = Instant::now();
        let p = match &tta {
            Some((x, at)) => crate::metrics::mean_over_groups(m(x.view())?.view(), at),
            None => m(val.x.view())?,
        };
        Ok::<_, JobError>((p, t.elapsed().as_secs_f64()))
    };
    let t = Instant::now();
    let majority = fit_majority(&train.y, classes.len())?;
    let fit = t.elapsed().as_secs_f64();
    let (p_majority, s) = timed(&|x| Ok(majority.predict_proba(x)))?;
    rows.push(evaluate(
        "majority class",
        p_majority.view(),
        &val.y,
        &classes,
        fit,
        s,
    )?);

    let base = args.logistic_params(1.0);
    let search = match args.c {
        Some(_) => None,
        None => {
            events.event(&Event::Notice(format!(
                "searching linfa-logistic's C by cross-validation on the {} train rows",
                train.y.len()
            )));
            let s = CSearchParams {
                rule: args.c_rule,
                ..CSearchParams::default()
            };
            let r = search_c(&base, &s, train.x.view(), &train.y, classes.len())?;
            events.event(&Event::Notice(format!(
                "C search: {} values x {} fold(s) in {:.1} s, chosen C = {}",
                r.curve.len(),
                r.folds,
                r.seconds,
                r.chosen_c
            )));
            Some(r)
        }
    };
    let c = args
        .c
        .or(search.as_ref().map(|s| s.chosen_c))
        .unwrap_or(1.0);
    let params = args.logistic_params(c);
    let fit_on = views.as_ref().unwrap_or(&train);
    events.event(&Event::Notice(format!(
        "fitting linfa-logistic (C = {c:.4}, max_iter {}, standardize {}) on {} x {}{}",
        args.max_iter,
        params.standardize,
        fit_on.y.len(),
        cache.dim(),
        if views.is_some() {
            " (the train images' plain and augmented views)"
        } else {
            ""
        }
    )));
    let t = Instant::now();
    let logistic = fit_logistic(&params, fit_on.x.view(), &fit_on.y, classes.len())?;
    let fit = t.elapsed().as_secs_f64();
    let (p_logistic, s) = timed(&|x| Ok(logistic.predict_proba(x)))?;
    let mut row = evaluate(
        "linfa-logistic",
        p_logistic.view(),
        &val.y,
        &classes,
        fit,
        s,
    )?;
    row.iterations = Some(logistic.n_iter());
    row.converged = Some(logistic.converged());
    rows.push(row);

    let (p_head, s) = timed(&|x| Ok(head.try_predict_proba(x)?))?;
    rows.push(evaluate(
        &head_name,
        p_head.view(),
        &val.y,
        &classes,
        head_fit_s,
        s,
    )?);

    let provenance: Vec<String> = cache.parts().into_iter().map(|p| p.provenance).collect();
    let features: Vec<String> = std::iter::once(&args.features)
        .chain(&args.extra_features)
        .map(|f| f.display().to_string())
        .collect();
    let report = CompareReport {
        classes,
        n_train: train.y.len(),
        n_val: val.y.len(),
        feature_dim: cache.dim(),
        rows,
        notes: vec![
            format!(
                "features: {} ({})",
                features.join(" + "),
                provenance.join(" + ")
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
                "logistic: C = {c} (linfa alpha = {}), max_iter {}, standardize {}; {}",
                params.l2,
                args.max_iter,
                params.standardize,
                match &search {
                    Some(s) => format!(
                        "C chosen among {} values by {} of the train rows ({}; lowest mean log \
                         loss at C = {}; each fit from zero), then refitted from zero on all \
                         train rows",
                        s.curve.len(),
                        s.scheme(),
                        s.rule.describe(),
                        s.best_c,
                    ),
                    None => "C given by --C (no search)".into(),
                }
            ),
            if logistic.converged() {
                format!("logistic: converged in {} iterations", logistic.n_iter())
            } else {
                format!(
                    "logistic: NOT converged, stopped after {} iterations ({})",
                    logistic.n_iter(),
                    logistic.termination()
                )
            },
            "head fit s: NaN when a trained --head was given".into(),
        ]
        .into_iter()
        .chain(tta.as_ref().map(|(x, _)| {
            format!(
                "val scored by test-time augmentation: each model's mean probability over each \
                 image's plain and cached test-time views ({} rows for {} images)",
                x.nrows(),
                val.y.len()
            )
        }))
        .chain(views.as_ref().map(|v| {
            format!(
                "linfa-logistic fitted on {} rows: the {} train images' plain and cached \
                 augmented views, each labelled as its image (C {} on the plain views)",
                v.y.len(),
                train.y.len(),
                if args.c.is_some() {
                    "given"
                } else {
                    "searched"
                }
            )
        }))
        .chain(sampled)
        .collect(),
        sections: search.iter().map(c_curve).collect(),
    };
    let (markdown, json) = report.write_to(&args.out)?;
    let predictions = write_predictions(
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
    let page = write_page(
        &ReportConfig {
            run: run_dir,
            images: args.images.clone(),
            out: Some(args.out.join("report.html")),
            ..Default::default()
        },
        &PageInputs {
            features: &args.features,
            cache,
            head: head.config(),
            train: &train,
            val: &val,
            held_out,
            val_proba: p_head.view(),
            compare: Some(&report),
        },
        events,
    )?;
    Ok(CompareOutcome {
        report,
        trained,
        markdown,
        json,
        predictions,
        page,
    })
}

/// The scores-against-C table of a search, ascending C: mean ± sd over the folds, each fold's
/// iterations (a 0 flagged), the chosen and the best C marked.
fn c_curve(s: &CSearch) -> Section {
    let rows = s
        .curve
        .iter()
        .map(|p| {
            let iters: Vec<String> = p.n_iter.iter().map(u64::to_string).collect();
            let mut iterations = iters.join(" ");
            if p.n_iter.contains(&0) {
                iterations.push_str(" (0: the start met the tolerance)");
            }
            if !p.converged {
                iterations.push_str(" (not converged)");
            }
            vec![
                format!("{:.4e}", p.c),
                format!("{:.4} ± {:.4}", p.val_accuracy, p.val_accuracy_sd),
                format!("{:.4} ± {:.4}", p.val_log_loss, p.val_log_loss_sd),
                iterations,
                format!("{:.3}", p.fit_seconds),
                match (p.c == s.chosen_c, p.c == s.best_c, s.rule) {
                    (true, true, _) => "chosen, lowest loss",
                    (true, false, CRule::Anchored { c }) if p.c == c => {
                        "chosen (the default C, not beaten)"
                    }
                    (true, false, CRule::Anchored { .. }) => "chosen (beats C = 1 by > 1 SE)",
                    (true, false, CRule::OneStandardError) => "chosen (1-SE rule)",
                    (false, true, _) => "lowest loss",
                    _ => "",
                }
                .into(),
            ]
        })
        .collect();
    Section {
        title: format!(
            "linfa-logistic: scores against C, {} of the train rows ({} scored per fold; never \
             the reported val split)",
            s.scheme(),
            s.n_val
        ),
        header: [
            "C",
            "accuracy (mean ± sd)",
            "log loss (mean ± sd)",
            "iterations per fold",
            "fit s",
            "",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// When the train and val features (`dim` floats a row) exceed `budget` bytes, a seeded uniform
/// sample of each split, in the same proportion, that fits; with the note saying so. The logistic
/// regression (L-BFGS over the whole matrix) is not streamed: a sample keeps compare-baselines
/// usable on a cache bigger than memory, and says that it sampled.
fn sample_to_budget(
    train: Rows,
    val: Rows,
    dim: usize,
    budget: u64,
    seed: u64,
) -> (Rows, Rows, Option<String>) {
    let row = dim as u64 * 4;
    let total = train.rows.len() + val.rows.len();
    let need = total as u64 * row;
    if need <= budget {
        return (train, val, None);
    }
    let fraction = (budget / row) as f64 / total as f64;
    let n_train = ((train.rows.len() as f64 * fraction) as usize).max(2);
    let n_val = ((val.rows.len() as f64 * fraction) as usize).max(1);
    let note = format!(
        "SAMPLED: the train and val features take {:.2} GB, over the memory budget of {:.2} GB \
         (--memory-budget): every model here is fitted on a seeded sample of {n_train} of {} \
         train rows and scored on {n_val} of {} val rows",
        need as f64 / 1e9,
        budget as f64 / 1e9,
        train.rows.len(),
        val.rows.len()
    );
    (
        train.sample(n_train, seed),
        val.sample(n_val, seed.wrapping_add(1)),
        Some(note),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config's defaults are `LogisticParams::default()`'s (C searched).
    #[test]
    fn defaults_are_the_logistic_defaults() {
        let cfg = CompareConfig::default();
        assert_eq!(cfg.c, None);
        assert_eq!(cfg.logistic_params(1.0), LogisticParams::default());
        let raw = CompareConfig {
            standardize: false,
            ..CompareConfig::default()
        };
        let p = raw.logistic_params(0.5);
        assert!(!p.standardize);
        assert_eq!(p.l2, 2.0);
    }
}
