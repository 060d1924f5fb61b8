//! Two (or more) caches of the same images, made by different trunks, joined by content hash
//! into one feature matrix: row k of the join is one image, its features the concatenation of
//! each cache's row of that image (`D = D_0 + D_1 + …`), in the first cache's row order.
//!
//! Training never sees the difference: the jobs read labelled rows through [`FeatureSource`],
//! which one [`FeatureCache`] and a [`JoinedCache`] both are, and hand the head an in-memory
//! matrix (the head's [`crate::head::Feed`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{s, Array2};

use super::{CacheError, FeatureCache, SplitData};
use crate::dataset::Split;

/// What a joined part (one cache) contributes, for the run's metadata and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePart {
    /// The cache folder.
    pub dir: PathBuf,
    /// Fingerprint of the trunk that made its features ([`FeatureCache::trunk_fingerprint`]).
    pub trunk_fingerprint: String,
    /// Where the trunk came from, in words.
    pub provenance: String,
    /// The cache's own fingerprint (trunk, preprocessing, dim).
    pub cache_fingerprint: String,
    /// Its features per row.
    pub dim: usize,
}

/// Labelled rows the jobs train and score on: one cache, or caches joined by content hash.
/// Rows are numbered `0..len()`; every per-row slice has `len()` entries.
pub trait FeatureSource {
    /// Class names; label i is `classes()[i]`.
    fn classes(&self) -> &[String];
    /// Features per row (the sum of the parts' for a join).
    fn dim(&self) -> usize;
    /// Number of rows.
    fn len(&self) -> usize;
    /// True when there are no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The cache folder named in messages (the first cache of a join).
    fn dir(&self) -> &Path;
    /// `(len,)`: the split of every row.
    fn row_splits(&self) -> &[Split];
    /// `(len,)`: the label of every row (`None`: unlabelled).
    fn row_labels(&self) -> &[Option<u32>];
    /// `(len,)`: the view of every row (0 = the plain image; a join holds plain views only).
    fn row_views(&self) -> &[u32];
    /// Rows `rows` (strictly ascending), in that order: `features: (rows.len(), dim())`.
    fn rows(&self, rows: &[usize]) -> Result<SplitData, CacheError>;
    /// The caches this source reads, in column order (one for a plain cache).
    fn parts(&self) -> Vec<SourcePart>;
    /// The trunk fingerprint a head trained on this source records: the one trunk's, or the
    /// parts' joined by `+` in column order.
    fn trunk_fingerprint(&self) -> String {
        let fps: Vec<String> = self
            .parts()
            .into_iter()
            .map(|p| p.trunk_fingerprint)
            .collect();
        fps.join("+")
    }
    /// Splits present, sorted (train, val, test).
    fn split_names(&self) -> Vec<Split> {
        let set: std::collections::BTreeSet<Split> = self.row_splits().iter().copied().collect();
        set.into_iter().collect()
    }
    /// Whether any row is in `split`.
    fn has_split(&self, split: Split) -> bool {
        self.row_splits().contains(&split)
    }
}

fn part_of(cache: &FeatureCache) -> SourcePart {
    let m = cache.manifest();
    SourcePart {
        dir: cache.dir().to_path_buf(),
        trunk_fingerprint: m.model.fingerprint.clone(),
        provenance: m.model.provenance.clone(),
        cache_fingerprint: m.fingerprint.clone(),
        dim: cache.dim(),
    }
}

impl FeatureSource for FeatureCache {
    fn classes(&self) -> &[String] {
        FeatureCache::classes(self)
    }
    fn dim(&self) -> usize {
        FeatureCache::dim(self)
    }
    fn len(&self) -> usize {
        FeatureCache::len(self)
    }
    fn dir(&self) -> &Path {
        FeatureCache::dir(self)
    }
    fn row_splits(&self) -> &[Split] {
        FeatureCache::row_splits(self)
    }
    fn row_labels(&self) -> &[Option<u32>] {
        FeatureCache::row_labels(self)
    }
    fn row_views(&self) -> &[u32] {
        FeatureCache::row_views(self)
    }
    fn rows(&self, rows: &[usize]) -> Result<SplitData, CacheError> {
        FeatureCache::rows(self, rows)
    }
    fn parts(&self) -> Vec<SourcePart> {
        vec![part_of(self)]
    }
}

