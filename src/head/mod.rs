//! The hand-written MLP head on cached features: config, errors, training, the fitted model and its outputs.
//!
//! `Linear(D→4096), ReLU, Dropout(.5), Linear(4096→4096), ReLU, Dropout(.5), Linear(4096→C)`,
//! softmax cross-entropy, Adam as PyTorch's; forward, backward and optimizer written on ndarray.
//! [`HeadConfig`] (unchecked, `check()`) → [`train()`] → [`TrainOutcome`] holding a [`FittedHead`]
//! (`predict_proba`, `save`/`load`), written out by [`write_run`].

pub mod adam;
mod bounds;
pub mod checkpoint;
pub mod dropout;
pub mod feed;
pub mod linalg;
pub mod loss;
pub mod mlp;
pub mod plot;
pub mod run;
pub mod scaler;
pub mod sparse;
pub mod stream;
pub mod train;
pub mod workspace;

use std::path::PathBuf;

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

pub use crate::events::EpochMetrics;
pub use adam::{Adam, AdamConfig};
pub use feed::{Feed, InMemory, ViewFeed};
pub use mlp::Mlp;
pub use run::{summary_table, write_run};
pub use scaler::Standardizer;
pub use sparse::SparsePolicy;
pub use stream::{RowGroups, StreamConfig, StreamFeed};
pub use train::{
    holdout_split, selection_split, train, train_feed_with, train_views, view_selection_split,
    ViewSampling,
};
pub use workspace::Workspace;

/// Errors of the head: bad settings, bad data, bad checkpoints, I/O.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// A setting outside its valid range.
    #[error("invalid head setting `{field}`: {message}")]
    Config {
        /// the setting (`batch_size`, `lr`, …)
        field: &'static str,
        /// what was expected and what was found
        message: String,
    },
    /// No rows to train or evaluate on.
    #[error("the {split} split is empty: no feature rows to use")]
    Empty {
        /// `train` or `val`
        split: &'static str,
    },
    /// Feature rows and labels disagree in count.
    #[error("the {split} split has {rows} feature rows but {labels} labels")]
    LengthMismatch {
        /// `train` or `val`
        split: &'static str,
        /// rows of x
        rows: usize,
        /// length of y
        labels: usize,
    },
    /// Fewer than two class names were given.
    #[error("{found} class name(s) given; a classifier needs at least 2")]
    TooFewClasses {
        /// number of names
        found: usize,
    },
    /// Only one class occurs in the training labels.
    #[error(
        "only one class ({class:?}) occurs in the train split; training needs at least 2 of the \
         {classes} classes present"
    )]
    OneClass {
        /// the only class seen
        class: String,
        /// number of class names
        classes: usize,
    },
    /// A label index outside `0..classes`.
    #[error("{split} row {row}: label {label} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// `train` or `val`
        split: &'static str,
        /// row index
        row: usize,
        /// the label
        label: usize,
        /// number of classes
        classes: usize,
    },
    /// A NaN or infinite feature value.
    #[error(
        "{split} row {row}, dimension {col}: feature value {value} is not finite (NaN or Inf)"
    )]
    NonFinite {
        /// `train`, `val` or `input`
        split: &'static str,
        /// row index
        row: usize,
        /// column index
        col: usize,
        /// the value
        value: f32,
    },
    /// Feature dimension differs from what the model or the other split has.
    #[error("feature dimension mismatch for {what}: expected {expected}, found {found}")]
    DimMismatch {
        /// what was compared
        what: String,
        /// expected D
        expected: usize,
        /// found D
        found: usize,
    },
    /// Class names differ between a checkpoint and the data.
    #[error("class names differ: the head was trained on {expected:?}, the data has {found:?}")]
    ClassMismatch {
        /// the head's classes
        expected: Vec<String>,
        /// the data's classes
        found: Vec<String>,
    },
    /// Loss became NaN/Inf.
    #[error(
        "training diverged at epoch {epoch}: {what} is {value} (try a smaller lr or --standardize)"
    )]
    Diverged {
        /// 1-based epoch
        epoch: usize,
        /// which quantity
        what: &'static str,
        /// its value
        value: f64,
    },
    /// Layers that do not chain.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A checkpoint file that cannot be read as a head.
    #[error("checkpoint {path}: {message}")]
    BadCheckpoint {
        /// the file
        path: PathBuf,
        /// what is wrong
        message: String,
    },
    /// The run directory exists already.
    #[error("run directory {path} already exists; choose another run name")]
    RunExists {
        /// the directory
        path: PathBuf,
    },
    /// An I/O error with its path.
    #[error("{path}: {source}")]
    Io {
        /// the file or directory
        path: PathBuf,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// Reading rows from a stream failed: the [`RowGroups`] source's own error (for a feature
    /// cache, the [`crate::cache::CacheError`] naming the file), kept as the source.
    #[error("reading the feature stream: {0}")]
    Stream(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The caller asked training to stop ([`crate::events::Events::cancelled`]) during epoch
    /// `epoch`; nothing was written.
    #[error(
        "training stopped at the caller's request in epoch {epoch}; no run folder was written \
         and the feature cache is unchanged: run it again to train"
    )]
    Interrupted {
        /// 1-based epoch that was running (or about to start)
        epoch: usize,
    },
    /// A run's `metrics.csv` that does not read as train-head writes it.
    #[error(
        "{path}: {source}; expected the columns epoch,train_loss,train_acc,val_loss,val_acc,seconds,best \
         as `vggcache train-head` writes them (train the run again to get a fresh one)"
    )]
    MetricsCsv {
        /// the file
        path: PathBuf,
        /// what the CSV reader found
        #[source]
        source: csv::Error,
    },
    /// Drawing or encoding the plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// the PNG
        path: PathBuf,
        /// what failed
        message: String,
    },
}

