//! `vggcache report`: flags → [`ReportConfig`] → [`crate::jobs::write_report`]; prints the page.

use std::path::PathBuf;

use super::render::Render;
use super::CommandError;
use crate::jobs::ReportConfig;

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
    /// The page these flags ask for.
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
    let out = crate::jobs::write_report(&args.config(), &Render::default())?;
    println!("report written to {}", out.display());
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
