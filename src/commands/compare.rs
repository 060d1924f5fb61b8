//! `vggcache compare-baselines`: flags → [`CompareConfig`] → [`crate::jobs::compare`]; prints the
//! report and where it went.

use std::path::PathBuf;

use super::render::Render;
use super::CommandError;
use crate::baseline::CRule;
use crate::jobs::{CompareConfig, CompareOutcome};

/// `--c-rule`'s values ([`CRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CRuleArg {
    /// Keep C = 1 unless a C beats it by more than one standard error of fold accuracy.
    Anchored,
    /// The smallest C within one standard error of the lowest mean log loss.
    OneSe,
}

impl From<CRuleArg> for CRule {
    fn from(a: CRuleArg) -> CRule {
        match a {
            CRuleArg::Anchored => CRule::default(),
            CRuleArg::OneSe => CRule::OneStandardError,
        }
    }
}

/// `--logistic-views`' values ([`CompareConfig::logistic_views`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogisticViews {
    /// One row per train image.
    Plain,
    /// Every cached augmented view as a row too.
    All,
}

impl From<bool> for LogisticViews {
    fn from(all: bool) -> Self {
        if all {
            LogisticViews::All
        } else {
            LogisticViews::Plain
        }
    }
}

/// Options of `compare-baselines`; defaults from [`CompareConfig::default`].
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Feature cache made by `extract`. Given twice (caches of the same images by two trunks),
    /// the caches are joined by content hash and every model fits both trunks' features side by
    /// side (docs/two-trunks.md).
    #[arg(long, default_values_os_t = [CompareConfig::default().features])]
    pub features: Vec<PathBuf>,
    /// With two --features: leave out images one cache lacks (counted) instead of refusing.
    #[arg(long)]
    pub drop_unmatched: bool,
    /// A trained head (runs/NAME); default: train one with train-head's defaults (its kept epoch
    /// chosen on a selection split carved from the train rows, never on the reported val split).
    #[arg(long)]
    pub head: Option<PathBuf>,
    /// Logistic regression's inverse L2 strength, as scikit-learn's C (linfa alpha = 1/C). Default:
    /// searched by stratified 5-fold cross-validation on the train rows (one 20% hold-out above
    /// 10,000 rows; never the reported val split) with --c-rule, then refitted from zero on all
    /// train rows.
    #[arg(long = "C")]
    pub c: Option<f64>,
    /// How the search chooses C: `anchored` keeps scikit-learn's default C = 1 unless a C's mean
    /// fold accuracy beats it by more than one standard error; `one-se` takes the smallest C whose
    /// mean log loss is within one standard error of the lowest (docs/baselines.md).
    #[arg(long, value_enum, default_value_t = CRuleArg::Anchored, conflicts_with = "c")]
    pub c_rule: CRuleArg,
    /// L-BFGS iteration cap of the logistic regression.
    #[arg(long, default_value_t = CompareConfig::default().max_iter)]
    pub max_iter: u64,
    /// Fit the logistic regression on standardized features (the train rows' statistics, folded
    /// into its weights) instead of raw ones (the default, as scikit-learn's LogisticRegression()).
    #[arg(long, conflicts_with = "logistic_raw")]
    pub logistic_standardize: bool,
    /// linfa-logistic's training rows: `plain`, one row per train image; `all`, every cached
    /// augmented view of it too (`extract --views`), labelled as its image. C is searched on the
    /// plain views either way.
    #[arg(long, value_enum, default_value_t = LogisticViews::from(CompareConfig::default().logistic_views))]
    pub logistic_views: LogisticViews,
    /// Score every model on val by test-time augmentation: the mean of its probabilities over
    /// each val image's plain view and its cached test-time views (`extract --tta-views`).
    #[arg(long)]
    pub tta: bool,
    /// Raw features: the default now; kept so scripts that pass it still run.
    #[arg(long, hide = true)]
    pub logistic_raw: bool,
    /// Hold-out fraction of train when the cache has no val split (default: with --head the
    /// head's own, so it is scored on rows it did not train on; else train-head's 0.2).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Memory the loaded features may take (bytes, or K, M, G suffix; default half of the RAM).
    /// Over it, every model is fitted and scored on a seeded sample of rows that fits (said in the
    /// output and in compare.md), and a head trained here streams.
    #[arg(long, value_parser = super::parse_size)]
    pub memory_budget: Option<u64>,
    /// Where compare.md, compare.json, predictions.csv and report.html go.
    #[arg(long, default_value_os_t = CompareConfig::default().out)]
    pub out: PathBuf,
    /// The image folder the cache was extracted from: thumbnails in report.html.
    #[arg(long)]
    pub images: Option<PathBuf>,
}

impl CompareArgs {
    /// The comparison these flags ask for.
    pub fn config(&self) -> CompareConfig {
        CompareConfig {
            features: self.features[0].clone(),
            extra_features: self.features[1..].to_vec(),
            drop_unmatched: self.drop_unmatched,
            head: self.head.clone(),
            c: self.c,
            c_rule: self.c_rule.into(),
            max_iter: self.max_iter,
            standardize: self.logistic_standardize
                || (CompareConfig::default().standardize && !self.logistic_raw),
            logistic_views: self.logistic_views == LogisticViews::All,
            tta: self.tta,
            val_fraction: self.val_fraction,
            memory_budget: self.memory_budget,
            out: self.out.clone(),
            images: self.images.clone(),
        }
    }
}

/// Runs `compare-baselines`: prints the report table and the files written.
pub fn run(args: &CompareArgs) -> Result<CompareOutcome, CommandError> {
    let r = crate::jobs::compare(&args.config(), &Render::default())?;
    println!("{}", r.report.to_text());
    println!(
        "written: {}, {} and {}",
        r.markdown.display(),
        r.json.display(),
        r.predictions.display()
    );
    println!("report: {}", r.page.display());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::LogisticParams;

    /// The CLI's defaults are the config's, and so `LogisticParams::default()`'s.
    #[test]
    fn cli_defaults_are_the_library_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: CompareArgs,
        }
        let args = Wrap::parse_from(["compare-baselines"]).a;
        assert_eq!(args.config(), CompareConfig::default());
        assert_eq!(
            args.config().logistic_params(1.0),
            LogisticParams::default()
        );
        assert!(!args.config().standardize, "raw features by default");
        let raw = Wrap::parse_from(["compare-baselines", "--logistic-raw", "--C", "0.5"]).a;
        let p = raw.config().logistic_params(raw.c.expect("--C"));
        assert!(!p.standardize);
        assert_eq!(p.l2, 2.0);
        let std = Wrap::parse_from(["compare-baselines", "--logistic-standardize"]).a;
        assert!(std.config().standardize);
        assert!(Wrap::try_parse_from([
            "compare-baselines",
            "--logistic-standardize",
            "--logistic-raw"
        ])
        .is_err());
    }
}
