//! The train-head job: cached features → a trained MLP head in `RUNS_DIR/NAME/` (loaded into
//! memory, or streamed from the cache when they exceed the memory budget), its summary and page.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::page::{write_page, PageInputs, ReportConfig};
use super::rows::{read_groups, split_rows, tta_views, view_groups, Labelled, Rows};
use super::source::{open_features, trunk_metadata, Opened};
use super::{memory_budget, JobError};
use crate::cache::{FeatureCache, FeatureSource};
use crate::dataset::augment::ViewKind;
use crate::events::{Event, Events};
use crate::head::stream::MemoryPlan;
use crate::head::{self, HeadConfig, StreamConfig, StreamFeed, TrainSet, ViewSampling};

/// One train-head run: the cache, the head's settings, where the run folder goes. `Default` is
/// the only source of the defaults (the CLI's flags and compare-baselines' own head use it).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Feature cache made by `extract`.
    pub features: PathBuf,
    /// More caches of the same images, made by other trunks: joined to `features` by content
    /// hash, the head trains on the concatenated features (read into memory, never streamed).
    pub extra_features: Vec<PathBuf>,
    /// With `extra_features`: leave out images some cache lacks (counted in a notice) instead of
    /// refusing.
    pub drop_unmatched: bool,
    /// The head's settings.
    pub head: HeadConfig,
    /// Folder the run folder goes in.
    pub runs_dir: PathBuf,
    /// Run folder name; `None` = a timestamp.
    pub name: Option<String>,
    /// Image folder for the report's thumbnails.
    pub images: Option<PathBuf>,
    /// Stream even when the features fit the memory budget.
    pub stream: bool,
    /// Bytes the loaded features may take; `None` = half of the machine's RAM ([`memory_budget`]).
    pub memory_budget: Option<u64>,
    /// The stream's buffer and prefetch.
    pub stream_cfg: StreamConfig,
    /// How the augmented views of a training image are read (a cache made with `extract
    /// --views`): one per image per epoch (default) or all; `None` = the plain images only.
    /// A streamed run reads the plain images.
    pub views: Option<ViewSampling>,
    /// Score val by test-time augmentation: the mean of the probabilities over each image's
    /// plain view and its cached test-time views (`extract --tta-views`).
    pub tta: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            features: PathBuf::from(super::DEFAULT_CACHE),
            extra_features: Vec::new(),
            drop_unmatched: false,
            head: HeadConfig::default(),
            runs_dir: PathBuf::from(super::DEFAULT_RUNS_DIR),
            name: None,
            images: None,
            stream: false,
            memory_budget: None,
            stream_cfg: StreamConfig::default(),
            views: Some(ViewSampling::default()),
            tta: false,
        }
    }
}

impl TrainConfig {
    /// Settings no run can use: the head's, the run name's, the stream's.
    pub fn check(&self) -> Result<(), JobError> {
        self.head.check()?;
        if let Some(name) = &self.name {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(JobError::BadRunName { name: name.clone() });
            }
        }
        self.stream_cfg.check()?;
        Ok(())
    }
}

/// What a train-head run made.
#[derive(Debug, Clone)]
pub struct TrainRunOutcome {
    /// The run folder written.
    pub run_dir: PathBuf,
    /// The trained head and its history.
    pub outcome: head::TrainOutcome,
    /// The summary table on the val split.
    pub summary: String,
    /// The report page; `None` for a streamed run (the page needs the features in memory).
    pub page: Option<PathBuf>,
}

