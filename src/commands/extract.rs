//! `vggcache extract`: images → tensors → trunk → Parquet cache, incremental and resumable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;

use super::{CommandError, TrunkArgs};
use crate::cache::{CacheIdentity, CacheWriter, FeatureRow, ModelIdentity};
use crate::dataset::{self, PipelineConfig, PipelineMsg, WorkItem};
use crate::trunk::{Device, Provider, Trunk};

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
    /// Trunk sessions running batches at the same time. With CUDA, 2 lets one batch's
    /// host-device copies overlap another's kernels (not yet measured on a GPU, so not the
    /// default); on the CPU one session already keeps every core busy.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Rows per Parquet shard. Up to one shard per core (at most 8) is written at a time while the
    /// next round queues, so a killed run loses at most those two rounds of work; rows already
    /// cached are never lost.
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
/// last batch's features; `trunk_seconds` is the time spent inside the trunk, summed over the
/// sessions (its busy share shows whether decoding or writing ever kept the trunk waiting).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrunkTiming {
    pub phase_seconds: f64,
    /// From the pipeline's start to the last row written (the phase plus the last write).
    pub written_seconds: f64,
    pub trunk_seconds: f64,
    /// Trunk sessions that ran batches at the same time.
    pub sessions: usize,
    /// The first batch alone (ONNX Runtime allocates its buffers on the first run).
    pub first_batch_seconds: f64,
    /// Phase time when the first batch's features were out (decode of the first batch + its run).
    pub first_batch_done: f64,
    pub batches: usize,
    /// Images in the first batch.
    pub first_batch_images: usize,
}

impl TrunkTiming {
    /// The run's timing from each session's; `written_seconds` as measured by the caller.
    fn combine(sessions: &[SessionTiming], written_seconds: f64) -> Self {
        let mut t = TrunkTiming {
            written_seconds,
            sessions: sessions.len(),
            ..Self::default()
        };
        for s in sessions {
            t.trunk_seconds += s.busy;
            t.batches += s.batches;
            t.phase_seconds = t.phase_seconds.max(s.last_done_at);
            if let Some((secs, done_at, images)) = s.first {
                t.first_batch_seconds = secs;
                t.first_batch_done = done_at;
                t.first_batch_images = images;
            }
        }
        t
    }
}

/// One session's share of the work: seconds inside the trunk, batches, when its last batch
/// finished (seconds since the phase began) and, for the session that ran batch 0, that batch's
/// `(seconds, finished at, images)`.
#[derive(Debug, Clone, Copy, Default)]
struct SessionTiming {
    busy: f64,
    batches: usize,
    last_done_at: f64,
    first: Option<(f64, f64, usize)>,
}

/// A batch for a trunk session: `tensor` is `(ids.len(), 3, H, W)`; `seq` its place in pipeline order.
struct Work {
    seq: usize,
    ids: Vec<usize>,
    tensor: Vec<f32>,
}

/// A batch's features, `(ids.len(), D)`, for the writer, which restores `seq` order.
struct Inferred {
    seq: usize,
    ids: Vec<usize>,
    feats: Array2<f32>,
}

