//! The extraction engine: a [`Plan`] → decode pipeline → trunk sessions → cache writer, for
//! `extract`, `predict` and any other caller alike. Rows already written stay valid whichever
//! stage fails; a killed run leaves only whole, committed shards visible.
//!
//! Threads: the pipeline decodes (its own pool); this thread hands batches, numbered in pipeline
//! order, to one thread per trunk session; one writer thread restores that order and writes
//! rounds of shards while the trunk goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use ndarray::Array2;

use super::progress::Progress;
use super::summary::{SessionTiming, TrunkTiming};
use super::{ExtractConfig, ExtractError, ExtractSummary, Plan};
use crate::cache::{
    CacheIdentity, CacheStats, CacheWriter, FeatureRow, ModelIdentity, ViewedRow, WriteOptions,
};
use crate::dataset::augment::ViewRecipe;
use crate::dataset::{self, ImageEntry, PipelineConfig, PipelineMsg, WorkItem};
use crate::events::{Event, Events, Repair};
use crate::trunk::{Device, Provider, Trunk};

/// Runs one extraction: discovers `cfg.images`, opens (or creates) the cache `cfg.out` for the
/// trunk `cfg.model`, drops stale rows, extracts new and changed images, records skips.
/// What it finds, plans, skips and repairs, and its progress, go to `events` (see
/// [`crate::events`]); the result is the summary.
pub fn run(cfg: &ExtractConfig, events: &dyn Events) -> Result<ExtractSummary, ExtractError> {
    cfg.validate()?;
    let start = Instant::now();
    let plan = Plan::discover(&cfg.images, cfg.val_fraction)?;
    let trunk = Trunk::load(&cfg.model, &cfg.trunk)?;
    let provider = trunk.provider();
    let info = trunk.info().clone();
    events.event(&Event::Provider {
        name: provider.name().to_string(),
        cuda_fallback: trunk.fallback_reason.clone(),
    });
    dataset::check_spec(&info.preprocess)?;
    let ds = &plan.dataset;
    events.event(&Event::Scanned {
        images: ds.entries.len(),
        root: ds.root.clone(),
        layout: ds.layout.as_str().to_string(),
        classes: ds.classes.clone(),
        skipped: ds.skipped.len(),
    });

    let identity = identity_of(&info);
    // f16 shards are written with zstd(1), f32 with LZ4_RAW (see `WriteOptions::for_dtype`).
    let options = WriteOptions::for_dtype(cfg.feature_dtype);
    let mut writer = CacheWriter::open_with(&cfg.out, &identity, &ds.classes, cfg.force, options)?;
    report_repairs(&writer.stats(), events);

    let delta = plan.against(writer.existing());
    let removed = if delta.stale.is_empty() {
        0
    } else {
        writer.remove_paths(&delta.stale)?
    };
    let moved = writer.set_splits(&delta.splits)?;
    // Views after the images: stale images took their views with them, moved ones kept theirs
    // (a view whose recipe no longer fits its image's split is made again).
    let views = plan.views_against(&cfg.views, writer.existing().views());
    let views_removed = writer.remove_views(&views.stale)?;
    events.event(&Event::Planned {
        images: delta.todo.len(),
        reused: delta.reused,
        removed,
        moved,
    });
    if views.todo.len() + views.reused + views_removed > 0 {
        events.event(&Event::Notice(format!(
            "views: {} to extract, {} reused, {} no longer asked for and dropped",
            views.todo.len(),
            views.reused,
            views_removed
        )));
    }
    for (path, reason) in &delta.skipped {
        events.event(&Event::Skipped {
            path: path.clone(),
            reason: reason.clone(),
        });
    }

    let mut skipped = delta.skipped;
    let mut extracted = 0;
    let mut timing = TrunkTiming::default();
    let mut items: Vec<Item> = delta.todo.iter().map(|&i| Item::plain(i)).collect();
    items.extend(views.todo.into_iter().map(|v| Item {
        entry: v.entry,
        view: v.view,
        recipe: Some(v.recipe),
    }));
    if !items.is_empty() {
        let mut trunks = sessions(cfg, trunk)?;
        let done = extract_items(cfg, &plan, items, &mut trunks, &mut writer, events)?;
        extracted = done.extracted;
        timing = done.timing;
        skipped.extend(done.skipped);
    }
    skipped.sort();
    super::skipped::write(&cfg.out, &skipped)?;
    let stats = writer.finish()?;
    if extracted + delta.reused == 0 {
        return Err(ExtractError::NothingUsable {
            images: cfg.images.clone(),
            skipped: skipped.len(),
            skipped_csv: cfg.out.join(crate::cache::SKIPPED_FILE),
        });
    }
    events.event(&Event::Finished {
        extracted,
        skipped: skipped.len(),
    });
    Ok(ExtractSummary {
        extracted,
        reused: delta.reused + views.reused,
        removed: removed + views_removed,
        skipped: skipped.len(),
        seconds: start.elapsed().as_secs_f64(),
        timing,
        provider: provider.name().to_string(),
        cache_rows: stats.rows,
        cache_bytes: stats.bytes,
    })
}