/// Settings of the head and its training; [`HeadConfig::check`] validates them. Defaults: the seed
/// recipe's layers and Adam (PyTorch's betas and eps), with standardized features and a learning
/// rate of 1e-4, chosen by measurement on ImageNet VGG16 features (docs/BENCHMARKS.md section 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Hidden layer widths (default `[4096, 4096]`, VGG16's classifier).
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden ReLU, in `[0, 1)` (default 0.5).
    pub dropout: f32,
    /// Epochs (default 5).
    pub epochs: usize,
    /// Minibatch size (default 64).
    pub batch_size: usize,
    /// Adam learning rate (default 1e-4: on standardized ImageNet VGG16 features PyTorch's 1e-3 makes
    /// val loss climb from the first epoch, 1e-4 keeps it flat at the same accuracy).
    pub lr: f32,
    /// Adam β1 (default 0.9, PyTorch's).
    pub beta1: f32,
    /// Adam β2 (default 0.999, PyTorch's).
    pub beta2: f32,
    /// Adam ε (default 1e-8, PyTorch's).
    pub eps: f32,
    /// L2 weight decay added to the gradient (default 0, PyTorch's).
    pub weight_decay: f32,
    /// Seed of initialisation, shuffling, dropout and hold-out (default 0).
    pub seed: u64,
    /// Stop after this many epochs without a better loss on the selection split (default: never;
    /// needs `select_fraction > 0`).
    pub patience: Option<usize>,
    /// Standardize features with train mean/std (default true; see docs/BENCHMARKS.md).
    pub standardize: bool,
    /// Fraction of train held out for validation when no val split is given (default 0.2).
    pub val_fraction: f64,
    /// Fraction of the train rows carved out (stratified, seeded) as the selection split: the kept
    /// epoch is the one with the lowest loss on it, and `patience` counts on it. 0 = no selection:
    /// the last epoch is kept. The reported val split is never used to choose anything.
    #[serde(default)]
    pub select_fraction: f64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        let adam = AdamConfig::default();
        HeadConfig {
            hidden: vec![4096, 4096],
            dropout: 0.5,
            epochs: 5,
            batch_size: 64,
            lr: 1e-4,
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            weight_decay: adam.weight_decay,
            seed: 0,
            patience: None,
            standardize: true,
            val_fraction: 0.2,
            select_fraction: SELECT_FRACTION,
        }
    }
}

/// Default [`HeadConfig::select_fraction`] (docs/BENCHMARKS.md, model selection).
const SELECT_FRACTION: f64 = 0.1;

fn bad(field: &'static str, message: String) -> HeadError {
    HeadError::Config { field, message }
}

impl HeadConfig {
    /// Validate every setting; the error names the setting, the valid range and the value.
    pub fn check(&self) -> Result<(), HeadError> {
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(bad(
                "hidden",
                format!("hidden layer {i} has width 0; widths must be >= 1"),
            ));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(bad(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.epochs == 0 {
            return Err(bad("epochs", "must be >= 1, got 0".into()));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", "must be >= 1, got 0".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad(
                "lr",
                format!("learning rate must be > 0 and finite, got {}", self.lr),
            ));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(b.is_finite() && (0.0..1.0).contains(&b)) {
                return Err(bad(field, format!("must be in [0, 1), got {b}")));
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(bad(
                "eps",
                format!("must be >= 0 and finite, got {}", self.eps),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad(
                "weight_decay",
                format!("must be >= 0 and finite, got {}", self.weight_decay),
            ));
        }
        if self.patience == Some(0) {
            return Err(bad("patience", "must be >= 1 when given, got 0".into()));
        }
        if !(self.select_fraction.is_finite() && (0.0..1.0).contains(&self.select_fraction)) {
            return Err(bad(
                "select_fraction",
                format!("must be in [0, 1), got {}", self.select_fraction),
            ));
        }
        if self.patience.is_some() && self.select_fraction == 0.0 {
            return Err(bad(
                "patience",
                "early stopping needs a selection split: give select_fraction > 0 \
                 (--select-fraction), or leave patience out"
                    .into(),
            ));
        }
        if !(self.val_fraction.is_finite() && (0.0..1.0).contains(&self.val_fraction)) {
            return Err(bad(
                "val_fraction",
                format!("must be in [0, 1), got {}", self.val_fraction),
            ));
        }
        self.check_memory(1, 2, None) // the smallest model these widths give
    }

    /// The Adam part of the config.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

/// Features and labels of one split. `x: (n, d)`, `y: (n,)` with labels `< classes.len()`.
#[derive(Debug, Clone, Copy)]
pub struct TrainSet<'a> {
    /// `(n, d)`
    pub x: ArrayView2<'a, f32>,
    /// `(n,)`
    pub y: &'a [usize],
}

/// Result of [`train()`].
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// the head at the kept epoch: the lowest loss on the selection split, or the last epoch
    pub head: FittedHead,
    /// one entry per epoch run
    pub history: Vec<EpochMetrics>,
    /// 1-based epoch of `head`
    pub best_epoch: usize,
    /// rows of the selection split the kept epoch was chosen on (0: the last epoch was kept)
    pub select_rows: usize,
}

/// A trained head: parameters, optional standardizer, class names and the config it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedHead {
    pub(crate) mlp: Mlp,
    pub(crate) scaler: Option<Standardizer>,
    pub(crate) classes: Vec<String>,
    pub(crate) config: HeadConfig,
}

