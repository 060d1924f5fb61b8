//! `vggcache train-head`: cached features → trained MLP head in `runs/<name>/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::features::{split_rows, Rows};
use super::CommandError;
use crate::cache::FeatureCache;
use crate::head::stream::MemoryPlan;
use crate::head::{self, HeadConfig, StreamConfig, StreamFeed, TrainSet};

/// Options of `train-head`. Every default is [`HeadConfig::default`]'s (one source; a test checks
/// that no flags give exactly that config).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainHeadArgs {
    /// Feature cache made by `extract`.
    #[arg(long, default_value_os_t = TrainRun::default().features)]
    pub features: PathBuf,
    /// Run name: outputs go to RUNS_DIR/NAME (default: a timestamp).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value_os_t = TrainRun::default().runs_dir)]
    pub runs_dir: PathBuf,
    /// The image folder the cache was extracted from: thumbnails in the run's report.html.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4096,4096")]
    pub hidden: Vec<usize>,
    #[arg(long, default_value_t = HeadConfig::default().dropout)]
    pub dropout: f32,
    #[arg(long, default_value_t = HeadConfig::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = HeadConfig::default().batch_size)]
    pub batch_size: usize,
    /// Adam learning rate (chosen by measurement on ImageNet VGG16 features, docs/BENCHMARKS.md).
    #[arg(long, default_value_t = HeadConfig::default().lr)]
    pub lr: f32,
    #[arg(long, default_value_t = HeadConfig::default().weight_decay)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = HeadConfig::default().seed)]
    pub seed: u64,
    /// Stop after this many epochs without a better loss on the selection split
    /// (--select-fraction); the reported val split is never used.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Fraction of the train rows carved out (stratified, seeded by --seed) to choose the kept
    /// epoch: the one with the lowest loss there. 0 keeps the last epoch. The val split is only
    /// reported, never used to choose.
    #[arg(long, default_value_t = HeadConfig::default().select_fraction)]
    pub select_fraction: f64,
    /// Standardize features (train mean/std, stored with the head); `--standardize false` trains on
    /// raw features as the seed recipe does.
    #[arg(long, default_value_t = HeadConfig::default().standardize, action = clap::ArgAction::Set)]
    pub standardize: bool,
    /// Hold-out fraction of train when the cache has no val split.
    #[arg(long, default_value_t = HeadConfig::default().val_fraction)]
    pub val_fraction: f64,
    /// Stream the features from the cache instead of loading them (chosen automatically when the
    /// train and val features exceed --memory-budget).
    #[arg(long)]
    pub stream: bool,
    /// Memory the features may take when loaded: bytes, or with a K, M, G suffix (powers of
    /// 1024). Default: half of this machine's RAM.
    #[arg(long, value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// Rows the stream's shuffle buffer holds (one VGG16 row is 100 KB).
    #[arg(long, default_value_t = StreamConfig::default().shuffle_buffer_rows)]
    pub shuffle_buffer_rows: usize,
    /// Mini-batches the stream's reader decodes ahead of training.
    #[arg(long, default_value_t = StreamConfig::default().prefetch_batches)]
    pub prefetch_batches: usize,
}

/// `SIZE` as bytes: a number with an optional `K`, `M`, `G` or `T` suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 512M or 8G, got {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("a size must be > 0, got {s:?}"));
    }
    Ok((v * (1u64 << shift) as f64) as u64)
}

/// The memory budget of a run: `given`, else half of the machine's RAM (8 GiB when unknown).
pub fn memory_budget(given: Option<u64>) -> u64 {
    given.unwrap_or_else(|| crate::sysmem::total_memory().map_or(8 << 30, |m| m / 2))
}

/// One train-head run: the cache, the head's settings, where the run folder goes. `Default` is
/// the CLI's defaults (compare-baselines trains its head from it).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRun {
    pub features: PathBuf,
    pub head: HeadConfig,
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
}

