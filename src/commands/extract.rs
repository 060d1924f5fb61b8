//! `vggcache extract`: images → tensors → trunk → Parquet cache, incremental and resumable.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::{CommandError, TrunkArgs};
use crate::cache::{CacheIdentity, CacheWriter, FeatureRow, ModelIdentity};
use crate::dataset::{self, PipelineConfig, PipelineMsg, WorkItem};
use crate::trunk::Trunk;

/// Options of `extract`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// Folder of images: ImageFolder (train/cat/x.jpg), class folders (cat/x.jpg), Kaggle names
    /// (train/cat.1.jpg) or unlabelled (test/1.jpg).
    #[arg(long)]
    pub images: PathBuf,
    /// Cache folder.
    #[arg(long, default_value = "cache")]
    pub out: PathBuf,
    #[command(flatten)]
    pub trunk: TrunkArgs,
    /// Images per inference batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Decoding threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Rows per Parquet shard (a killed run loses at most one shard of work).
    #[arg(long, default_value_t = 128)]
    pub shard_rows: usize,
    /// Fraction of labelled images held out as `val` when the folder has no val split
    /// (chosen by a hash of the relative path: stable when images are added).
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Rebuild a cache made by another model or preprocessing (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// Exit with code 3 when any image was skipped.
    #[arg(long)]
    pub strict: bool,
}

/// What one run did (also printed as the summary).
#[derive(Debug, Clone, Default)]
pub struct ExtractSummary {
    pub extracted: usize,
    pub reused: usize,
    pub removed: usize,
    pub skipped: usize,
    pub seconds: f64,
    pub provider: String,
    pub cache_rows: usize,
    pub cache_bytes: u64,
}

/// Runs `extract`; returns the summary (the caller turns `--strict` + skips into the exit code).
/// The summary lines are results of `extract`, so they go to standard output.
pub fn run(args: &ExtractArgs) -> Result<ExtractSummary, CommandError> {
    run_with(args, SummaryTo::Stdout)
}

/// Where [`run_with`] prints its summary lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryTo {
    Stdout,
    /// For commands whose standard output is their own result (`predict`'s CSV).
    Stderr,
}

