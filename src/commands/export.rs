//! `vggcache export`: a trained head (optionally with its trunk) as a standalone ONNX classifier.

use std::path::PathBuf;

use super::{CommandError, TrunkArgs};
use crate::export::{head_model_bytes, inspect, with_trunk_model_bytes, HeadGraph};
use crate::jobs::rows::{check_model_file, load_head};

/// Options of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// A train-head run folder (runs/NAME).
    #[arg(long)]
    pub head: PathBuf,
    /// Output ONNX file.
    #[arg(long, default_value = "classifier.onnx")]
    pub out: PathBuf,
    /// One model from preprocessed image to probabilities: trunk graph + head (the trunk's
    /// preprocessing metadata is carried over).
    #[arg(long)]
    pub with_trunk: bool,
    #[command(flatten)]
    pub trunk: TrunkArgs,
}

/// Writes the ONNX file; returns its size in bytes.
pub fn run(args: &ExportArgs) -> Result<u64, CommandError> {
    super::refuse_out_in_cache("--out", &args.out)?;
    let (head, meta) = load_head(&args.head, None)?;
    let scaler = head.scaler().map(|(m, s)| (m.view(), s.view()));
    // The run's metadata under `vggcache.` (e.g. `vggcache.trunk_fingerprint`), except `classes`,
    // which the exporter writes itself (the same list, from the head).
    let mut metadata: std::collections::BTreeMap<String, String> = meta
        .iter()
        .filter(|(k, _)| k.as_str() != "classes")
        .map(|(k, v)| (format!("vggcache.{k}"), v.clone()))
        .collect();
    metadata.insert("vggcache.head_run".into(), args.head.display().to_string());
    let graph = HeadGraph {
        layers: head.layers(),
        scaler,
        classes: head.classes().to_vec(),
        metadata,
    };
    let bytes = if args.with_trunk {
        // A head on joined caches takes the trunks' features side by side: one trunk's graph
        // cannot make its input (the head alone exports, its input the joined features).
        crate::jobs::source::refuse_joined(&args.head, &meta, "export --with-trunk")?;
        let model = args.trunk.model_path()?;
        let trunk = std::fs::read(&model).map_err(|source| CommandError::Io {
            what: "reading trunk",
            path: model.clone(),
            source,
        })?;
        check_model_file(&args.head, &meta, &model)?;
        let external = crate::trunk::external_data_files(&model)?;
        if !external.is_empty() {
            // The merged model would reference weights files beside the output that are not there.
            return Err(CommandError::Input(format!(
                "trunk {} keeps its weights in external data ({}); --with-trunk writes one \
                 self-contained file and cannot carry them: export the head alone (without \
                 --with-trunk), or save the trunk with its weights inside the .onnx first",
                model.display(),
                external
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let summary = inspect(&trunk)?;
        let out_name = summary.graph_outputs.first().cloned().ok_or_else(|| {
            CommandError::Input(format!("trunk {} has no graph output", model.display()))
        })?;
        with_trunk_model_bytes(&trunk, &out_name, &graph)?
    } else {
        head_model_bytes(&graph, "features")?
    };
    crate::fsutil::write_atomic(&args.out, &bytes).map_err(CommandError::writing)?;
    println!(
        "wrote {} ({:.1} MB, {}): input {}, output `probabilities` over [{}]{}",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        if args.with_trunk {
            "trunk + head"
        } else {
            "head only"
        },
        if args.with_trunk {
            "preprocessed image [N,3,H,W]"
        } else {
            "features [N,D]"
        },
        head.classes().join(", "),
        if args.with_trunk {
            " (the trunk's `features` [N,D] stays available as a second output)"
        } else {
            ""
        }
    );
    Ok(bytes.len() as u64)
}