/// The cache identity of features made by the trunk model `info`.
pub(crate) fn identity_of(info: &crate::trunk::ModelInfo) -> CacheIdentity {
    CacheIdentity {
        model: ModelIdentity {
            fingerprint: info.fingerprint.clone(),
            path: info.path.display().to_string(),
            provenance: info.provenance.clone(),
            metadata: info.metadata.clone(),
        },
        preprocess: info.preprocess.clone(),
        dim: info.dim,
    }
}

/// One row to make: entry `entry` of the plan as view `view` (0 = the plain image, no recipe).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub entry: usize,
    pub view: u32,
    pub recipe: Option<ViewRecipe>,
}

impl Item {
    /// The plain image of entry `entry`.
    pub fn plain(entry: usize) -> Item {
        Item {
            entry,
            view: 0,
            recipe: None,
        }
    }
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

/// What the extraction phase did: rows written, images dropped (decode failures and non-finite
/// features) with the reason, and the timing.
pub(crate) struct Extracted {
    pub extracted: usize,
    pub skipped: Vec<(String, String)>,
    pub timing: TrunkTiming,
}

/// Where the engine's rows go, in pipeline order: the cache writer of a one-machine run, or the
/// part being built by a shard run. Each call gets up to one round of rows, in chunks of
/// `cfg.shard_rows`.
pub(crate) trait RowSink: Send {
    fn append(&mut self, shards: &[Vec<ViewedRow>]) -> Result<(), ExtractError>;
}

impl RowSink for CacheWriter {
    fn append(&mut self, shards: &[Vec<ViewedRow>]) -> Result<(), ExtractError> {
        Ok(self.append_view_shards(shards)?)
    }
}

/// `trunk` plus `cfg.sessions - 1` more sessions of the same model. More than one (CUDA): while
/// one batch is copied to or from the device, another's kernels run. Further sessions use the
/// provider the first one got (no second fallback).
pub(crate) fn sessions(cfg: &ExtractConfig, trunk: Trunk) -> Result<Vec<Trunk>, ExtractError> {
    let mut more = cfg.trunk.clone();
    more.device = match trunk.provider() {
        Provider::Cuda => Device::Cuda,
        Provider::Cpu => Device::Cpu,
    };
    let mut trunks = vec![trunk];
    for _ in 1..cfg.sessions.unwrap_or(1).max(1) {
        trunks.push(Trunk::load(&cfg.model, &more)?);
    }
    Ok(trunks)
}

/// Runs the entries `todo` (indices into `plan.dataset.entries`) through the trunk sessions
/// `trunks` and hands their rows to `sink`; reports progress and skips to `events`. Once
/// [`Events::cancelled`] says so (polled on this thread before each batch is handed out), the
/// batches in flight are written to `sink` and the run returns [`ExtractError::Interrupted`].
pub(crate) fn extract_rows(
    cfg: &ExtractConfig,
    plan: &Plan,
    todo: Vec<usize>,
    trunks: &mut [Trunk],
    sink: &mut dyn RowSink,
    events: &dyn Events,
) -> Result<Extracted, ExtractError> {
    let items = todo.into_iter().map(Item::plain).collect();
    extract_items(cfg, plan, items, trunks, sink, events)
}

/// [`extract_rows`] for items that may be views of their image (each made by its recipe from
/// the decoded image before the resize).
pub(crate) fn extract_items(
    cfg: &ExtractConfig,
    plan: &Plan,
    items: Vec<Item>,
    trunks: &mut [Trunk],
    sink: &mut dyn RowSink,
    events: &dyn Events,
) -> Result<Extracted, ExtractError> {
    let entries = &plan.dataset.entries;
    let total = items.len();
    let preprocess = trunks[0].info().preprocess.clone();
    let pixels = u64::from(preprocess.width) * u64::from(preprocess.height);
    let parallel_shards = rayon::current_num_threads().clamp(1, 8);
    cfg.check_memory(pixels, trunks[0].info().dim, parallel_shards)?;
    let (recycle_tx, recycle_rx) = crossbeam_channel::unbounded::<Vec<f32>>();
    let pipeline = PipelineConfig {
        batch_size: cfg.batch_size,
        workers: cfg
            .workers
            .unwrap_or(PipelineConfig::default().workers)
            .max(1),
        recycle: Some(recycle_rx),
        ..PipelineConfig::default()
    };
    let work = items
        .iter()
        .enumerate()
        .map(|(k, it)| WorkItem {
            id: k,
            path: entries[it.entry].abs_path.clone(),
        })
        .collect();
    let recipes = items.iter().map(|it| it.recipe.clone()).collect();
    let rx = dataset::spawn_pipeline_views(work, recipes, preprocess, pipeline);
    let rows = RowsOf::new(plan, &items);
    let rows = &rows;
    let rounds = WriteRounds {
        shard_rows: cfg.shard_rows,
        parallel_shards,
    };
    // Finished batches that may wait for the writer: one whole write round plus two, so inference
    // runs on while the writer encodes the previous round. Memory: about two rounds of features
    // (2 x 8 x 128 rows x 100 KB at the defaults).
    let write_queue = rounds.rows().div_ceil(cfg.batch_size) + 2;
    let (feat_tx, feat_rx) = crossbeam_channel::bounded::<Inferred>(write_queue);
    let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(trunks.len());
    let failed = AtomicBool::new(false);
    let mut interrupted = false;
    let progress = Progress::new(total, events);
    let mut skipped = Vec::new();
    let phase_start = Instant::now();
    let (infer_results, written) = std::thread::scope(|scope| {
        let write_thread = std::thread::Builder::new()
            .name("vggcache-writer".into())
            .spawn_scoped(scope, || {
                write_features(sink, feat_rx, rows, rounds, &progress, events)
            })
            .expect("cannot spawn the cache writer thread");
        let infer_threads: Vec<_> = trunks
            .iter_mut()
            .enumerate()
            .map(|(i, trunk)| {
                let (work_rx, feat_tx, recycle_tx) =
                    (work_rx.clone(), feat_tx.clone(), recycle_tx.clone());
                let failed = &failed;
                std::thread::Builder::new()
                    .name(format!("vggcache-trunk-{i}"))
                    .spawn_scoped(scope, move || {
                        infer(trunk, work_rx, feat_tx, recycle_tx, failed, phase_start)
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
            // The caller's stop: hand out nothing more; the batches already handed out are
            // written and committed before the run returns `Interrupted`.
            if events.cancelled() {
                interrupted = true;
                break;
            }
            match msg {
                PipelineMsg::Skip { id, reason } => {
                    let path = rows.name(id);
                    events.event(&Event::Skipped {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                    skipped.push((path, reason));
                    progress.tick(1);
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
        let infer_results: Vec<Result<SessionTiming, ExtractError>> = infer_threads
            .into_iter()
            .map(|t| t.join().expect("inference thread panicked"))
            .collect();
        let written = write_thread.join().expect("cache writer thread panicked");
        (infer_results, written)
    });
    let written_seconds = phase_start.elapsed().as_secs_f64();
    // Rows already written stay valid whichever side failed.
    let written = written?;
    let sessions = infer_results.into_iter().collect::<Result<Vec<_>, _>>()?;
    if interrupted {
        return Err(ExtractError::Interrupted {
            done: written.extracted + written.skipped.len() + skipped.len(),
            total,
        });
    }
    skipped.extend(written.skipped);
    Ok(Extracted {
        extracted: written.extracted,
        skipped,
        timing: TrunkTiming::combine(&sessions, written_seconds),
    })
}

/// One trunk session's loop: runs batches until the work channel closes, hands each input
/// tensor back to the pipeline for reuse, sends the features to the writer. An error sets
/// `failed` (so the others stop taking work) and is returned.
fn infer(
    trunk: &mut Trunk,
    work: Receiver<Work>,
    out: Sender<Inferred>,
    recycle: Sender<Vec<f32>>,
    failed: &AtomicBool,
    phase_start: Instant,
) -> Result<SessionTiming, ExtractError> {
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

/// How the writer groups rows: shards of `shard_rows` rows, `parallel_shards` encoded at once.
#[derive(Debug, Clone, Copy)]
struct WriteRounds {
    shard_rows: usize,
    parallel_shards: usize,
}

impl WriteRounds {
    /// Rows in one full round.
    fn rows(self) -> usize {
        self.shard_rows * self.parallel_shards
    }
}

/// What the writer thread did: rows written and images dropped for non-finite features.
struct Written {
    extracted: usize,
    skipped: Vec<(String, String)>,
}

/// A batch waiting to be written: entry indices, features `(ids.len(), D)`, the rows kept.
type Pending = (Vec<usize>, Array2<f32>, Vec<usize>);

/// Writer thread: receives batches of features `(ids.len(), D)` from the trunk sessions, puts
/// them back in pipeline order (`seq`), drops rows with a non-finite feature (as skips), and once
/// a round's worth of rows waits, appends it as shards of `shard_rows` rows (the last one
/// shorter), encoded in parallel by [`CacheWriter::append_shards`] (one manifest replacement per
/// round). Returns once the channel closes, after the last flush.
fn write_features(
    writer: &mut dyn RowSink,
    rx: Receiver<Inferred>,
    plan: &RowsOf,
    rounds: WriteRounds,
    progress: &Progress,
    events: &dyn Events,
) -> Result<Written, ExtractError> {
    let mut out = Written {
        extracted: 0,
        skipped: Vec::new(),
    };
    let mut pending: Vec<Pending> = Vec::new();
    let mut pending_rows = 0;
    // Batches that arrived ahead of their turn (more than one trunk session).
    let mut early: BTreeMap<usize, (Vec<usize>, Array2<f32>)> = BTreeMap::new();
    let mut next_seq = 0;
    for Inferred { seq, ids, feats } in rx {
        early.insert(seq, (ids, feats));
        while let Some((ids, feats)) = early.remove(&next_seq) {
            next_seq += 1;
            let mut keep = Vec::with_capacity(ids.len());
            for (r, row) in feats.rows().into_iter().enumerate() {
                if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                    let (path, reason) = (
                        plan.name(ids[r]),
                        format!("trunk produced a non-finite feature ({v})"),
                    );
                    events.event(&Event::Skipped {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                    out.skipped.push((path, reason));
                } else {
                    keep.push(r);
                }
            }
            progress.tick(ids.len());
            out.extracted += keep.len();
            pending_rows += keep.len();
            pending.push((ids, feats, keep));
            if pending_rows >= rounds.rows() {
                flush(writer, &mut pending, plan, rounds.shard_rows)?;
                pending_rows = 0;
            }
        }
    }
    if pending_rows > 0 {
        flush(writer, &mut pending, plan, rounds.shard_rows)?;
    }
    Ok(out)
}

/// Appends the kept rows of `pending` as shards of `shard_rows` rows and empties it.
fn flush(
    writer: &mut dyn RowSink,
    pending: &mut Vec<Pending>,
    plan: &RowsOf,
    shard_rows: usize,
) -> Result<(), ExtractError> {
    let rows: Vec<ViewedRow> = pending
        .iter()
        .flat_map(|(ids, feats, keep)| keep.iter().map(move |&r| plan.row(ids[r], feats, r)))
        .collect();
    let shards: Vec<Vec<ViewedRow>> = rows.chunks(shard_rows).map(<[_]>::to_vec).collect();
    let r = writer.append(&shards);
    pending.clear();
    r
}

/// The items of one extraction with what their rows need: entry, content hash, view, recipe.
struct RowsOf<'a> {
    plan: &'a Plan,
    items: &'a [Item],
    /// `(items,)` each item's recipe as the JSON its row records.
    recipes: Vec<Option<String>>,
}

impl<'a> RowsOf<'a> {
    fn new(plan: &'a Plan, items: &'a [Item]) -> Self {
        let recipes = items
            .iter()
            .map(|it| it.recipe.as_ref().map(ViewRecipe::to_json))
            .collect();
        RowsOf {
            plan,
            items,
            recipes,
        }
    }

    /// Item `k` as a skip list names it: the image path, and the view when not the plain one.
    fn name(&self, k: usize) -> String {
        let it = &self.items[k];
        let path = &self.plan.dataset.entries[it.entry].rel_path;
        match it.view {
            0 => path.clone(),
            v => format!("{path} (view {v})"),
        }
    }

    /// The cache row of item `k` from row `r` of `feats`.
    fn row<'b>(&'b self, k: usize, feats: &'b Array2<f32>, r: usize) -> ViewedRow<'b> {
        let it = &self.items[k];
        ViewedRow {
            row: feature_row(
                &self.plan.dataset.entries[it.entry],
                &self.plan.hashes[it.entry],
                feats,
                r,
            ),
            view: it.view,
            recipe: self.recipes[k].as_deref(),
        }
    }
}

/// The cache row of entry `e` (content hash `hash`) from row `r` of `feats`.
fn feature_row<'a>(
    e: &'a ImageEntry,
    hash: &'a Result<String, String>,
    feats: &'a Array2<f32>,
    r: usize,
) -> FeatureRow<'a> {
    FeatureRow {
        path: &e.rel_path,
        split: e.split,
        label: e.label,
        class: e.class.as_deref(),
        content_hash: hash.as_deref().expect("only hashed entries are extracted"),
        features: feats
            .row(r)
            .to_slice()
            .expect("trunk output rows are contiguous"),
    }
}

/// Tells `events` what opening the cache repaired: nothing is dropped or moved without a word.
fn report_repairs(s: &CacheStats, events: &dyn Events) {
    if let Some(why) = &s.manifest_rebuilt {
        events.event(&Event::Repaired(Repair::ManifestRebuilt {
            adopted: s.adopted_shards,
            why: why.clone(),
        }));
    }
    for d in &s.dropped_shards {
        events.event(&Event::Repaired(Repair::ShardDropped { detail: d.clone() }));
    }
    if !s.cleaned.is_empty() {
        events.event(&Event::Deleted {
            files: s.cleaned.clone(),
        });
    }
    if !s.quarantined.is_empty() {
        events.event(&Event::Repaired(Repair::Quarantined {
            files: s.quarantined.clone(),
        }));
    }
    if s.rows_to_redo > 0 {
        events.event(&Event::Repaired(Repair::Redo {
            images: s.rows_to_redo,
        }));
    }
}