/// Why caches cannot be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A cache could not be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Two caches list different classes.
    #[error(
        "cannot join {} and {}: their classes differ ({a:?} vs {b:?}); extract both from the \
         same images folder (`vggcache extract --images DIR --model M --out CACHE`)",
        first.display(),
        other.display()
    )]
    Classes {
        /// The first cache.
        first: PathBuf,
        /// Its classes.
        a: Vec<String>,
        /// The cache that differs.
        other: PathBuf,
        /// Its classes.
        b: Vec<String>,
    },
    /// Two caches hold the same features (same trunk, preprocessing and dim).
    #[error(
        "cannot join {} and {}: both hold the same features (cache fingerprint {fingerprint}); \
         join caches of different trunks (or pass one --features)",
        first.display(),
        other.display()
    )]
    SameFeatures {
        /// The first cache.
        first: PathBuf,
        /// The cache with the same fingerprint.
        other: PathBuf,
        /// The shared cache fingerprint.
        fingerprint: String,
    },
    /// Images cached in one cache but not in another.
    #[error(
        "{count} image(s) of cache {} have no row of the same content hash in cache {} \
         (e.g. {}): extract the same images into it (`vggcache extract --images DIR --model \
         ITS_MODEL --out {}`), or pass --drop-unmatched to train on the images both hold",
        has.display(),
        lacks.display(),
        examples.join(", "),
        lacks.display()
    )]
    Unmatched {
        /// How many images `lacks` misses.
        count: usize,
        /// The cache holding them.
        has: PathBuf,
        /// The cache missing them.
        lacks: PathBuf,
        /// Up to three of their paths, as `has` records them.
        examples: Vec<String>,
    },
    /// The same image (content hash) has another split or label in another cache.
    #[error("{0}")]
    Disagree(Box<Disagreement>),
    /// No image is in every cache (with dropping allowed).
    #[error("no image is cached in all of {}: nothing to join", dirs.join(", "))]
    Empty {
        /// The caches.
        dirs: Vec<String>,
    },
}

/// Images whose split or label differs between two caches ([`JoinError::Disagree`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{count} image(s) have another {what} in cache {} than in {}, e.g. {path_a} is {value_a} \
     there but {path_b} is {value_b} here: the caches must split and label the images alike; \
     extract both from the same images folder with the same --val-fraction",
    first.display(),
    other.display()
)]
pub struct Disagreement {
    /// `split` or `label`.
    pub what: &'static str,
    /// How many images disagree.
    pub count: usize,
    /// The first cache.
    pub first: PathBuf,
    /// The first disagreeing image's path in it.
    pub path_a: String,
    /// Its split or class there.
    pub value_a: String,
    /// The cache that disagrees.
    pub other: PathBuf,
    /// The image's path in it.
    pub path_b: String,
    /// Its split or class there.
    pub value_b: String,
}

/// Caches of the same images joined by content hash; see the module doc.
pub struct JoinedCache {
    parts: Vec<FeatureCache>,
    /// `map[p][k]`: the row of part p holding joined row k (`map[0]` strictly ascending).
    map: Vec<Vec<usize>>,
    splits: Vec<Split>,
    labels: Vec<Option<u32>>,
    /// All 0: a join pairs plain views only.
    views: Vec<u32>,
    dim: usize,
    dropped: usize,
}

impl std::fmt::Debug for JoinedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedCache")
            .field("parts", &self.parts)
            .field("rows", &self.splits.len())
            .field("dim", &self.dim)
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// For every row of `a`, its row in `b` (same content hash; the same path first, else the
/// first unused row of that hash in cache order), and the rows of `b` no row of `a` took.
fn match_rows(a: &FeatureCache, b: &FeatureCache) -> (Vec<Option<usize>>, Vec<usize>) {
    let mut by_hash: HashMap<&str, Vec<usize>> = HashMap::with_capacity(b.len());
    for (j, h) in b.row_hashes().iter().enumerate() {
        if b.row_views()[j] == 0 {
            by_hash.entry(h.as_str()).or_default().push(j);
        }
    }
    let mut used = vec![false; b.len()];
    let mut of_a = vec![None; a.len()];
    // Same path first, so duplicate images (one hash, several paths) pair up by name.
    for (i, (h, p)) in a.row_hashes().iter().zip(a.row_paths()).enumerate() {
        if a.row_views()[i] != 0 {
            continue;
        }
        if let Some(js) = by_hash.get(h.as_str()) {
            if let Some(&j) = js.iter().find(|&&j| !used[j] && &b.row_paths()[j] == p) {
                used[j] = true;
                of_a[i] = Some(j);
            }
        }
    }
    for (i, h) in a.row_hashes().iter().enumerate() {
        if of_a[i].is_some() || a.row_views()[i] != 0 {
            continue;
        }
        if let Some(js) = by_hash.get(h.as_str()) {
            if let Some(&j) = js.iter().find(|&&j| !used[j]) {
                used[j] = true;
                of_a[i] = Some(j);
            }
        }
    }
    let unused = (0..b.len())
        .filter(|&j| !used[j] && b.row_views()[j] == 0)
        .collect();
    (of_a, unused)
}

