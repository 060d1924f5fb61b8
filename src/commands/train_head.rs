//! `vggcache train-head`: flags → [`TrainConfig`] → [`crate::jobs::train`]; prints the run.

use std::path::PathBuf;
use std::sync::LazyLock;

use super::render::Render;
use super::CommandError;
use crate::head::{HeadConfig, StreamConfig, ViewSampling};
use crate::jobs::{TrainConfig, TrainRunOutcome};

/// `HeadConfig::default().hidden` as the flag writes it (`4096,4096`).
static HIDDEN_DEFAULT: LazyLock<String> = LazyLock::new(|| {
    let widths: Vec<String> = HeadConfig::default()
        .hidden
        .iter()
        .map(usize::to_string)
        .collect();
    widths.join(",")
});

/// Options of `train-head`. Every default is [`TrainConfig::default`]'s (one source; a test checks
/// that no flags give exactly that config).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainHeadArgs {
    /// Feature cache made by `extract`. Given twice (caches of the same images by two trunks),
    /// the caches are joined by content hash and the head trains on both trunks' features side
    /// by side (docs/two-trunks.md).
    #[arg(long, default_values_os_t = [TrainConfig::default().features])]
    pub features: Vec<PathBuf>,
    /// With two --features: leave out images one cache lacks (counted) instead of refusing.
    #[arg(long)]
    pub drop_unmatched: bool,
    /// Run name: outputs go to RUNS_DIR/NAME (default: a timestamp).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder the run folder goes in.
    #[arg(long, default_value_os_t = TrainConfig::default().runs_dir)]
    pub runs_dir: PathBuf,
    /// The image folder the cache was extracted from: thumbnails in the run's report.html.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = HIDDEN_DEFAULT.as_str())]
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden layer.
    #[arg(long, default_value_t = HeadConfig::default().dropout)]
    pub dropout: f32,
    /// Passes over the train rows.
    #[arg(long, default_value_t = HeadConfig::default().epochs)]
    pub epochs: usize,
    /// Rows per mini-batch.
    #[arg(long, default_value_t = HeadConfig::default().batch_size)]
    pub batch_size: usize,
    /// Adam learning rate (chosen by measurement on ImageNet VGG16 features, docs/BENCHMARKS.md).
    #[arg(long, default_value_t = HeadConfig::default().lr)]
    pub lr: f32,
    /// Adam's decoupled weight decay.
    #[arg(long, default_value_t = HeadConfig::default().weight_decay)]
    pub weight_decay: f32,
    /// Seed of the initialization, shuffling, dropout and hold-outs.
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
    #[arg(long, value_parser = super::parse_size)]
    pub memory_budget: Option<u64>,
    /// Rows the stream's shuffle buffer holds (one VGG16 row is 100 KB).
    #[arg(long, default_value_t = StreamConfig::default().shuffle_buffer_rows)]
    pub shuffle_buffer_rows: usize,
    /// Mini-batches the stream's reader decodes ahead of training.
    #[arg(long, default_value_t = StreamConfig::default().prefetch_batches)]
    pub prefetch_batches: usize,
    /// How the augmented views of a cache made with `extract --views` are read: `sample` one
    /// view per image per epoch (an epoch costs the rows it costs without views), `all` views as
    /// rows of their own, or the `plain` images only. The selection split is carved by image.
    #[arg(long, value_enum, default_value_t = ViewsFlag::from(TrainConfig::default().views))]
    pub views: ViewsFlag,
    /// Score val by test-time augmentation: the mean of the probabilities over each image and
    /// its cached test-time views (`extract --tta-views`).
    #[arg(long)]
    pub tta: bool,
}

/// `--views`: which views of a training image train-head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewsFlag {
    /// One view per image per epoch.
    Sample,
    /// Every view as a row.
    All,
    /// The plain images only.
    Plain,
}

impl From<Option<ViewSampling>> for ViewsFlag {
    fn from(v: Option<ViewSampling>) -> Self {
        match v {
            Some(ViewSampling::OnePerEpoch) => ViewsFlag::Sample,
            Some(ViewSampling::All) => ViewsFlag::All,
            None => ViewsFlag::Plain,
        }
    }
}

impl From<ViewsFlag> for Option<ViewSampling> {
    fn from(v: ViewsFlag) -> Self {
        match v {
            ViewsFlag::Sample => Some(ViewSampling::OnePerEpoch),
            ViewsFlag::All => Some(ViewSampling::All),
            ViewsFlag::Plain => None,
        }
    }
}

impl TrainHeadArgs {
    /// The run these flags ask for.
    pub fn run_config(&self) -> TrainConfig {
        TrainConfig {
            features: self.features[0].clone(),
            extra_features: self.features[1..].to_vec(),
            drop_unmatched: self.drop_unmatched,
            head: HeadConfig {
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
            },
            runs_dir: self.runs_dir.clone(),
            name: self.name.clone(),
            images: self.images.clone(),
            stream: self.stream,
            memory_budget: self.memory_budget,
            stream_cfg: StreamConfig {
                shuffle_buffer_rows: self.shuffle_buffer_rows,
                prefetch_batches: self.prefetch_batches,
            },
            views: self.views.into(),
            tta: self.tta,
        }
    }
}

/// Runs `train-head`: per-epoch lines, then the summary, the run folder and its page.
pub fn run(args: &TrainHeadArgs) -> Result<TrainRunOutcome, CommandError> {
    let r = crate::jobs::train(&args.run_config(), &Render::default())?;
    super::print_trained(&r.summary, &r.run_dir, r.page.as_deref());
    Ok(r)
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
        assert_eq!(args.run_config().head, HeadConfig::default());
        assert_eq!(args.run_config(), TrainConfig::default());
    }
}
