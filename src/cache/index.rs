//! The writer's row index: every cached path with its content hash, split and shard, in one map.

use std::collections::hash_map;
use std::collections::HashMap;

use crate::dataset::Split;

/// The key of a cache row: the image path for the plain view (so a cache without views keys
/// its rows exactly as before), `path` + NUL + `view` for view 1.. (NUL is in no file name).
pub(crate) fn row_key(path: &str, view: u32) -> String {
    if view == 0 {
        path.to_string()
    } else {
        format!("{path}\0{view}")
    }
}

/// The `(path, view)` of a [`row_key`].
pub(crate) fn split_key(key: &str) -> (&str, u32) {
    match key.rsplit_once('\0') {
        Some((path, view)) => (path, view.parse().unwrap_or(u32::MAX)),
        None => (key, 0),
    }
}

/// What the writer knows of one cached row.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRow {
    /// Hash of the image file's bytes (hex), as written in the row.
    pub hash: String,
    pub split: Split,
    /// File name of the listed shard holding the row.
    pub shard: String,
    /// The view's recipe (JSON), `None` for the plain view.
    pub recipe: Option<String>,
}

/// [`row_key`] → its row. Invariant: every key is in exactly one listed shard.
pub(crate) type RowIndex = HashMap<String, CachedRow>;

/// The cache's rows as path → content hash: what a re-run can skip
/// ([`super::CacheWriter::existing`]). Reads like a `&HashMap<String, String>`.
#[derive(Debug, Clone, Copy)]
pub struct Existing<'a>(pub(crate) &'a RowIndex);

impl<'a> Existing<'a> {
    /// `(path, content hash)` of every plain row (view 0), in no particular order: what the
    /// extraction plan compares the image folder with.
    pub fn plain(&self) -> impl Iterator<Item = (&'a String, &'a String)> + 'a {
        self.0
            .iter()
            .filter(|(k, _)| !k.contains('\0'))
            .map(|(p, r)| (p, &r.hash))
    }

    /// `(path, view, content hash, recipe)` of every row of view 1.., in no particular order.
    pub fn views(&self) -> impl Iterator<Item = (&'a str, u32, &'a str, Option<&'a str>)> + 'a {
        self.0
            .iter()
            .filter(|(k, _)| k.contains('\0'))
            .map(|(k, r)| {
                let (path, view) = split_key(k);
                (path, view, r.hash.as_str(), r.recipe.as_deref())
            })
    }

    /// The content hash and recipe of view `view` of `path`, when cached.
    pub fn view(&self, path: &str, view: u32) -> Option<(&'a str, Option<&'a str>)> {
        self.0
            .get(&row_key(path, view))
            .map(|r| (r.hash.as_str(), r.recipe.as_deref()))
    }

    /// Number of cached rows.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the cache holds no rows.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `path` is cached.
    pub fn contains_key(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// Content hash of the row of `path`.
    pub fn get(&self, path: &str) -> Option<&'a String> {
        self.0.get(path).map(|r| &r.hash)
    }

    /// Cached paths, in no particular order.
    pub fn keys(&self) -> hash_map::Keys<'a, String, CachedRow> {
        self.0.keys()
    }

    /// `(path, content hash)` of every row, in no particular order.
    pub fn iter(&self) -> Iter<'a> {
        self.0.iter().map(|(p, r)| (p, &r.hash))
    }
}

/// Iterator of [`Existing::iter`].
pub type Iter<'a> = std::iter::Map<
    hash_map::Iter<'a, String, CachedRow>,
    fn((&'a String, &'a CachedRow)) -> (&'a String, &'a String),
>;

impl std::ops::Index<&str> for Existing<'_> {
    type Output = String;

    /// Content hash of the row of `path`; panics when it is not cached.
    fn index(&self, path: &str) -> &String {
        &self.0[path].hash
    }
}

impl<'a> IntoIterator for Existing<'a> {
    type Item = (&'a String, &'a String);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
