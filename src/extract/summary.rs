//! What one extraction run did ([`ExtractSummary`]) and where its time went ([`TrunkTiming`]).

use std::fmt::Write;
use std::path::Path;

/// What one run did; [`ExtractSummary::render`] is the text the commands print.
#[derive(Debug, Clone, Default)]
pub struct ExtractSummary {
    /// Images this run extracted (rows written).
    pub extracted: usize,
    /// Cached rows kept as they were.
    pub reused: usize,
    /// Stale cached rows dropped.
    pub removed: usize,
    /// Images skipped (listed in the cache's skipped file).
    pub skipped: usize,
    /// Wall seconds of the whole run.
    pub seconds: f64,
    /// Inference timing of this run (all zero when nothing was extracted).
    pub timing: TrunkTiming,
    /// The execution provider's ONNX Runtime name.
    pub provider: String,
    /// Rows the cache holds after the run.
    pub cache_rows: usize,
    /// Bytes of the cache's shards after the run.
    pub cache_bytes: u64,
}

/// Where the extraction phase's time went: the phase runs from the pipeline's start to the
/// last batch's features; `trunk_seconds` is the time spent inside the trunk, summed over the
/// sessions (its busy share shows whether decoding or writing ever kept the trunk waiting).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrunkTiming {
    /// From the pipeline's start to the last batch's features.
    pub phase_seconds: f64,
    /// From the pipeline's start to the last row written (the phase plus the last write).
    pub written_seconds: f64,
    /// Time inside the trunk, summed over the sessions.
    pub trunk_seconds: f64,
    /// Trunk sessions that ran batches at the same time.
    pub sessions: usize,
    /// The first batch alone (ONNX Runtime allocates its buffers on the first run).
    pub first_batch_seconds: f64,
    /// Phase time when the first batch's features were out (decode of the first batch + its run).
    pub first_batch_done: f64,
    /// Batches run through the trunk.
    pub batches: usize,
    /// Images in the first batch.
    pub first_batch_images: usize,
}

/// One session's share of the work: seconds inside the trunk, batches, when its last batch
/// finished (seconds since the phase began) and, for the session that ran batch 0, that batch's
/// `(seconds, finished at, images)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionTiming {
    pub busy: f64,
    pub batches: usize,
    pub last_done_at: f64,
    pub first: Option<(f64, f64, usize)>,
}

impl TrunkTiming {
    /// The run's timing from each session's; `written_seconds` as measured by the caller.
    pub(crate) fn combine(sessions: &[SessionTiming], written_seconds: f64) -> Self {
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

impl ExtractSummary {
    /// The summary lines for a run whose cache is `out` (no trailing newline).
    pub fn render(&self, out: &Path) -> String {
        let s = self;
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
            let _ = write!(
                text,
                "\ntrunk busy {:.2} s of the {:.2} s extraction phase ({:.1}%{}); {} batches, first \
                 {:.2} s (done at {:.2} s, {} images)\n\
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
            );
        }
        if s.skipped > 0 {
            let _ = write!(
                text,
                "\nskipped images and reasons: {}",
                out.join("skipped.csv").display()
            );
        }
        text
    }
}
