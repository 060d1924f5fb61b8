//! Opening an existing cache for writing: pick the manifest (main, staged rebuild, or new),
//! verify what it lists, and repair what a crash or damage left, saying so in [`CacheStats`].
//!
//! Damaged files are never deleted: they move to `quarantine/`. What is deleted is only what was
//! never committed (`*.tmp`, `pending/`, unlisted `*.staged`, an abandoned staging manifest) or an
//! unlisted shard whose every row is already listed (a duplicate an older crash left).

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::index::{CachedRow, RowIndex};
use super::manifest::{CacheIdentity, Manifest, ShardInfo};
use super::schema::WriteOptions;
use super::shard::{
    check_shard, check_unlisted, footer_fingerprint, parse_shard_name, sha256_prefix, Places,
    ShardMeta,
};
use super::{
    CacheError, CacheStats, MANIFEST_FILE, PENDING_DIR, QUARANTINE_DIR, REBUILD_MANIFEST_FILE,
};
use crate::fsutil;

/// Unlisted shards a rebuilt manifest may adopt, with their rows.
type Adoptable = Vec<(ShardInfo, ShardMeta)>;

/// A cache opened and repaired for writing; the writer takes it over.
pub(crate) struct Opened {
    pub dir: PathBuf,
    /// The manifest to maintain (the main one, or the staging one of a rebuild); not yet stored.
    pub manifest: Manifest,
    /// [`MANIFEST_FILE`], or [`REBUILD_MANIFEST_FILE`] while a `force` rebuild is staged.
    pub manifest_file: &'static str,
    /// During a `force` rebuild: the shards of the old main manifest, deleted by `finish`.
    pub old_main: Option<Vec<ShardInfo>>,
    /// Every row of the listed shards.
    pub rows: RowIndex,
    /// What the repairs did.
    pub stats: CacheStats,
}