/// Trains the head on the cache and writes the run folder and its page; notices and epochs go to
/// `events`, which can also stop training ([`crate::events::Events::cancelled`]).
pub fn train(args: &TrainConfig, events: &dyn Events) -> Result<TrainRunOutcome, JobError> {
    args.check()?; // nonsense settings fail before the cache is read
    let cfg = &args.head;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| chrono::Local::now().format("%Y%m%d-%H%M%S").to_string());
    let run_dir = args.runs_dir.join(&name);
    if run_dir.exists() {
        return Err(JobError::RunExists { dir: run_dir });
    }
    let opened = open_features(
        &args.features,
        &args.extra_features,
        args.drop_unmatched,
        events,
    )?;
    let cache = opened.source();
    let classes = cache.classes().to_vec();
    let (train_rows, val_rows, held_out) = split_rows(cache, cfg.val_fraction, cfg.seed)?;
    // One cache: each training image with its augmented views (groups of one without them). A
    // join of several caches pairs plain views only.
    let one = opened.views_cache(&[("tta", "test-time", args.tta)])?;
    if let Opened::Joined(j) = &opened {
        if j.caches().iter().any(FeatureCache::has_views) {
            events.event(&Event::Notice(
                "caches joined by content hash pair their plain views only: the augmented \
                 views are not used"
                    .into(),
            ));
        }
    }
    let groups = match (args.views, one) {
        (Some(_), Some(c)) => view_groups(c, &train_rows.rows, ViewKind::Aug),
        _ => Vec::new(),
    };
    let view_rows: usize = groups.iter().map(|g| g.len() - 1).sum();
    let need =
        (train_rows.rows.len() + view_rows + val_rows.rows.len()) as u64 * cache.dim() as u64 * 4;
    let budget = memory_budget(args.memory_budget);
    if args.stream || need > budget {
        let Opened::One(cache) = &opened else {
            return Err(JobError::JoinedStream {
                need,
                asked: args.stream,
            });
        };
        if !args.stream {
            events.event(&Event::Notice(format!(
                "streaming: the train and val features take {:.2} GB, over the memory budget of \
                 {:.2} GB (--memory-budget)",
                need as f64 / 1e9,
                budget as f64 / 1e9
            )));
        }
        if view_rows > 0 {
            events.event(&Event::Notice(format!(
                "streaming reads the plain images only: the {view_rows} augmented view rows \
                 are not used"
            )));
        }
        return train_streamed(args, cache, train_rows, val_rows, held_out, run_dir, events);
    }
    let sampling = args.views.filter(|_| view_rows > 0);
    // With views: every row of the training images read once; `train` is their plain views.
    let (views_x, groups_at, train) = match (sampling, one) {
        (Some(_), Some(one)) => {
            let (x, at) = read_groups(one, &groups)?;
            let plain: Vec<usize> = at.iter().map(|g| g[0]).collect();
            let train = Labelled {
                x: x.select(ndarray::Axis(0), &plain),
                y: train_rows.labels.clone(),
                paths: train_rows
                    .rows
                    .iter()
                    .map(|&r| one.row_paths()[r].clone())
                    .collect(),
            };
            (Some(x), at, train)
        }
        _ => (None, Vec::new(), train_rows.read(cache)?),
    };
    let val = val_rows.read(cache)?;
    events.event(&Event::Notice(format!(
        "train {} rows{}, val {} rows{}, D = {}, classes: {}",
        train.y.len(),
        match sampling {
            Some(s) => format!(
                " (+{view_rows} augmented view rows: {} per epoch; the selection split is \
                 carved by image)",
                match s {
                    ViewSampling::OnePerEpoch => "one view per image",
                    ViewSampling::All => "every view",
                }
            ),
            None => String::new(),
        },
        val.y.len(),
        if held_out {
            " (held out of train: the cache has no val split)"
        } else {
            ""
        },
        cache.dim(),
        classes.join(", ")
    )));
    events.event(&Event::Training { epochs: cfg.epochs });
    let val_set = TrainSet {
        x: val.x.view(),
        y: &val.y,
    };
    let outcome = match (sampling, &views_x) {
        (Some(s), Some(x)) => head::train_views(
            cfg,
            &classes,
            x.view(),
            &groups_at,
            &train_rows.labels,
            val_set,
            s,
            events,
        )?,
        _ => head::train(
            cfg,
            &classes,
            TrainSet {
                x: train.x.view(),
                y: &train.y,
            },
            val_set,
            events,
        )?,
    };
    drop(views_x);
    let mut meta = run_metadata(cache, args, held_out);
    if let Some(s) = sampling {
        meta.insert("views".to_string(), s.name().to_string());
        meta.insert("view_rows".to_string(), view_rows.to_string());
    }
    if args.tta {
        meta.insert("tta".to_string(), "true".to_string());
    }
    head::write_run(&run_dir, &outcome, &meta)?;
    let proba = match args.tta {
        true => tta_proba(
            one.expect("--tta with a join is refused above"),
            &outcome.head,
            &val_rows.rows,
            "val",
        )?,
        false => outcome.head.predict_proba(val.x.view()),
    };
    let pred = crate::metrics::argmax_rows(
        proba
            .as_slice()
            .expect("predict_proba returns a standard-layout array"),
        classes.len(),
    );
    let mut summary = head::summary_table(&outcome, &val.y, &pred);
    if args.tta {
        // The table's "val accuracy" is the kept epoch's on the plain views; say the TTA figure.
        summary.push_str(&format!(
            "val accuracy with TTA (mean probability over each image's plain and test-time views) \
             {:.4}\n",
            crate::metrics::accuracy(&val.y, &pred)
        ));
    }
    // The page of the run, without the out-of-fold label review (the report job adds it).
    let page = write_page(
        &ReportConfig {
            run: run_dir.clone(),
            images: args.images.clone(),
            folds: 0,
            ..Default::default()
        },
        &PageInputs {
            features: &args.features,
            cache,
            head: cfg,
            train: &train,
            val: &val,
            held_out,
            val_proba: proba.view(),
            compare: None,
        },
        events,
    )?;
    Ok(TrainRunOutcome {
        run_dir,
        outcome,
        summary,
        page: Some(page),
    })
}

