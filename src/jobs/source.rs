//! Which features a job reads: one cache, or several caches of the same images (different
//! trunks) joined by content hash ([`crate::cache::JoinedCache`]); what a head records of them in
//! its metadata; and the refusal of jobs that run one trunk on a head trained on several.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::JobError;
use crate::cache::{FeatureCache, FeatureSource, JoinedCache};
use crate::events::{Event, Events};

/// Metadata key of a head trained on joined caches: how many trunks (absent for one).
pub const KEY_TRUNKS: &str = "trunks";

/// The features a job opened: one cache, or a join.
#[derive(Debug)]
pub enum Opened {
    /// One cache (`--features` once).
    One(Box<FeatureCache>),
    /// Caches joined by content hash (`--features` twice or more).
    Joined(JoinedCache),
}

impl Opened {
    /// The rows, as the jobs read them.
    pub fn source(&self) -> &dyn FeatureSource {
        match self {
            Opened::One(c) => &**c,
            Opened::Joined(j) => j,
        }
    }

    /// The one cache whose views a job may read; `None` for a join, which pairs plain views
    /// only and so refuses the first of `asked`, `(flag, kind of views it reads, given)`, that
    /// was given (e.g. `("tta", "test-time", true)`).
    pub fn views_cache(
        &self,
        asked: &[(&'static str, &'static str, bool)],
    ) -> Result<Option<&FeatureCache>, JobError> {
        match self {
            Opened::One(c) => Ok(Some(c)),
            Opened::Joined(j) => match asked.iter().find(|(_, _, given)| *given) {
                Some(&(flag, kind, _)) => Err(JobError::JoinedViews {
                    flag,
                    kind,
                    caches: j.caches().len(),
                }),
                None => Ok(None),
            },
        }
    }
}

/// Opens `first` alone when `more` is empty (the single-cache path, unchanged), else joins
/// `first` and `more` by content hash (`drop_unmatched`: leave out images some cache lacks) and
/// says what it joined on `events`.
pub fn open_features(
    first: &Path,
    more: &[PathBuf],
    drop_unmatched: bool,
    events: &dyn Events,
) -> Result<Opened, JobError> {
    if more.is_empty() {
        return Ok(Opened::One(Box::new(FeatureCache::open(first)?)));
    }
    let dirs: Vec<PathBuf> = std::iter::once(first.to_path_buf())
        .chain(more.iter().cloned())
        .collect();
    let joined = JoinedCache::open(&dirs, drop_unmatched)?;
    let parts = joined.parts();
    let dims: Vec<String> = parts
        .iter()
        .map(|p| format!("{} (D {})", p.dir.display(), p.dim))
        .collect();
    events.event(&Event::Notice(format!(
        "joined {} caches by content hash: {} = D {}, {} images{}",
        parts.len(),
        dims.join(" + "),
        joined.dim(),
        joined.len(),
        if joined.dropped() > 0 {
            format!(
                " ({} rows dropped: their image is not in every cache, --drop-unmatched)",
                joined.dropped()
            )
        } else {
            String::new()
        }
    )));
    Ok(Opened::Joined(joined))
}

/// What a run records of the features it was trained on: `trunk_fingerprint` (the parts'
/// fingerprints joined by `+` for a join), `trunk_provenance`, `cache`; for a join also
/// [`KEY_TRUNKS`] and per part `trunk.I.fingerprint`, `trunk.I.provenance`, `trunk.I.dim`,
/// `trunk.I.cache` (I = 0, 1, … in column order).
pub fn trunk_metadata(source: &dyn FeatureSource, cache: &Path) -> BTreeMap<String, String> {
    let parts = source.parts();
    let provenance: Vec<&str> = parts.iter().map(|p| p.provenance.as_str()).collect();
    let mut meta = BTreeMap::from([
        ("trunk_fingerprint".to_string(), source.trunk_fingerprint()),
        ("trunk_provenance".to_string(), provenance.join(" + ")),
        ("cache".to_string(), cache.display().to_string()),
    ]);
    if parts.len() > 1 {
        meta.insert(KEY_TRUNKS.into(), parts.len().to_string());
        for (i, p) in parts.iter().enumerate() {
            meta.insert(
                format!("trunk.{i}.fingerprint"),
                p.trunk_fingerprint.clone(),
            );
            meta.insert(format!("trunk.{i}.provenance"), p.provenance.clone());
            meta.insert(format!("trunk.{i}.dim"), p.dim.to_string());
            meta.insert(format!("trunk.{i}.cache"), p.dir.display().to_string());
        }
    }
    meta
}

/// The caches a head trained on a join recorded (`trunk.I.cache`), in column order; empty for a
/// head of one trunk.
pub fn recorded_caches(meta: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let n: usize = meta
        .get(KEY_TRUNKS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if n < 2 {
        return Vec::new();
    }
    (0..n)
        .filter_map(|i| meta.get(&format!("trunk.{i}.cache")).map(PathBuf::from))
        .collect()
}

/// Refuses a head trained on joined caches (run `run`, metadata `meta`) for `job`, which feeds
/// it the features of one trunk (`predict`, `export --with-trunk`).
pub fn refuse_joined(
    run: &Path,
    meta: &BTreeMap<String, String>,
    job: &'static str,
) -> Result<(), JobError> {
    let Some(n) = meta.get(KEY_TRUNKS) else {
        return Ok(());
    };
    Err(JobError::JoinedHead {
        run: run.to_path_buf(),
        trunks: n.clone(),
        provenance: meta.get("trunk_provenance").cloned().unwrap_or_default(),
        job,
    })
}