/// Opens the cache in `dir` (created, and locked by the caller) for `identity`: see
/// [`super::CacheWriter::open_with`] for the cases. The class list is NOT yet changed to
/// `classes` (that is a rewrite, the writer's) and the manifest is not yet stored.
pub(crate) fn open(
    dir: &Path,
    identity: &CacheIdentity,
    classes: &[String],
    force: bool,
    options: &WriteOptions,
) -> Result<Opened, CacheError> {
    if dir.join(super::parts::PLAN_KEY).is_file() {
        return Err(CacheError::ShardedRoot {
            path: dir.display().to_string(),
            plan: super::parts::PLAN_KEY,
        });
    }
    let main_path = dir.join(MANIFEST_FILE);
    let staged_path = dir.join(REBUILD_MANIFEST_FILE);
    let mut stats = CacheStats::default();
    let loaded = Manifest::load(&main_path);
    // A self-consistent manifest whose identity is not the one its shards' footers record was
    // edited (fingerprint and checksum recomputed): the shards are the truth, as below.
    let disowned = match &loaded {
        Ok(Some(m)) => m.shards.iter().find_map(|info| {
            let path = Places { dir, staged: false }.locate(&info.file);
            crate::safe_path::ensure_under(dir, &path, &info.file).ok()?;
            footer_fingerprint(&path)
                .filter(|found| *found != m.fingerprint)
                .map(|found| (info.file.clone(), found))
        }),
        _ => None,
    };
    let mut main = match loaded {
        Ok(Some(m)) if disowned.is_some() => {
            let (file, found) = disowned.expect("checked by the guard");
            let moved = quarantine(dir, &main_path)?;
            stats.quarantined.push(moved);
            stats.manifest_rebuilt = Some(format!(
                "{MANIFEST_FILE} records cache identity {} but the footer of its shard {file} \
                 records {found} (edited by hand?)",
                m.fingerprint
            ));
            None
        }
        Ok(None) if has_top_level_shards(dir)? => {
            stats.manifest_rebuilt = Some(format!("{MANIFEST_FILE} was missing"));
            None
        }
        // A manifest whose fingerprint is not its recorded identity's was edited: damaged.
        Ok(Some(m)) if m.fingerprint != m.identity().fingerprint() => {
            let moved = quarantine(dir, &main_path)?;
            stats.quarantined.push(moved);
            stats.manifest_rebuilt = Some(format!(
                "{MANIFEST_FILE} records fingerprint {} but its model, preprocessing and dim \
                 make {} (edited by hand?)",
                m.fingerprint,
                m.identity().fingerprint()
            ));
            None
        }
        Ok(m) => m,
        // A manifest that fails its checksum or does not parse is kept in quarantine/ and
        // rebuilt from the intact shards (a `force` run starts from empty instead).
        Err(e @ (CacheError::ManifestChecksum { .. } | CacheError::BadManifest { .. })) => {
            let moved = quarantine(dir, &main_path)?;
            stats.quarantined.push(moved);
            stats.manifest_rebuilt = Some(e.to_string());
            None
        }
        Err(_) if force => None,
        Err(e) => return Err(e),
    };
    let mut staged = Manifest::load(&staged_path).ok().flatten();
    if let Some(m) = main.as_mut() {
        complete_change(dir, m, false, &mut stats)?;
    }
    if let Some(m) = staged.as_mut() {
        complete_change(dir, m, true, &mut stats)?;
    }
    let fingerprint = identity.fingerprint();
    let dtype = options.feature_dtype;
    let matches =
        |m: &Manifest| m.identity().fingerprint() == fingerprint && m.feature_dtype == dtype;
    let compression = options.compression.name();
    let new_manifest = |gen: u32| {
        let mut m = Manifest::new(
            identity,
            classes,
            gen,
            compression.clone(),
            options.row_group_rows,
        );
        m.feature_dtype = dtype;
        m
    };

    let (mut manifest, manifest_file, old_main) = match (&main, force) {
        (Some(m), false) if matches(m) => (m.clone(), MANIFEST_FILE, None),
        (Some(m), false) if m.identity().fingerprint() == fingerprint => {
            return Err(CacheError::DtypeMismatch {
                path: dir.to_path_buf(),
                expected: dtype.name(),
                found: m.feature_dtype.name(),
            });
        }
        (Some(m), false) => {
            return Err(CacheError::IdentityMismatch {
                path: dir.to_path_buf(),
                expected: identity.describe(),
                found: m.identity().describe(),
            });
        }
        (None, false) => {
            let gen = staged.as_ref().map_or(1, |s| s.generation + 1);
            (new_manifest(gen), MANIFEST_FILE, None)
        }
        (_, true) => {
            let old_gen = main.as_ref().map_or(0, |m| m.generation);
            match staged.as_ref().filter(|s| matches(s)) {
                Some(s) => (s.clone(), REBUILD_MANIFEST_FILE, Some(old_shards(&main))),
                None => {
                    let gen = old_gen.max(staged.as_ref().map_or(0, |s| s.generation)) + 1;
                    let m = new_manifest(gen);
                    if main_path.exists() {
                        (m, REBUILD_MANIFEST_FILE, Some(old_shards(&main)))
                    } else {
                        (m, MANIFEST_FILE, None)
                    }
                }
            }
        }
    };
    // Record where the model is now (the fingerprint, not the path, decides reuse).
    manifest.model = identity.model.clone();
    manifest.fingerprint = fingerprint.clone();
    if manifest_file == MANIFEST_FILE && staged_path.exists() {
        // A staged rebuild that this run does not continue: abandon it.
        fs::remove_file(&staged_path).map_err(CacheError::io(&staged_path))?;
    }
    let rebuild = main.is_none() && !force && manifest_file == MANIFEST_FILE;
    let mut opened = Opened {
        dir: dir.to_path_buf(),
        manifest,
        manifest_file,
        old_main,
        rows: RowIndex::new(),
        stats,
    };
    // Superseded and stray files leave the folder before committed shards that an
    // interrupted commit left under `pending/` move up: never both visible.
    opened.load_existing()?;
    opened.unlisted_shards(rebuild)?;
    opened.clean_leftovers()?;
    Ok(opened)
}