impl Default for TrainRun {
    fn default() -> Self {
        Self {
            features: PathBuf::from("cache"),
            head: HeadConfig::default(),
            runs_dir: PathBuf::from("runs"),
            name: None,
            images: None,
            stream: false,
            memory_budget: None,
            stream_cfg: StreamConfig::default(),
        }
    }
}

impl TrainHeadArgs {
    /// The run these flags ask for.
    pub fn run_config(&self) -> TrainRun {
        TrainRun {
            features: self.features.clone(),
            head: self.config(),
            runs_dir: self.runs_dir.clone(),
            name: self.name.clone(),
            images: self.images.clone(),
            stream: self.stream,
            memory_budget: self.memory_budget,
            stream_cfg: StreamConfig {
                shuffle_buffer_rows: self.shuffle_buffer_rows,
                prefetch_batches: self.prefetch_batches,
            },
        }
    }

    pub fn config(&self) -> HeadConfig {
        HeadConfig {
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            seed: self.seed,
            patience: self.patience,
            standardize: self.standardize,
            val_fraction: self.val_fraction,
            select_fraction: self.select_fraction,
            ..HeadConfig::default()
        }
    }
}

/// What `train-head` made.
#[derive(Debug, Clone)]
pub struct TrainHeadResult {
    pub run_dir: PathBuf,
    pub outcome: head::TrainOutcome,
}

/// Runs `train-head`.
pub fn run(args: &TrainHeadArgs) -> Result<TrainHeadResult, CommandError> {
    train(&args.run_config())
}

/// Trains the head on the cache and writes the run; prints per-epoch lines and the summary table.
pub fn train(args: &TrainRun) -> Result<TrainHeadResult, CommandError> {
    let cfg = args.head.clone();
    cfg.check()?; // nonsense flags fail before the cache is read
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| chrono::Local::now().format("%Y%m%d-%H%M%S").to_string());
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(CommandError::Usage(format!(
            "--name must be a plain folder name, got {name:?}"
        )));
    }
    let run_dir = args.runs_dir.join(&name);
    if run_dir.exists() {
        return Err(CommandError::Input(format!(
            "run folder {} already exists: pick another --name",
            run_dir.display()
        )));
    }
    args.stream_cfg.check()?;
    let cache = FeatureCache::open(&args.features)?;
    let classes = cache.classes().to_vec();
    let (train_rows, val_rows, held_out) = split_rows(&cache, cfg.val_fraction, cfg.seed)?;
    let need = (train_rows.rows.len() + val_rows.rows.len()) as u64 * cache.dim() as u64 * 4;
    let budget = memory_budget(args.memory_budget);
    if args.stream || need > budget {
        if !args.stream {
            eprintln!(
                "streaming: the train and val features take {:.2} GB, over the memory budget of \
                 {:.2} GB (--memory-budget)",
                need as f64 / 1e9,
                budget as f64 / 1e9
            );
        }
        return train_streamed(args, &cache, train_rows, val_rows, held_out, run_dir);
    }
    let (train, val) = (train_rows.read(&cache)?, val_rows.read(&cache)?);
    eprintln!(
        "train {} rows, val {} rows{}, D = {}, classes: {}",
        train.y.len(),
        val.y.len(),
        if held_out {
            " (held out of train: the cache has no val split)"
        } else {
            ""
        },
        cache.dim(),
        classes.join(", ")
    );
    println!("{EPOCH_HEADER}");
    let mut on_epoch = print_epoch;
    let outcome = head::train(
        &cfg,
        &classes,
        TrainSet {
            x: train.x.view(),
            y: &train.y,
        },
        TrainSet {
            x: val.x.view(),
            y: &val.y,
        },
        &mut on_epoch,
    )?;
    let meta = run_metadata(&cache, args, held_out);
    head::write_run(&run_dir, &outcome, &meta)?;
    let proba = outcome.head.predict_proba(val.x.view());
    let pred = crate::metrics::argmax_rows(
        proba
            .as_slice()
            .expect("predict_proba returns a standard-layout array"),
        classes.len(),
    );
    println!("{}", head::summary_table(&outcome, &val.y, &pred));
    println!("run written to {}", run_dir.display());
    // The page of the run, without the out-of-fold label review (`vggcache report` adds it).
    let page = super::report::write_page(
        &super::report::ReportConfig {
            run: run_dir.clone(),
            images: args.images.clone(),
            folds: 0,
            ..Default::default()
        },
        &super::report::PageInputs {
            features: &args.features,
            cache: &cache,
            head: &cfg,
            train: &train,
            val: &val,
            held_out,
            val_proba: proba.view(),
            compare: None,
        },
    )?;
    println!("report: {}", page.display());
    Ok(TrainHeadResult { run_dir, outcome })
}