/// Rows per chunk whenever the head runs in eval mode (scoring a split, predicting): bounds the
/// activations' memory. The one source for `Mlp::forward_eval`, training's scoring and
/// `FittedHead`'s predictions.
pub(crate) const EVAL_ROWS: usize = 256;

impl FittedHead {
    /// Assemble a head (the last layer's width must equal `classes.len()`, the scaler's dim D).
    pub fn new(
        mlp: Mlp,
        scaler: Option<Standardizer>,
        classes: Vec<String>,
        config: HeadConfig,
    ) -> Result<FittedHead, HeadError> {
        let c = *mlp.dims().last().expect("an Mlp has dims");
        if c != classes.len() {
            return Err(HeadError::InvalidModel(format!(
                "the last layer has {c} outputs but {} class names are given",
                classes.len()
            )));
        }
        if let Some(sc) = &scaler {
            if sc.dim() != mlp.dims()[0] {
                return Err(HeadError::DimMismatch {
                    what: "standardizer vs first layer".into(),
                    expected: mlp.dims()[0],
                    found: sc.dim(),
                });
            }
        }
        Ok(FittedHead {
            mlp,
            scaler,
            classes,
            config,
        })
    }

    /// Class probabilities in eval mode (no dropout), scaler applied: `x: (n, d)` → `(n, C)`.
    /// Panics if `x` has the wrong D; use [`FittedHead::try_predict_proba`] or
    /// [`FittedHead::check_compatible`] on untrusted input.
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(
            x.ncols(),
            self.dim(),
            "predict_proba: the head expects {} features per row, got {}",
            self.dim(),
            x.ncols()
        );
        let n = x.nrows();
        let mut out = Array2::<f32>::zeros((n, self.classes.len()));
        for start in (0..n).step_by(EVAL_ROWS) {
            let end = (start + EVAL_ROWS).min(n);
            let logits = match &self.scaler {
                Some(sc) => {
                    let mut xc = x.slice(s![start..end, ..]).to_owned();
                    sc.apply(xc.view_mut());
                    self.mlp.forward_eval(xc.view())
                }
                None => self.mlp.forward_eval(x.slice(s![start..end, ..])),
            };
            let mut dst = out.slice_mut(s![start..end, ..]);
            dst.assign(&logits);
            loss::softmax_in_place(dst);
        }
        out
    }

    /// [`FittedHead::predict_proba`] after checking D and that every value is finite.
    pub fn try_predict_proba(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, HeadError> {
        if x.ncols() != self.dim() {
            return Err(HeadError::DimMismatch {
                what: "input features vs the head".into(),
                expected: self.dim(),
                found: x.ncols(),
            });
        }
        train::check_finite(x, "input")?;
        Ok(self.predict_proba(x))
    }

    /// Check that data with `dim` features and class names `classes` fits this head.
    pub fn check_compatible(&self, dim: usize, classes: &[String]) -> Result<(), HeadError> {
        if dim != self.dim() {
            return Err(HeadError::DimMismatch {
                what: "the cache's features vs the checkpoint".into(),
                expected: self.dim(),
                found: dim,
            });
        }
        if classes != self.classes.as_slice() {
            return Err(HeadError::ClassMismatch {
                expected: self.classes.clone(),
                found: classes.to_vec(),
            });
        }
        Ok(())
    }

    /// Feature dimension D the head expects.
    pub fn dim(&self) -> usize {
        self.mlp.dims()[0]
    }

    /// Class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The config the head was trained with.
    pub fn config(&self) -> &HeadConfig {
        &self.config
    }

    /// The underlying MLP.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// Per layer `(W: (d_in, d_out), b: (d_out,))`, for ONNX export.
    pub fn layers(&self) -> Vec<(ArrayView2<'_, f32>, ArrayView1<'_, f32>)> {
        self.mlp.layers()
    }

    /// `(mean, std)`, each `(d,)`, when the head standardizes its input.
    pub fn scaler(&self) -> Option<(&Array1<f32>, &Array1<f32>)> {
        self.scaler.as_ref().map(|s| (&s.mean, &s.std))
    }
}