impl Opened {
    fn places(&self) -> Places<'_> {
        Places {
            dir: &self.dir,
            staged: self.manifest_file == REBUILD_MANIFEST_FILE,
        }
    }

    /// Finishes the moves of listed shards an interrupted commit or `finish` left half done,
    /// then deletes what was never committed: `*.tmp` files of ours, files under `pending/` and
    /// `shard-*.parquet.staged` files no manifest lists.
    fn clean_leftovers(&mut self) -> Result<(), CacheError> {
        self.places().promote(&self.manifest.shards)?;
        let mut live: HashSet<PathBuf> = HashSet::new();
        for s in &self.manifest.shards {
            live.insert(self.places().shard_path(&s.file));
        }
        let pending = self.dir.join(PENDING_DIR);
        for dir in [&self.dir, &pending] {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CacheError::io(dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(CacheError::io(dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let ours = name.starts_with("shard-")
                    || name.starts_with("manifest")
                    || name.starts_with("skipped");
                let uncommitted = *dir == pending
                    || (name.starts_with("shard-") && name.ends_with(".parquet.staged"));
                let leftover = (ours && name.ends_with(".tmp"))
                    || (ours && uncommitted && !live.contains(&entry.path()));
                if leftover && entry.file_type().is_ok_and(|t| t.is_file()) {
                    fsutil::remove_if_exists(&entry.path())?;
                    let why = if name.ends_with(".tmp") {
                        "temporary file of an interrupted write"
                    } else {
                        "shard written but never committed"
                    };
                    self.stats.note_cleaned(&entry.path(), why);
                }
            }
        }
        Ok(fsutil::sync_dir(&self.dir)?)
    }

    /// Verifies listed shards and fills the row index. A missing shard is dropped; a
    /// damaged one (size, checksum, schema, labels) is moved to `quarantine/`; both are reported
    /// in [`CacheStats`] with their rows, which the caller extracts again. Shards of a version-1
    /// manifest get their checksum recorded now.
    fn load_existing(&mut self) -> Result<(), CacheError> {
        let dim = self.manifest.dim;
        let classes = self.manifest.classes.clone();
        let mut kept = Vec::with_capacity(self.manifest.shards.len());
        for mut info in std::mem::take(&mut self.manifest.shards) {
            let path = self.places().locate(&info.file);
            // A listed name leading out of the cache (through a symlink) is refused, never
            // read or quarantined: the file it points to is not the cache's.
            crate::safe_path::ensure_under(&self.dir, &path, &info.file)
                .map_err(super::unsafe_shard)?;
            let fingerprint = &self.manifest.fingerprint;
            let meta = check_shard(path.clone(), &info, dim, self.manifest.feature_dtype)
                .and_then(|s| s.check_identity(fingerprint).map(|()| s))
                .and_then(|s| s.read_meta(&classes));
            let meta = match meta {
                Ok(m) => m,
                Err(e @ CacheError::MissingShard { .. }) => {
                    self.drop_shard(&info, e.to_string(), None);
                    continue;
                }
                Err(e @ CacheError::CorruptShard { .. }) => {
                    let moved = quarantine(&self.dir, &path)?;
                    self.drop_shard(&info, e.to_string(), Some(moved));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if info.sha256.is_none() {
                let mut f = File::open(&path).map_err(CacheError::io(&path))?;
                info.sha256 = Some(sha256_prefix(&mut f, info.bytes, &path)?);
            }
            let rows = meta.keys.into_iter().zip(meta.hashes).zip(meta.splits);
            for (((p, hash), split), recipe) in rows.zip(meta.recipes) {
                let row = CachedRow {
                    hash,
                    split,
                    shard: info.file.clone(),
                    recipe,
                };
                if let Some(other) = self.rows.insert(p.clone(), row) {
                    return Err(CacheError::CorruptShard {
                        path: self.places().shard_path(&info.file),
                        message: if other.shard == info.file {
                            format!("row '{p}' appears twice in this shard")
                        } else {
                            format!("row '{p}' is also in shard {}", other.shard)
                        },
                    });
                }
            }
            kept.push(info);
        }
        self.manifest.shards = kept;
        Ok(())
    }

    fn drop_shard(&mut self, info: &ShardInfo, why: String, moved: Option<PathBuf>) {
        let note = match &moved {
            Some(q) => format!(
                "{why} [moved to {}; its {} images will be extracted again]",
                q.display(),
                info.rows
            ),
            None => format!("{why} [its {} images will be extracted again]", info.rows),
        };
        self.stats.dropped_shards.push(note);
        self.stats.quarantined.extend(moved);
        self.stats.rows_to_redo += info.rows;
    }

    /// Top-level `shard-*.parquet` files no manifest lists. When `rebuild` (the manifest was
    /// missing or damaged), intact shards of this identity are adopted into the new manifest
    /// (those of the class list holding most rows; their rows are not extracted again). Otherwise
    /// a shard whose every row (path and content hash) is in a listed shard is a duplicate left
    /// by an older crash and is deleted; any other is moved to `quarantine/` and reported.
    fn unlisted_shards(&mut self, rebuild: bool) -> Result<(), CacheError> {
        let mut live: HashSet<String> = self
            .manifest
            .shards
            .iter()
            .map(|s| s.file.clone())
            .collect();
        if let Some(old) = &self.old_main {
            live.extend(old.iter().map(|s| s.file.clone()));
        }
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(CacheError::io(&self.dir))? {
            let entry = entry.map_err(CacheError::io(&self.dir))?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            if name.starts_with("shard-")
                && name.ends_with(".parquet")
                && !live.contains(&name)
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                names.push(name);
            }
        }
        names.sort();
        let dim = self.manifest.dim;
        // Candidates for adoption, grouped by the class list their footer records.
        let mut groups: Vec<(Vec<String>, Adoptable)> = Vec::new();
        for name in names {
            let path = self.dir.join(&name);
            let checked = check_unlisted(path.clone(), &name, dim, self.manifest.feature_dtype)
                .and_then(|(s, info, fp, cls)| {
                    let meta = s.read_meta(&cls)?;
                    Ok((info, fp, cls, meta))
                });
            let Ok((info, fp, cls, meta)) = checked else {
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
                continue;
            };
            let ours = fp == self.manifest.fingerprint;
            let duplicate = meta
                .keys
                .iter()
                .zip(&meta.hashes)
                .all(|(p, h)| self.rows.get(p).is_some_and(|r| r.hash == *h));
            if ours && duplicate && !meta.keys.is_empty() {
                fsutil::remove_if_exists(&path)?;
                self.stats.note_cleaned(
                    &path,
                    "unlisted duplicate: each of its rows is in a listed shard",
                );
            } else if ours && rebuild && !meta.keys.iter().any(|p| self.rows.contains_key(p)) {
                match groups.iter_mut().find(|(c, _)| *c == cls) {
                    Some((_, g)) => g.push((info, meta)),
                    None => groups.push((cls, vec![(info, meta)])),
                }
            } else {
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        let best = (0..groups.len())
            .max_by_key(|&i| groups[i].1.iter().map(|(s, _)| s.rows).sum::<usize>())
            .expect("groups is not empty");
        let (classes, chosen) = groups.swap_remove(best);
        for (_, rest) in groups {
            for (info, _) in rest {
                let path = self.dir.join(&info.file);
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
            }
        }
        self.manifest.classes = classes;
        for (info, meta) in chosen {
            if meta.keys.iter().any(|p| self.rows.contains_key(p)) {
                let path = self.dir.join(&info.file);
                self.stats.quarantined.push(quarantine(&self.dir, &path)?);
                continue;
            }
            let rows = meta.keys.into_iter().zip(meta.hashes).zip(meta.splits);
            for (((p, hash), split), recipe) in rows.zip(meta.recipes) {
                let shard = info.file.clone();
                self.rows.insert(
                    p,
                    CachedRow {
                        hash,
                        split,
                        shard,
                        recipe,
                    },
                );
            }
            if let Some((g, seq)) = parse_shard_name(&info.file) {
                self.manifest.generation = self.manifest.generation.max(g);
                self.manifest.next_seq = self.manifest.next_seq.max(seq + 1);
            }
            self.manifest.shards.push(info);
            self.stats.adopted_shards += 1;
        }
        Ok(())
    }
}

/// Completes the change an interrupted commit recorded in `m.committing`, in memory (the writer
/// stores the manifest): deletes the listed files it retires and lists its shards (those still
/// under `pending/` or named `*.staged` are found there and moved up by `clean_leftovers`).
fn complete_change(
    dir: &Path,
    m: &mut Manifest,
    staged: bool,
    stats: &mut CacheStats,
) -> Result<(), CacheError> {
    let Some(retire) = m.adopt_change() else {
        return Ok(());
    };
    let places = Places { dir, staged };
    let keep: HashSet<&str> = m.shards.iter().map(|s| s.file.as_str()).collect();
    for f in retire.iter().filter(|f| !keep.contains(f.as_str())) {
        let path = places.shard_path(f);
        if path.is_file() {
            fsutil::remove_if_exists(&path)?;
            stats.note_cleaned(&path, "retired by an interrupted commit, completed now");
        }
    }
    Ok(())
}

/// True when `dir` holds a top-level `shard-*.parquet` file.
fn has_top_level_shards(dir: &Path) -> Result<bool, CacheError> {
    for entry in fs::read_dir(dir).map_err(CacheError::io(dir))? {
        let name = entry.map_err(CacheError::io(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && name.ends_with(".parquet") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves `path` into `dir/quarantine/` as `name.quarantined` (never overwriting: `name.1.quarantined`, ... when taken)
/// and returns where it went. Nothing the cache holds is deleted for being damaged.
fn quarantine(dir: &Path, path: &Path) -> Result<PathBuf, CacheError> {
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir).map_err(CacheError::io(&qdir))?;
    let name = path
        .file_name()
        .expect("quarantined paths name a file")
        .to_string_lossy()
        .to_string();
    // Not `*.parquet`, so not even a recursive `**/*.parquet` glob reads a damaged file.
    let mut to = qdir.join(format!("{name}.quarantined"));
    let mut n = 1;
    while to.exists() {
        to = qdir.join(format!("{name}.{n}.quarantined"));
        n += 1;
    }
    fs::rename(path, &to).map_err(CacheError::io(&to))?;
    fsutil::sync_dir(&qdir)?;
    fsutil::sync_dir(dir)?;
    Ok(to)
}

fn old_shards(main: &Option<Manifest>) -> Vec<ShardInfo> {
    main.as_ref().map(|m| m.shards.clone()).unwrap_or_default()
}
