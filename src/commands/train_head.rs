//! `vggcache train-head`: cached features → trained MLP head in `runs/<name>/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::features::train_val;
use super::CommandError;
use crate::cache::FeatureCache;
use crate::head::{self, HeadConfig, TrainSet};

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
    /// Stop after this many epochs without a better val loss.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Standardize features (train mean/std, stored with the head); `--standardize false` trains on
    /// raw features as the seed recipe does.
    #[arg(long, default_value_t = HeadConfig::default().standardize, action = clap::ArgAction::Set)]
    pub standardize: bool,
    /// Hold-out fraction of train when the cache has no val split.
    #[arg(long, default_value_t = HeadConfig::default().val_fraction)]
    pub val_fraction: f64,
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
}

impl Default for TrainRun {
    fn default() -> Self {
        Self {
            features: PathBuf::from("cache"),
            head: HeadConfig::default(),
            runs_dir: PathBuf::from("runs"),
            name: None,
            images: None,
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
    let cache = FeatureCache::open(&args.features)?;
    let classes = cache.classes().to_vec();
    let (train, val, held_out) = train_val(&cache, cfg.val_fraction, cfg.seed)?;
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
    println!("epoch  train_loss  train_acc  val_loss  val_acc  seconds");
    let mut on_epoch = |m: &head::EpochMetrics| {
        println!(
            "{:>5}  {:>10.4}  {:>9.4}  {:>8.4}  {:>7.4}  {:>7.2}",
            m.epoch, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.seconds
        );
    };
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
    let m = cache.manifest();
    let mut meta = BTreeMap::new();
    meta.insert("trunk_fingerprint".to_string(), m.model.fingerprint.clone());
    meta.insert("trunk_provenance".to_string(), m.model.provenance.clone());
    meta.insert("cache".to_string(), args.features.display().to_string());
    meta.insert("val_held_out".to_string(), held_out.to_string());
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