/// [`run`], with the summary lines sent to `summary_to`.
pub fn run_with(args: &ExtractArgs, summary_to: SummaryTo) -> Result<ExtractSummary, CommandError> {
    if args.batch_size == 0 || args.shard_rows == 0 {
        return Err(CommandError::Usage(
            "--batch-size and --shard-rows must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&args.val_fraction) {
        return Err(CommandError::Usage(format!(
            "--val-fraction must be in [0, 1), got {}",
            args.val_fraction
        )));
    }
    let start = Instant::now();
    let ds = dataset::discover(&args.images, args.val_fraction)?;
    let model = args.trunk.model_path()?;
    let mut trunk = Trunk::load(&model, &args.trunk.options())?;
    let info = trunk.info().clone();
    eprintln!("execution provider: {}", trunk.provider().name());
    if let Some(why) = &trunk.fallback_reason {
        eprintln!("note: CUDA not used ({why})");
    }
    dataset::check_spec(&info.preprocess)?;
    eprintln!(
        "{} images in {} ({} layout, classes: {}); {} skipped while scanning",
        ds.entries.len(),
        ds.root.display(),
        ds.layout.as_str(),
        if ds.classes.is_empty() {
            "none".to_string()
        } else {
            ds.classes.join(", ")
        },
        ds.skipped.len()
    );

    let identity = CacheIdentity {
        model: ModelIdentity {
            fingerprint: info.fingerprint.clone(),
            path: info.path.display().to_string(),
            provenance: info.provenance.clone(),
            metadata: info.metadata.clone(),
        },
        preprocess: info.preprocess.clone(),
        dim: info.dim,
    };
    let mut writer = CacheWriter::open(&args.out, &identity, &ds.classes, args.force)?;

    // Content hashes decide what is new or changed (an unchanged folder does no inference).
    let hashes: Vec<Result<String, String>> = ds
        .entries
        .par_iter()
        .map(|e| dataset::content_hash(&e.abs_path).map_err(|err| format!("unreadable: {err}")))
        .collect();
    let mut skipped: Vec<(String, String)> = ds
        .skipped
        .iter()
        .map(|s| (s.rel_path.clone(), s.reason.clone()))
        .collect();
    let present: HashSet<&str> = ds.entries.iter().map(|e| e.rel_path.as_str()).collect();
    let mut stale: HashSet<String> = writer
        .existing()
        .keys()
        .filter(|p| !present.contains(p.as_str()))
        .cloned()
        .collect();
    let mut todo = Vec::new();
    let mut reused = 0;
    for (i, (e, h)) in ds.entries.iter().zip(&hashes).enumerate() {
        match h {
            Err(reason) => {
                skipped.push((e.rel_path.clone(), reason.clone()));
                if writer.existing().contains_key(&e.rel_path) {
                    stale.insert(e.rel_path.clone());
                }
            }
            Ok(h) if writer.existing().get(&e.rel_path) == Some(h) => reused += 1,
            Ok(_) => {
                if writer.existing().contains_key(&e.rel_path) {
                    stale.insert(e.rel_path.clone()); // changed file: old row goes
                }
                todo.push(WorkItem {
                    id: i,
                    path: e.abs_path.clone(),
                });
            }
        }
    }
    let removed = if stale.is_empty() {
        0
    } else {
        writer.remove_paths(&stale)?
    };
    eprintln!(
        "{} to extract, {reused} cached and unchanged, {removed} stale rows dropped",
        todo.len()
    );

    let total = todo.len();
    let mut extracted = 0;
    if total > 0 {
        let cfg = PipelineConfig {
            batch_size: args.batch_size,
            workers: args
                .workers
                .unwrap_or(PipelineConfig::default().workers)
                .max(1),
            ..PipelineConfig::default()
        };
        let rx = dataset::spawn_pipeline(todo, info.preprocess.clone(), cfg);
        let mut progress = Progress::new(total);
        let mut pending: Vec<(usize, Vec<f32>)> = Vec::new();
        let flush = |writer: &mut CacheWriter, pending: &mut Vec<(usize, Vec<f32>)>| {
            let rows: Vec<FeatureRow> = pending
                .iter()
                .map(|(id, f)| {
                    let e = &ds.entries[*id];
                    FeatureRow {
                        path: &e.rel_path,
                        split: e.split.as_str(),
                        label: e.label,
                        class: e.class.as_deref(),
                        content_hash: hashes[*id]
                            .as_deref()
                            .expect("only hashed entries are extracted"),
                        features: f,
                    }
                })
                .collect();
            let r = writer.append_shard(&rows);
            pending.clear();
            r
        };
        for msg in rx {
            match msg {
                PipelineMsg::Skip { id, reason } => {
                    skipped.push((ds.entries[id].rel_path.clone(), reason));
                    progress.tick(1);
                }
                PipelineMsg::Batch { ids, tensor } => {
                    let feats = trunk.run(&tensor, ids.len())?;
                    for (id, row) in ids.iter().zip(feats.rows()) {
                        if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                            skipped.push((
                                ds.entries[*id].rel_path.clone(),
                                format!("trunk produced a non-finite feature ({v})"),
                            ));
                            continue;
                        }
                        pending.push((*id, row.to_vec()));
                        extracted += 1;
                    }
                    progress.tick(ids.len());
                    if pending.len() >= args.shard_rows {
                        flush(&mut writer, &mut pending)?;
                    }
                }
            }
        }
        if !pending.is_empty() {
            flush(&mut writer, &mut pending)?;
        }
        progress.finish();
    }
    skipped.sort();
    writer.write_skipped(&skipped)?;
    let stats = writer.finish()?;
    let summary = ExtractSummary {
        extracted,
        reused,
        removed,
        skipped: skipped.len(),
        seconds: start.elapsed().as_secs_f64(),
        provider: trunk.provider().name().to_string(),
        cache_rows: stats.rows,
        cache_bytes: stats.bytes,
    };
    print_summary(&summary, &args.out, summary_to);
    if extracted + reused == 0 {
        return Err(CommandError::Usage(format!(
            "no image of {} could be used ({} skipped, reasons in {})",
            args.images.display(),
            summary.skipped,
            args.out.join("skipped.csv").display()
        )));
    }
    Ok(summary)
}

fn print_summary(s: &ExtractSummary, out: &Path, to: SummaryTo) {
    let rate = if s.seconds > 0.0 {
        s.extracted as f64 / s.seconds
    } else {
        0.0
    };
    let mut text = format!(
        "extracted {}  reused {}  skipped {}  dropped {}\n\
         wall {:.1} s, {rate:.2} img/s extracted, provider {}\n\
         cache {}: {} rows, {:.1} MiB",
        s.extracted,
        s.reused,
        s.skipped,
        s.removed,
        s.seconds,
        s.provider,
        out.display(),
        s.cache_rows,
        s.cache_bytes as f64 / (1 << 20) as f64
    );
    if s.skipped > 0 {
        text.push_str(&format!(
            "\nskipped images and reasons: {}",
            out.join("skipped.csv").display()
        ));
    }
    match to {
        SummaryTo::Stdout => println!("{text}"),
        SummaryTo::Stderr => eprintln!("{text}"),
    }
}

/// A progress bar on a terminal, plain lines every ~10% otherwise (stderr either way).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    next_line: usize,
    start: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} ETA {eta}")
                    .expect("static template"),
            );
            b
        });
        Self {
            bar,
            total,
            done: 0,
            next_line: 0,
            start: Instant::now(),
        }
    }

    fn tick(&mut self, n: usize) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        } else if self.done >= self.next_line {
            let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.total - self.done) as f64 / rate.max(1e-9);
            eprintln!(
                "{}/{} images, {rate:.2} img/s, ETA {eta:.0} s",
                self.done, self.total
            );
            self.next_line = self.done + self.total.div_ceil(10).max(1);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