/// One trunk session's loop: runs batches until the work channel closes, hands each input
/// tensor back to the pipeline for reuse, sends the features to the writer. An error sets
/// `failed` (so the others stop taking work) and is returned.
fn infer(
    trunk: &mut Trunk,
    work: crossbeam_channel::Receiver<Work>,
    out: crossbeam_channel::Sender<Inferred>,
    recycle: crossbeam_channel::Sender<Vec<f32>>,
    failed: &AtomicBool,
    phase_start: Instant,
) -> Result<SessionTiming, CommandError> {
    let mut t = SessionTiming::default();
    for Work { seq, ids, tensor } in work {
        if failed.load(Ordering::Relaxed) {
            break;
        }
        let start = Instant::now();
        let ran = trunk.run(&tensor, ids.len());
        let dt = start.elapsed().as_secs_f64();
        let _ = recycle.send(tensor);
        t.busy += dt;
        t.batches += 1;
        t.last_done_at = phase_start.elapsed().as_secs_f64();
        if seq == 0 {
            t.first = Some((dt, t.last_done_at, ids.len()));
        }
        let feats = match ran {
            Ok(f) => f,
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        if out.send(Inferred { seq, ids, feats }).is_err() {
            failed.store(true, Ordering::Relaxed); // the writer stopped on an error: it says why
            break;
        }
    }
    Ok(t)
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
    let trunk = Trunk::load(&model, &args.trunk.options())?;
    let provider = trunk.provider();
    let info = trunk.info().clone();
    eprintln!("execution provider: {}", provider.name());
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
    report_repairs(&writer.stats());

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
    // A split is a function of (path, split options): cached rows take this run's split (the
    // writer rewrites only rows whose split changed).
    let splits: HashMap<String, String> = ds
        .entries
        .iter()
        .filter(|e| !stale.contains(&e.rel_path))
        .map(|e| (e.rel_path.clone(), e.split.as_str().to_string()))
        .collect();
    let moved = writer.set_splits(&splits)?;
    if moved > 0 {
        eprintln!(
            "{moved} cached rows moved to another split (the split options or folders changed)"
        );
    }
    eprintln!(
        "{} to extract, {reused} cached and unchanged, {removed} stale rows dropped",
        todo.len()
    );

    let total = todo.len();
    let mut extracted = 0;
    let mut timing = TrunkTiming::default();
    if total > 0 {
        // More than one session (CUDA): while one batch is copied to or from the device, another's
        // kernels run. Built only when there is work, each with its own buffers.
        let sessions = args.sessions.unwrap_or(1).max(1);
        // Further sessions on the provider the first one got (no second fallback decision).
        let mut more = args.trunk.options();
        more.device = match provider {
            Provider::Cuda => Device::Cuda,
            Provider::Cpu => Device::Cpu,
        };
        let mut trunks = vec![trunk];
        for _ in 1..sessions {
            trunks.push(Trunk::load(&model, &more)?);
        }
        let (recycle_tx, recycle_rx) = crossbeam_channel::unbounded::<Vec<f32>>();
        let cfg = PipelineConfig {
            batch_size: args.batch_size,
            workers: args
                .workers
                .unwrap_or(PipelineConfig::default().workers)
                .max(1),
            recycle: Some(recycle_rx),
            ..PipelineConfig::default()
        };
        let rx = dataset::spawn_pipeline(todo, info.preprocess.clone(), cfg);
        let parallel_shards = rayon::current_num_threads().clamp(1, 8);
        // Finished batches that may wait for the writer: one whole write round (the shards it
        // encodes at once) plus two, so inference runs on while the writer encodes the previous
        // round. Memory: about two rounds of features (2 x 8 x 128 rows x 100 KB at the defaults).
        let write_queue = (args.shard_rows * parallel_shards).div_ceil(args.batch_size) + 2;
        let (feat_tx, feat_rx) = crossbeam_channel::bounded::<Inferred>(write_queue);
        let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(trunks.len());
        let failed = AtomicBool::new(false);
        let progress = Mutex::new(Progress::new(total));
        let start_phase = Instant::now();
        let (entries, hashes, shard_rows) = (&ds.entries, &hashes, args.shard_rows);
        let (infer_results, written) = std::thread::scope(|scope| {
            let writer = &mut writer;
            let write_thread = std::thread::Builder::new()
                .name("vggcache-writer".into())
                .spawn_scoped(scope, || {
                    write_features(
                        writer,
                        feat_rx,
                        entries,
                        hashes,
                        (shard_rows, parallel_shards),
                        &progress,
                    )
                })
                .expect("cannot spawn the cache writer thread");
            let infer_threads: Vec<_> = trunks
                .into_iter()
                .enumerate()
                .map(|(i, mut trunk)| {
                    let (work_rx, feat_tx, recycle_tx) =
                        (work_rx.clone(), feat_tx.clone(), recycle_tx.clone());
                    let failed = &failed;
                    std::thread::Builder::new()
                        .name(format!("vggcache-trunk-{i}"))
                        .spawn_scoped(scope, move || {
                            infer(
                                &mut trunk,
                                work_rx,
                                feat_tx,
                                recycle_tx,
                                failed,
                                start_phase,
                            )
                        })
                        .expect("cannot spawn an inference thread")
                })
                .collect();
            drop((work_rx, feat_tx, recycle_tx));
            // This thread hands batches out in pipeline order, numbered for the writer.
            let mut seq = 0;
            for msg in rx {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                match msg {
                    PipelineMsg::Skip { id, reason } => {
                        skipped.push((entries[id].rel_path.clone(), reason));
                        tick(&progress, 1);
                    }
                    PipelineMsg::Batch { ids, tensor } => {
                        if work_tx.send(Work { seq, ids, tensor }).is_err() {
                            break; // every inference thread stopped: their results say why
                        }
                        seq += 1;
                    }
                }
            }
            drop(work_tx);
            let infer_results: Vec<Result<SessionTiming, CommandError>> = infer_threads
                .into_iter()
                .map(|t| t.join().expect("inference thread panicked"))
                .collect();
            let written = write_thread.join().expect("cache writer thread panicked");
            (infer_results, written)
        });
        let written_seconds = start_phase.elapsed().as_secs_f64();
        progress
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish();
        // Rows already written stay valid whichever side failed.
        let written = written?;
        let mut sessions_timing = Vec::with_capacity(infer_results.len());
        for r in infer_results {
            sessions_timing.push(r?);
        }
        timing = TrunkTiming::combine(&sessions_timing, written_seconds);
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
        provider: provider.name().to_string(),
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

/// Advances the shared progress display by `n` images.
fn tick(progress: &Mutex<Progress>, n: usize) {
    progress.lock().unwrap_or_else(|p| p.into_inner()).tick(n);
}

/// Writer thread: receives batches of features `(ids.len(), D)` from the trunk sessions, puts
/// them back in pipeline order (`seq`), and appends shards of `shard_rows` rows (the last one
/// shorter). Once `parallel_shards` shards' worth of rows wait, they are encoded in parallel by
/// [`CacheWriter::append_shards`] (one manifest replacement for the round) while the trunk goes
/// on filling the channel. Returns once the channel closes, after the last flush.
fn write_features(
    writer: &mut CacheWriter,
    rx: crossbeam_channel::Receiver<Inferred>,
    entries: &[dataset::ImageEntry],
    hashes: &[Result<String, String>],
    (shard_rows, parallel_shards): (usize, usize),
    progress: &Mutex<Progress>,
) -> Result<Written, CommandError> {
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
    // Batches that arrived ahead of their turn (more than one trunk session).
    let mut early: BTreeMap<usize, (Vec<usize>, Array2<f32>)> = BTreeMap::new();
    let mut next_seq = 0;
    for Inferred { seq, ids, feats } in rx {
        early.insert(seq, (ids, feats));
        while let Some((ids, feats)) = early.remove(&next_seq) {
            next_seq += 1;
            tick(progress, ids.len());
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
    }
    if pending_rows > 0 {
        flush(&mut pending)?;
    }
    Ok(out)
}

/// Says on stderr what opening the cache repaired: nothing is dropped or moved without a word.
fn report_repairs(s: &crate::cache::CacheStats) {
    if let Some(why) = &s.manifest_rebuilt {
        eprintln!(
            "warning: manifest rebuilt from the intact shards ({} adopted) because: {why}",
            s.adopted_shards
        );
    }
    for d in &s.dropped_shards {
        eprintln!("warning: {d}");
    }
    if !s.quarantined.is_empty() {
        eprintln!(
            "warning: {} file(s) moved to quarantine/ (kept, not deleted; delete them once you no \
             longer need them): {}",
            s.quarantined.len(),
            s.quarantined
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if s.rows_to_redo > 0 {
        eprintln!(
            "warning: {} image(s) of damaged or missing shards will be extracted again",
            s.rows_to_redo
        );
    }
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
        // With several sessions the busy share is of the sessions' combined time.
        let sessions = t.sessions.max(1);
        text.push_str(&format!(
            "\ntrunk busy {:.2} s of the {:.2} s extraction phase ({:.1}%{}); {} batches, first {:.2} s \
             (done at {:.2} s, {} images)\n\
             last row written at {:.2} s: {:.2} img/s from the first decode to the last row written",
            t.trunk_seconds,
            t.phase_seconds,
            100.0 * t.trunk_seconds / (t.phase_seconds * sessions as f64),
            if sessions > 1 {
                format!(" of {sessions} sessions")
            } else {
                String::new()
            },
            t.batches,
            t.first_batch_seconds,
            t.first_batch_done,
            t.first_batch_images,
            t.written_seconds,
            s.extracted as f64 / t.written_seconds.max(1e-9),
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