fn examples<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<String> {
    paths.take(3).cloned().collect()
}

impl JoinedCache {
    /// Opens and joins the caches in `dirs` (at least two), in column order. Every cache must
    /// list the same classes and hold other features than the others; the same image must have
    /// the same split and label in each. An image missing from some cache is an error
    /// ([`JoinError::Unmatched`]) unless `drop_unmatched`, which leaves it out (counted in
    /// [`JoinedCache::dropped`]).
    pub fn open(dirs: &[PathBuf], drop_unmatched: bool) -> Result<JoinedCache, JoinError> {
        assert!(dirs.len() >= 2, "JoinedCache::open: at least two caches");
        let parts: Vec<FeatureCache> = dirs
            .iter()
            .map(|d| FeatureCache::open(d))
            .collect::<Result<_, _>>()?;
        let first = &parts[0];
        for (i, other) in parts.iter().enumerate().skip(1) {
            if other.classes() != first.classes() {
                return Err(JoinError::Classes {
                    first: first.dir().to_path_buf(),
                    a: first.classes().to_vec(),
                    other: other.dir().to_path_buf(),
                    b: other.classes().to_vec(),
                });
            }
            if let Some(same) = parts[..i]
                .iter()
                .find(|p| p.manifest().fingerprint == other.manifest().fingerprint)
            {
                return Err(JoinError::SameFeatures {
                    first: same.dir().to_path_buf(),
                    other: other.dir().to_path_buf(),
                    fingerprint: other.manifest().fingerprint.clone(),
                });
            }
        }
        // keep[i]: row i of the first cache is a plain view in every other cache (augmented and
        // test-time views are not joined: they are neither kept nor counted as dropped).
        let plain = |i: &usize| first.row_views()[*i] == 0;
        let mut keep: Vec<bool> = (0..first.len()).map(|i| plain(&i)).collect();
        let mut matched: Vec<Vec<Option<usize>>> = Vec::with_capacity(parts.len() - 1);
        let mut dropped = 0;
        for other in &parts[1..] {
            let (of_first, unused) = match_rows(first, other);
            let missing: Vec<usize> = (0..first.len())
                .filter(|&i| plain(&i) && of_first[i].is_none())
                .collect();
            if !drop_unmatched {
                if !missing.is_empty() {
                    return Err(JoinError::Unmatched {
                        count: missing.len(),
                        has: first.dir().to_path_buf(),
                        lacks: other.dir().to_path_buf(),
                        examples: examples(missing.iter().map(|&i| &first.row_paths()[i])),
                    });
                }
                if !unused.is_empty() {
                    return Err(JoinError::Unmatched {
                        count: unused.len(),
                        has: other.dir().to_path_buf(),
                        lacks: first.dir().to_path_buf(),
                        examples: examples(unused.iter().map(|&j| &other.row_paths()[j])),
                    });
                }
            }
            dropped += unused.len();
            for &i in &missing {
                keep[i] = false;
            }
            check_agree(first, other, &of_first)?;
            matched.push(of_first);
        }
        let rows0: Vec<usize> = (0..first.len()).filter(|&i| keep[i]).collect();
        dropped += (0..first.len()).filter(plain).count() - rows0.len();
        if rows0.is_empty() {
            return Err(JoinError::Empty {
                dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
            });
        }
        let mut map = vec![rows0.clone()];
        for of_first in &matched {
            map.push(
                rows0
                    .iter()
                    .map(|&i| of_first[i].expect("kept rows are matched in every part"))
                    .collect(),
            );
        }
        let splits = rows0.iter().map(|&i| first.row_splits()[i]).collect();
        let labels = rows0.iter().map(|&i| first.row_labels()[i]).collect();
        let dim = parts.iter().map(FeatureCache::dim).sum();
        Ok(JoinedCache {
            parts,
            map,
            views: vec![0; rows0.len()],
            splits,
            labels,
            dim,
            dropped,
        })
    }

