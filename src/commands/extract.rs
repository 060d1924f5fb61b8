//! `vggcache extract`: images → tensors → trunk → Parquet cache, incremental and resumable.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;
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
    /// Rows per Parquet shard. Up to one shard per core (at most 8) is written at a time, so a
    /// killed run loses at most that round of work; rows already cached are never lost.
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
    /// Inference timing of this run (all zero when nothing was extracted).
    pub timing: TrunkTiming,
    pub provider: String,
    pub cache_rows: usize,
    pub cache_bytes: u64,
}

/// Where the extraction phase's time went: the phase runs from the pipeline's start to the
/// last batch's features; `trunk_seconds` is the part spent inside the trunk (its busy share
/// shows whether decoding or writing ever kept the trunk waiting).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrunkTiming {
    pub phase_seconds: f64,
    pub trunk_seconds: f64,
    /// The first batch alone (ONNX Runtime allocates its buffers on the first run).
    pub first_batch_seconds: f64,
    /// Phase time when the first batch's features were out (decode of the first batch + its run).
    pub first_batch_done: f64,
    pub batches: usize,
    /// Images in the first batch.
    pub first_batch_images: usize,
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
    let mut timing = TrunkTiming::default();
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
        // Inference and shard writing overlap: the trunk never waits for compression or fsync
        // (on a GPU a shard write costs as long as several batches). At most `WRITE_QUEUE`
        // finished batches wait for the writer, so memory stays bounded.
        const WRITE_QUEUE: usize = 2;
        let (feat_tx, feat_rx) =
            crossbeam_channel::bounded::<(Vec<usize>, Array2<f32>)>(WRITE_QUEUE);
        let (entries, hashes, shard_rows) = (&ds.entries, &hashes, args.shard_rows);
        let (run_result, written) = std::thread::scope(|scope| {
            let writer = &mut writer;
            let write_thread = std::thread::Builder::new()
                .name("vggcache-writer".into())
                .spawn_scoped(scope, move || {
                    write_features(writer, feat_rx, entries, hashes, shard_rows)
                })
                .expect("cannot spawn the cache writer thread");
            let mut run_result: Result<(), CommandError> = Ok(());
            for msg in rx {
                match msg {
                    PipelineMsg::Skip { id, reason } => {
                        skipped.push((entries[id].rel_path.clone(), reason));
                        progress.tick(1);
                    }
                    PipelineMsg::Batch { ids, tensor } => {
                        let t = Instant::now();
                        let ran = trunk.run(&tensor, ids.len());
                        let dt = t.elapsed().as_secs_f64();
                        if timing.batches == 0 {
                            timing.first_batch_seconds = dt;
                            timing.first_batch_done = progress.seconds();
                            timing.first_batch_images = ids.len();
                        }
                        timing.trunk_seconds += dt;
                        timing.batches += 1;
                        let feats = match ran {
                            Ok(f) => f,
                            Err(e) => {
                                run_result = Err(e.into());
                                break;
                            }
                        };
                        let n = ids.len();
                        if feat_tx.send((ids, feats)).is_err() {
                            break; // the writer stopped on an error: join reports it
                        }
                        progress.tick(n);
                    }
                }
            }
            timing.phase_seconds = progress.seconds();
            drop(feat_tx); // the writer flushes what it has, then returns
            let written = write_thread.join().expect("cache writer thread panicked");
            (run_result, written)
        });
        progress.finish();
        // Rows already written stay valid whichever side failed.
        let written = written?;
        run_result?;
        extracted = written.extracted;
        skipped.extend(written.skipped);
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
        timing,
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

/// What the writer thread did: rows written and images dropped for non-finite features.
struct Written {
    extracted: usize,
    skipped: Vec<(String, String)>,
}

/// Writer thread: receives `(ids, features (ids.len(), D))` batches and appends shards of
/// `shard_rows` rows (the last one shorter). Up to one shard per rayon thread (at most 8) is
/// gathered and encoded in parallel by [`CacheWriter::append_shards`]. Returns once the channel
/// closes, after the last flush.
fn write_features(
    writer: &mut CacheWriter,
    rx: crossbeam_channel::Receiver<(Vec<usize>, Array2<f32>)>,
    entries: &[dataset::ImageEntry],
    hashes: &[Result<String, String>],
    shard_rows: usize,
) -> Result<Written, CommandError> {
    let parallel_shards = rayon::current_num_threads().clamp(1, 8);
    let mut out = Written {
        extracted: 0,
        skipped: Vec::new(),
    };
    // Batches waiting to be written, with the rows of each that are kept.
    let mut pending: Vec<(Vec<usize>, Array2<f32>, Vec<usize>)> = Vec::new();
    let mut pending_rows = 0;
    let mut flush = |pending: &mut Vec<(Vec<usize>, Array2<f32>, Vec<usize>)>| {
        let rows: Vec<FeatureRow> = pending
            .iter()
            .flat_map(|(ids, feats, keep)| {
                keep.iter().map(move |&r| {
                    let e = &entries[ids[r]];
                    FeatureRow {
                        path: &e.rel_path,
                        split: e.split.as_str(),
                        label: e.label,
                        class: e.class.as_deref(),
                        content_hash: hashes[ids[r]]
                            .as_deref()
                            .expect("only hashed entries are extracted"),
                        features: feats
                            .row(r)
                            .to_slice()
                            .expect("trunk output rows are contiguous"),
                    }
                })
            })
            .collect();
        let shards: Vec<Vec<FeatureRow>> = rows.chunks(shard_rows).map(<[_]>::to_vec).collect();
        let r = writer.append_shards(&shards);
        pending.clear();
        r
    };
    for (ids, feats) in rx {
        let mut keep = Vec::with_capacity(ids.len());
        for (r, row) in feats.rows().into_iter().enumerate() {
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                out.skipped.push((
                    entries[ids[r]].rel_path.clone(),
                    format!("trunk produced a non-finite feature ({v})"),
                ));
            } else {
                keep.push(r);
            }
        }
        out.extracted += keep.len();
        pending_rows += keep.len();
        pending.push((ids, feats, keep));
        if pending_rows >= shard_rows * parallel_shards {
            flush(&mut pending)?;
            pending_rows = 0;
        }
    }
    if pending_rows > 0 {
        flush(&mut pending)?;
    }
    Ok(out)
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
    let t = &s.timing;
    if t.batches > 0 && t.phase_seconds > 0.0 {
        text.push_str(&format!(
            "\ntrunk busy {:.2} s of the {:.2} s extraction phase ({:.1}%); {} batches, first {:.2} s \
             (done at {:.2} s, {} images)",
            t.trunk_seconds,
            t.phase_seconds,
            100.0 * t.trunk_seconds / t.phase_seconds,
            t.batches,
            t.first_batch_seconds,
            t.first_batch_done,
            t.first_batch_images
        ));
    }
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
    /// `done` at the last plain line.
    printed: usize,
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
            printed: 0,
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
            self.printed = self.done;
        }
    }

    /// Seconds since the progress started (up to now: call after the last tick).
    fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Clears the bar; in plain mode prints the final count and rate if the last line did not.
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        } else if self.done > 0 && self.printed != self.done {
            let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{}/{} images, {rate:.2} img/s, ETA 0 s",
                self.done, self.total
            );
        }
    }
}
