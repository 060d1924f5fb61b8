//! The report page of a train-head run (and optionally a compare-baselines output): the
//! [`write_report`] job, and [`write_page`] for jobs that already hold the features.

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use super::rows::{check_head_fits_cache, load_head, train_val, Labelled};
use super::JobError;
use crate::baseline::LogisticParams;
use crate::cache::FeatureSource;
use crate::events::{Event, Events};
use crate::head::HeadConfig;
use crate::report::html::{self, Page};
use crate::report::review::{label_issues, leakage, Review};
use crate::report::CompareReport;

/// What to put on the page; `Default` holds the defaults the CLI shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    /// A train-head run folder (runs/NAME).
    pub run: PathBuf,
    /// Feature cache; `None` = the cache the run recorded.
    pub features: Option<PathBuf>,
    /// The image folder the cache was extracted from, for thumbnails.
    pub images: Option<PathBuf>,
    /// A compare-baselines output folder (its compare.json joins the page).
    pub compare: Option<PathBuf>,
    /// Output file; `None` = RUN/report.html.
    pub out: Option<PathBuf>,
    /// Images per list. Default 24.
    pub top: usize,
    /// Folds of the out-of-fold logistic fits; 0 = no label review. Default 5.
    pub folds: usize,
}

impl ReportConfig {
    /// Settings no page can be made with.
    pub fn check(&self) -> Result<(), JobError> {
        if self.folds == 1 {
            return Err(JobError::BadFolds);
        }
        Ok(())
    }

    /// The page's file: `out`, else RUN/report.html.
    pub fn out_file(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.run.join("report.html"))
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

/// What the page is made of. [`write_report`] loads it from the run and its cache; `train-head` and
/// `compare-baselines` pass what they already hold instead of reading it all again.
pub struct PageInputs<'a> {
    /// The cache's folder (its `skipped.csv` is listed).
    pub features: &'a Path,
    /// The opened cache (or caches joined by content hash).
    pub cache: &'a dyn FeatureSource,
    /// The head's settings (its hold-out fraction and seed are named when val was held out).
    pub head: &'a HeadConfig,
    /// The train rows (the label review fits on them).
    pub train: &'a Labelled,
    /// The val rows the page scores.
    pub val: &'a Labelled,
    /// Whether `val` was held out of the train split (the cache has none).
    pub held_out: bool,
    /// The head's probabilities on `val`: `(val rows, classes)`.
    pub val_proba: ArrayView2<'a, f32>,
    /// A compare-baselines report to show beside.
    pub compare: Option<&'a CompareReport>,
}

/// Writes the report page of `args.run` (default `RUN/report.html`), loading the head, its cache
/// and `args.compare`; returns the page's path.
pub fn write_report(args: &ReportConfig, events: &dyn Events) -> Result<PathBuf, JobError> {
    args.check()?; // before anything is read
    super::refuse_out_in_cache("--out", &args.out_file())?;
    let (head, meta) = load_head(&args.run, None)?;
    let features = match (&args.features, meta.get("cache")) {
        (Some(f), _) => f.clone(),
        (None, Some(c)) => PathBuf::from(c),
        (None, None) => {
            return Err(JobError::RunWithoutCache {
                run: args.run.clone(),
            })
        }
    };
    // A head trained on joined caches reads them all again (the recorded ones; --features names
    // the first only when given).
    let more: Vec<PathBuf> = super::source::recorded_caches(&meta)
        .into_iter()
        .skip(1)
        .collect();
    let opened = super::source::open_features(&features, &more, false, events)?;
    let cache = opened.source();
    check_head_fits_cache(&args.run, &head, &meta, cache)?;
    let cfg = head.config();
    let (train, val, held_out) = train_val(cache, cfg.val_fraction, cfg.seed)?;
    let val_proba = head.try_predict_proba(val.x.view())?;
    let compare = match &args.compare {
        Some(dir) => {
            let file = dir.join("compare.json");
            let text = std::fs::read_to_string(&file).map_err(|source| JobError::Io {
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
            cache,
            head: cfg,
            train: &train,
            val: &val,
            held_out,
            val_proba: val_proba.view(),
            compare: compare.as_ref(),
        },
        events,
    )
}

/// Writes the page of `args.run` from `inp` (`args.features` and `args.compare` are not read:
/// `inp` has them); returns its path.
pub fn write_page(
    args: &ReportConfig,
    inp: &PageInputs,
    events: &dyn Events,
) -> Result<PathBuf, JobError> {
    let (cache, cfg, train, val) = (inp.cache, inp.head, inp.train, inp.val);
    let classes = cache.classes().to_vec();
    let review = Review::new(&val.paths, &val.y, inp.val_proba, args.top);
    let labels = if args.folds >= 2 {
        events.event(&Event::Notice(format!(
            "scoring {} train images out of fold ({} logistic fits)",
            train.y.len(),
            args.folds
        )));
        // The baseline's defaults: raw features, C = 1.
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
    let mut facts = vec![
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
    ];
    let parts = cache.parts();
    for (i, p) in parts.iter().enumerate() {
        // One trunk: the facts as they always were; joined caches: one set per trunk, numbered.
        let n = if parts.len() > 1 {
            format!(" {}", i + 1)
        } else {
            String::new()
        };
        let dir = if parts.len() > 1 {
            p.dir.display().to_string()
        } else {
            inp.features.display().to_string()
        };
        facts.push((format!("trunk{n}"), p.provenance.clone()));
        facts.push((format!("trunk{n} fingerprint"), p.trunk_fingerprint.clone()));
        facts.push((
            format!("cache{n}"),
            format!("{dir} (fingerprint {})", p.cache_fingerprint),
        ));
    }
    facts.push((
        "images".into(),
        format!(
            "{} train, {} val, {} skipped at extraction; classes {}",
            train.y.len(),
            val.y.len(),
            skipped.len(),
            classes.join(", ")
        ),
    ));
    let page = Page {
        title: format!("vggcache report: {}", args.run.display()),
        facts,
        classes: &classes,
        curves: crate::head::plot::svg_of_run(&args.run).map_err(|e| e.to_string()),
        review: &review,
        compare: inp.compare,
        labels: labels.as_ref(),
        leakage: &leaks,
        skipped: &skipped,
        images: args.images.as_deref(),
    };
    let out = args.out_file();
    crate::report::write_atomic(&out, html::render(&page).as_bytes())?;
    Ok(out)
}