/// The probabilities of `head` on the images of `rows` (global rows of plain views) averaged over each image's
/// plain view and its cached test-time views: `(rows, classes)`. Refuses a cache where none of
/// them has a test-time view.
pub fn tta_proba(
    cache: &FeatureCache,
    head: &head::FittedHead,
    rows: &[usize],
    split: &'static str,
) -> Result<ndarray::Array2<f32>, JobError> {
    let (x, at) = tta_views(cache, rows, split)?;
    let proba = head.try_predict_proba(x.view())?;
    Ok(crate::metrics::mean_over_groups(proba.view(), &at))
}

/// What `runs/NAME` records about the features a head was trained on.
fn run_metadata(
    cache: &dyn FeatureSource,
    args: &TrainConfig,
    held_out: bool,
) -> BTreeMap<String, String> {
    let mut meta = trunk_metadata(cache, &args.features);
    meta.insert("val_held_out".to_string(), held_out.to_string());
    meta
}

/// [`train`] reading the features as a stream ([`StreamFeed`]): reports the memory plan, trains,
/// writes the run; val predictions are streamed too. No report page (it needs the features in
/// memory).
fn train_streamed(
    args: &TrainConfig,
    cache: &FeatureCache,
    train_rows: Rows,
    val_rows: Rows,
    held_out: bool,
    run_dir: PathBuf,
    events: &dyn Events,
) -> Result<TrainRunOutcome, JobError> {
    let cfg = &args.head;
    let classes = cache.classes().to_vec();
    let val_labels = val_rows.labels.clone();
    let sc = args.stream_cfg;
    let (fit_rows, select_rows) = match head::selection_split(&train_rows.labels, cfg) {
        Some((fit, select)) => (train_rows.pick(&fit), Some(train_rows.pick(&select))),
        None => (train_rows, None),
    };
    let mut train = StreamFeed::new(cache, fit_rows.rows, fit_rows.labels, sc, cfg.seed);
    let mut select = select_rows.map(|r| StreamFeed::new(cache, r.rows, r.labels, sc, cfg.seed));
    let mut val = StreamFeed::new(cache, val_rows.rows, val_rows.labels, sc, cfg.seed);
    let mut dims = vec![cache.dim()];
    dims.extend_from_slice(&cfg.hidden);
    dims.push(classes.len());
    let plan = MemoryPlan::new(
        &sc,
        cache.dim(),
        cfg.batch_size.min(head::Feed::len(&train).max(1)),
        train.max_group_rows(),
        &dims,
    );
    plan.check()?;
    events.event(&Event::Notice(format!(
        "stream: train {} rows, val {} rows{}, D = {}, shuffle buffer {} rows, prefetch {} batches",
        head::Feed::len(&train),
        head::Feed::len(&val),
        if held_out { " (held out of train)" } else { "" },
        cache.dim(),
        sc.shuffle_buffer_rows,
        sc.prefetch_batches
    )));
    events.event(&Event::Notice(format!("stream memory: {plan}")));
    events.event(&Event::Training { epochs: cfg.epochs });
    let outcome = head::train_feed_with(
        cfg,
        &classes,
        &mut train,
        select.as_mut().map(|s| s as &mut dyn head::Feed),
        &mut val,
        events,
    )?;
    let mut meta = run_metadata(cache, args, held_out);
    meta.insert("streamed".to_string(), "true".to_string());
    head::write_run(&run_dir, &outcome, &meta)?;
    let mut pred = Vec::with_capacity(val_labels.len());
    head::Feed::chunks(&mut val, 256, None, &mut |x, _| {
        let proba = outcome.head.predict_proba(x);
        pred.extend(crate::metrics::argmax_rows(
            proba
                .as_slice()
                .expect("predict_proba returns a standard-layout array"),
            classes.len(),
        ));
    })?;
    let summary = head::summary_table(&outcome, &val_labels, &pred);
    Ok(TrainRunOutcome {
        run_dir,
        outcome,
        summary,
        page: None,
    })
}