/// [`train`] reading the features as a stream ([`StreamFeed`]): prints the memory plan, trains,
/// writes the run and the summary; val predictions are streamed too. No report page (it needs
/// the features in memory).
/// The header of the per-epoch table [`print_epoch`] fills.
const EPOCH_HEADER: &str =
    "epoch  train_loss  train_acc  select_loss  select_acc  val_loss  val_acc  seconds";

/// One row of the per-epoch table, as training reports it (`-` where there is no selection split).
fn print_epoch(m: &head::EpochMetrics) {
    let opt = |v: Option<f64>, w: usize| v.map_or(format!("{:>w$}", "-"), |v| format!("{v:>w$.4}"));
    println!(
        "{:>5}  {:>10.4}  {:>9.4}  {}  {}  {:>8.4}  {:>7.4}  {:>7.2}",
        m.epoch,
        m.train_loss,
        m.train_acc,
        opt(m.select_loss, 11),
        opt(m.select_acc, 10),
        m.val_loss,
        m.val_acc,
        m.seconds
    );
}

/// What `runs/NAME` records about the features a head was trained on.
fn run_metadata(cache: &FeatureCache, args: &TrainRun, held_out: bool) -> BTreeMap<String, String> {
    let m = cache.manifest();
    BTreeMap::from([
        ("trunk_fingerprint".to_string(), m.model.fingerprint.clone()),
        ("trunk_provenance".to_string(), m.model.provenance.clone()),
        ("cache".to_string(), args.features.display().to_string()),
        ("val_held_out".to_string(), held_out.to_string()),
    ])
}

fn train_streamed(
    args: &TrainRun,
    cache: &FeatureCache,
    train_rows: Rows,
    val_rows: Rows,
    held_out: bool,
    run_dir: PathBuf,
) -> Result<TrainHeadResult, CommandError> {
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
    eprintln!(
        "stream: train {} rows, val {} rows{}, D = {}, shuffle buffer {} rows, prefetch {} batches",
        head::Feed::len(&train),
        head::Feed::len(&val),
        if held_out { " (held out of train)" } else { "" },
        cache.dim(),
        sc.shuffle_buffer_rows,
        sc.prefetch_batches
    );
    eprintln!("stream memory: {plan}");
    println!("{EPOCH_HEADER}");
    let mut on_epoch = print_epoch;
    let outcome = head::train_feed_with(
        cfg,
        &classes,
        &mut train,
        select.as_mut().map(|s| s as &mut dyn head::Feed),
        &mut val,
        &mut on_epoch,
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
    println!("{}", head::summary_table(&outcome, &val_labels, &pred));
    println!("run written to {}", run_dir.display());
    println!("report: not written for a streamed run (the page needs the features in memory)");
    Ok(TrainHeadResult { run_dir, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_give_the_library_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: TrainHeadArgs,
        }
        let args = Wrap::parse_from(["train-head"]).a;
        assert_eq!(args.config(), HeadConfig::default());
        assert_eq!(args.run_config(), TrainRun::default());
    }
}