    /// Rows left out because some cache lacks their image (0 unless opened with
    /// `drop_unmatched`): the first cache's unmatched rows plus the other caches' rows that no
    /// row of the first matched.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The opened caches, in column order.
    pub fn caches(&self) -> &[FeatureCache] {
        &self.parts
    }
}

/// Every matched pair of rows of `first` and `other` has the same split and label.
fn check_agree(
    first: &FeatureCache,
    other: &FeatureCache,
    of_first: &[Option<usize>],
) -> Result<(), JoinError> {
    let class = |l: Option<u32>| {
        l.map_or("unlabelled".to_string(), |l| {
            first.classes()[l as usize].clone()
        })
    };
    let pairs = || {
        of_first
            .iter()
            .enumerate()
            .filter_map(|(i, j)| j.map(|j| (i, j)))
    };
    let disagree = |what: &'static str,
                    bad: Vec<(usize, usize)>,
                    value: &dyn Fn(&FeatureCache, usize) -> String| {
        let &(i, j) = bad.first()?;
        Some(JoinError::Disagree(Box::new(Disagreement {
            what,
            count: bad.len(),
            first: first.dir().to_path_buf(),
            path_a: first.row_paths()[i].clone(),
            value_a: value(first, i),
            other: other.dir().to_path_buf(),
            path_b: other.row_paths()[j].clone(),
            value_b: value(other, j),
        })))
    };
    let bad_split: Vec<(usize, usize)> = pairs()
        .filter(|&(i, j)| first.row_splits()[i] != other.row_splits()[j])
        .collect();
    if let Some(e) = disagree("split", bad_split, &|c, r| c.row_splits()[r].to_string()) {
        return Err(e);
    }
    let bad_label: Vec<(usize, usize)> = pairs()
        .filter(|&(i, j)| first.row_labels()[i] != other.row_labels()[j])
        .collect();
    if let Some(e) = disagree("label", bad_label, &|c, r| class(c.row_labels()[r])) {
        return Err(e);
    }
    Ok(())
}

impl FeatureSource for JoinedCache {
    fn classes(&self) -> &[String] {
        self.parts[0].classes()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.splits.len()
    }
    fn dir(&self) -> &Path {
        self.parts[0].dir()
    }
    fn row_splits(&self) -> &[Split] {
        &self.splits
    }
    fn row_labels(&self) -> &[Option<u32>] {
        &self.labels
    }
    fn row_views(&self) -> &[u32] {
        &self.views
    }

    /// Each part's rows read (in its own ascending order) and placed side by side.
    fn rows(&self, rows: &[usize]) -> Result<SplitData, CacheError> {
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "rows: strictly ascending"
        );
        let n = rows.len();
        let mut features = Array2::<f32>::zeros((n, self.dim));
        let mut out = None;
        let mut col = 0;
        for (cache, map) in self.parts.iter().zip(&self.map) {
            // The part's rows in ascending order, and where each goes in the output.
            let mut order: Vec<(usize, usize)> =
                rows.iter().enumerate().map(|(k, &r)| (map[r], k)).collect();
            order.sort_unstable();
            let want: Vec<usize> = order.iter().map(|&(r, _)| r).collect();
            let data = cache.rows(&want)?;
            let d = cache.dim();
            for (src, &(_, k)) in data.features.outer_iter().zip(&order) {
                features.slice_mut(s![k, col..col + d]).assign(&src);
            }
            col += d;
            if out.is_none() {
                // The first part's rows are already in output order (map[0] ascending).
                out = Some((data.paths, data.splits, data.labels));
            }
        }
        let (paths, splits, labels) = out.expect("a join has parts");
        Ok(SplitData {
            views: vec![0; paths.len()],
            paths,
            splits,
            labels,
            features,
        })
    }

    fn parts(&self) -> Vec<SourcePart> {
        self.parts.iter().map(part_of).collect()
    }
}
