//! Issue 23, "a cache that cannot lie": each finding pinned by a test, and a seeded corruption
//! suite (byte flips over shards and manifest, truncations, deletions) in which every case ends
//! in a clear error, a repair, or identical training data: never a panic, never silent wrong data.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vggcache::cache::{
    CacheError, CacheIdentity, CacheWriter, FeatureCache, FeatureRow, ModelIdentity, SplitData,
    WriteOptions,
};
use vggcache::dataset::Split;
use vggcache::spec::PreprocessSpec;

use common::{extract, text};

const DIM: usize = 32;

fn identity(model: &str) -> CacheIdentity {
    CacheIdentity {
        model: ModelIdentity {
            fingerprint: format!("sha256:{model:0<64}"),
            path: format!("models/{model}.onnx"),
            provenance: "test".into(),
            metadata: BTreeMap::new(),
        },
        preprocess: PreprocessSpec::caffe_bgr(),
        dim: DIM,
    }
}

fn classes() -> Vec<String> {
    vec!["cat".into(), "dog".into()]
}

#[derive(Clone, Debug)]
struct Row {
    path: String,
    split: String,
    label: Option<u32>,
    hash: String,
    features: Vec<f32>,
}

/// `n` rows `{prefix}{i}`; labels alternate, every 4th is `val`.
fn rows(prefix: &str, n: usize, seed: u64) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Row {
            path: format!("{prefix}{i:04}.jpg"),
            split: if i % 4 == 3 { "val" } else { "train" }.into(),
            label: Some((i % 2) as u32),
            hash: format!("{:016x}", rng.random::<u64>()),
            features: (0..DIM)
                .map(|_| (rng.random::<f32>() - 0.5).max(0.0) * 3.0)
                .collect(),
        })
        .collect()
}

fn append(w: &mut CacheWriter, rows: &[Row]) {
    let cls = classes();
    let fr: Vec<FeatureRow> = rows
        .iter()
        .map(|r| FeatureRow {
            path: &r.path,
            split: Split::from_stored(&r.split).expect("a stored split name"),
            label: r.label,
            class: r.label.map(|l| cls[l as usize].as_str()),
            content_hash: &r.hash,
            features: &r.features,
        })
        .collect();
    w.append_shard(&fr).expect("append_shard");
}

fn opts() -> WriteOptions {
    WriteOptions {
        row_group_rows: 8,
        compact_below_rows: 0,
        ..WriteOptions::default()
    }
}

/// A cache of 3 shards x 20 rows in `dir`; returns its rows.
fn build(dir: &Path) -> Vec<Row> {
    let all = rows("img/", 60, 23);
    let mut w = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts()).unwrap();
    for chunk in all.chunks(20) {
        append(&mut w, chunk);
    }
    w.finish().unwrap();
    all
}

/// What training would see: every row sorted by path (paths, splits, labels, feature bits).
type Seen = Vec<(String, String, Option<u32>, Vec<u32>)>;

fn seen(d: &SplitData) -> Seen {
    let mut v: Seen = (0..d.len())
        .map(|i| {
            (
                d.paths[i].clone(),
                d.splits[i].as_str().to_string(),
                d.labels[i],
                d.features.row(i).iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected(rows: &[Row]) -> Seen {
    let mut v: Seen = rows
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.split.clone(),
                r.label,
                r.features.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn read(dir: &Path) -> Result<Seen, CacheError> {
    let c = FeatureCache::open(dir)?;
    Ok(seen(&c.all()?))
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// What `extract` does after opening a damaged cache: re-append every row it lacks.
fn repair(dir: &Path, all: &[Row]) -> Result<vggcache::cache::CacheStats, CacheError> {
    let mut w = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts())?;
    let stats = w.stats();
    let todo: Vec<Row> = all
        .iter()
        .filter(|r| w.existing().get(&r.path) != Some(&r.hash))
        .cloned()
        .collect();
    if !todo.is_empty() {
        append(&mut w, &todo);
    }
    w.finish()?;
    Ok(stats)
}

/// The message names the way out: re-run `vggcache extract` (which repairs), or `--force`.
fn says_way_out(e: &CacheError) -> bool {
    let m = e.to_string();
    m.contains("vggcache extract") || m.contains("--force")
}

#[derive(Default, Debug)]
struct Tally {
    tried: usize,
    detected: usize,
    identical: usize,
    repaired: usize,
    silent: usize,
    panics: usize,
}

/// One corruption case on a fresh copy of the pristine cache: `damage` changes it, then the
/// reader must refuse (naming the way out) or read identical data, and the writer must repair
/// it so that the reader then sees identical data.
fn trial(
    pristine: &Path,
    scratch: &Path,
    all: &[Row],
    tally: &mut Tally,
    what: &str,
    damage: impl FnOnce(&Path),
) {
    let _ = fs::remove_dir_all(scratch);
    copy_dir(pristine, scratch);
    damage(scratch);
    tally.tried += 1;
    let want = expected(all);
    match std::panic::catch_unwind(|| read(scratch)) {
        Err(_) => {
            tally.panics += 1;
            eprintln!("PANIC reading after {what}");
            return;
        }
        Ok(Ok(got)) if got == want => tally.identical += 1,
        Ok(Ok(_)) => {
            tally.silent += 1;
            eprintln!("SILENT wrong data after {what}");
            return;
        }
        Ok(Err(e)) => {
            assert!(says_way_out(&e), "{what}: message lacks the way out: {e}");
            tally.detected += 1;
        }
    }
    match std::panic::catch_unwind(|| repair(scratch, all)) {
        Err(_) => {
            tally.panics += 1;
            eprintln!("PANIC repairing after {what}");
        }
        Ok(Err(e)) => {
            // A refusal is fine as long as it says what to do; the data was not used.
            assert!(
                says_way_out(&e),
                "{what}: repair refused without a way out: {e}"
            );
        }
        Ok(Ok(_)) => match read(scratch) {
            Ok(got) if got == want => tally.repaired += 1,
            Ok(_) => {
                tally.silent += 1;
                eprintln!("SILENT wrong data after repairing {what}");
            }
            Err(e) => panic!("{what}: repaired cache does not open: {e}"),
        },
    }
}

#[test]
fn corruption_suite_never_lies() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let scratch = tmp.path().join("scratch");
    let all = build(&pristine);
    assert_eq!(read(&pristine).unwrap(), expected(&all));
    let mut targets = shard_files(&pristine);
    targets.push(pristine.join("manifest.json"));
    let names: Vec<String> = targets
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    let mut rng = StdRng::seed_from_u64(0x23);
    let mut tally = Tally::default();
    // Random single-bit flips.
    let flips = 80;
    for _ in 0..flips {
        let name = &names[rng.random_range(0..names.len())];
        let len = fs::metadata(pristine.join(name)).unwrap().len() as usize;
        let at = rng.random_range(0..len);
        let bit = rng.random_range(0..8);
        trial(
            &pristine,
            &scratch,
            &all,
            &mut tally,
            &format!("flip {name}@{at}.{bit}"),
            |d| {
                let p = d.join(name);
                let mut b = fs::read(&p).unwrap();
                b[at] ^= 1 << bit;
                fs::write(&p, b).unwrap();
            },
        );
    }
    let flips_tally = format!("{tally:?}");
    // Truncations.
    for _ in 0..10 {
        let name = &names[rng.random_range(0..names.len())];
        let len = fs::metadata(pristine.join(name)).unwrap().len() as usize;
        let keep = rng.random_range(0..len);
        trial(
            &pristine,
            &scratch,
            &all,
            &mut tally,
            &format!("truncate {name} to {keep}"),
            |d| {
                let p = d.join(name);
                let b = fs::read(&p).unwrap();
                fs::write(&p, &b[..keep]).unwrap();
            },
        );
    }
    // Deletions.
    for name in &names {
        trial(
            &pristine,
            &scratch,
            &all,
            &mut tally,
            &format!("delete {name}"),
            |d| {
                fs::remove_file(d.join(name)).unwrap();
            },
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "corruption suite: flips tried {flips} ({flips_tally}); all cases: tried {}, detected {}, \
         identical {}, repaired {}, silent {}, panics {} in {secs:.1} s",
        tally.tried, tally.detected, tally.identical, tally.repaired, tally.silent, tally.panics
    );
    assert_eq!(tally.silent, 0, "silent wrong data: {tally:?}");
    assert_eq!(tally.panics, 0, "panics: {tally:?}");
    assert_eq!(
        tally.detected + tally.identical,
        tally.tried,
        "every case is detected or harmless"
    );
}

// ----------------------------------------------------------------------------------------------
// Finding 2: byte flips in feature values and labels are caught by the shard checksum.

#[test]
fn flipped_feature_byte_is_refused_with_the_file_and_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let shard = shard_files(dir)[1].clone();
    let mut b = fs::read(&shard).unwrap();
    // A byte inside the data pages (past the 4-byte magic, far from the footer).
    let at = b.len() / 3;
    b[at] ^= 0x10;
    fs::write(&shard, b).unwrap();
    let err = read(dir).expect_err("a changed byte must not be read as data");
    let msg = err.to_string();
    assert!(matches!(err, CacheError::CorruptShard { .. }), "{msg}");
    assert!(
        msg.contains(shard.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
    assert!(msg.contains("sha256"), "{msg}");
    assert!(says_way_out(&err), "{msg}");
}

// Finding 2 (labels): a label that disagrees with the row's class column is an error even when
// the checksum was bypassed (a version-1 manifest has none).
// Finding 3: flips in the label column (validity bitmap included) never panic.

/// Turns the manifest in `dir` into a version-1 manifest (no checksums), as old caches have.
fn downgrade_manifest(dir: &Path) {
    let p = dir.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    v["format_version"] = 1.into();
    v.as_object_mut().unwrap().remove("checksum");
    for s in v["shards"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("sha256");
    }
    fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Byte range of column `col`'s chunk in row group 0 of a shard.
fn column_chunk(path: &Path, col: usize) -> std::ops::Range<usize> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(fs::File::open(path).unwrap()).unwrap();
    let c = r.metadata().row_group(0).column(col);
    let (start, len) = c.byte_range();
    start as usize..(start + len) as usize
}

#[test]
fn label_column_flips_never_panic_and_never_mislabel() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("p");
    let all = build(&pristine);
    downgrade_manifest(&pristine);
    let scratch = tmp.path().join("s");
    let shard_name = shard_files(&pristine)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let range = column_chunk(&pristine.join(&shard_name), 2); // label
    let (mut tried, mut refused) = (0, 0);
    for at in range.clone() {
        for bit in [0u8, 3, 7] {
            let _ = fs::remove_dir_all(&scratch);
            copy_dir(&pristine, &scratch);
            let p = scratch.join(&shard_name);
            let mut b = fs::read(&p).unwrap();
            b[at] ^= 1 << bit;
            fs::write(&p, b).unwrap();
            tried += 1;
            // The writer opens version-1 caches (to upgrade them): it must read the damaged
            // labels without panicking, and either quarantine the shard or keep identical rows.
            let outcome = std::panic::catch_unwind(|| repair(&scratch, &all));
            let stats = outcome
                .unwrap_or_else(|_| panic!("panic on flip at byte {at} bit {bit}"))
                .unwrap_or_else(|e| panic!("flip at byte {at} bit {bit}: {e}"));
            if !stats.dropped_shards.is_empty() {
                refused += 1;
            }
            assert_eq!(
                read(&scratch).unwrap(),
                expected(&all),
                "flip at byte {at} bit {bit}: training data differs"
            );
        }
    }
    println!(
        "label chunk flips: {tried} tried, {refused} shards quarantined, 0 panics, 0 mislabelled"
    );
    assert!(refused > 0);
}

#[test]
fn class_names_swapped_in_a_legacy_manifest_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    downgrade_manifest(dir);
    let p = dir.join("manifest.json");
    let text = fs::read_to_string(&p).unwrap();
    fs::write(
        &p,
        text.replace("\"cat\"", "\"TMP\"")
            .replace("\"dog\"", "\"cat\"")
            .replace("\"TMP\"", "\"dog\""),
    )
    .unwrap();
    // The writer checks each label against the class column while upgrading.
    let stats = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts())
        .unwrap()
        .stats();
    assert_eq!(stats.dropped_shards.len(), 3, "{stats:?}");
    assert!(
        stats.dropped_shards[0].contains("class column says"),
        "{stats:?}"
    );
}

// Finding 6: hand edits to manifest.json are caught by its checksum; extract rebuilds it.

#[test]
fn hand_edited_manifest_is_refused_then_rebuilt_from_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = build(dir);
    let p = dir.join("manifest.json");
    let pristine = fs::read_to_string(&p).unwrap();
    // Swapped class names.
    let swapped = pristine
        .replace("\"cat\"", "\"TMP\"")
        .replace("\"dog\"", "\"cat\"")
        .replace("\"TMP\"", "\"dog\"");
    // One shard entry removed.
    let mut v: serde_json::Value = serde_json::from_str(&pristine).unwrap();
    v["shards"].as_array_mut().unwrap().remove(1);
    let removed = serde_json::to_string_pretty(&v).unwrap();
    for edited in [swapped, removed] {
        fs::write(&p, &edited).unwrap();
        let err = read(dir).expect_err("edited manifest");
        assert!(matches!(err, CacheError::ManifestChecksum { .. }), "{err}");
        assert!(says_way_out(&err), "{err}");
        let stats = repair(dir, &all).unwrap();
        assert!(stats.manifest_rebuilt.is_some(), "{stats:?}");
        assert_eq!(stats.adopted_shards, 3, "{stats:?}");
        assert_eq!(stats.rows_to_redo, 0);
        assert_eq!(read(dir).unwrap(), expected(&all));
        assert!(
            dir.join("quarantine").read_dir().unwrap().count() >= 1,
            "edited manifest kept"
        );
    }
}

// Finding 7: nothing deleted silently.

#[test]
fn missing_manifest_is_rebuilt_from_intact_shards_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = build(dir);
    fs::remove_file(dir.join("manifest.json")).unwrap();
    let w = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts()).unwrap();
    let stats = w.stats();
    assert_eq!(w.existing().len(), 60, "every row adopted: {stats:?}");
    assert_eq!(stats.adopted_shards, 3);
    assert!(stats
        .manifest_rebuilt
        .as_deref()
        .unwrap()
        .contains("missing"));
    w.finish().unwrap();
    assert_eq!(read(dir).unwrap(), expected(&all));
    // Shards of another model are not adopted (and not deleted): quarantined.
    fs::remove_file(dir.join("manifest.json")).unwrap();
    let w = CacheWriter::open_with(dir, &identity("m2"), &classes(), false, opts()).unwrap();
    assert_eq!(w.existing().len(), 0);
    assert_eq!(w.stats().quarantined.len(), 3, "{:?}", w.stats());
}

#[test]
fn damaged_shard_is_quarantined_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = build(dir);
    let victim = shard_files(dir)[2].clone();
    let b = fs::read(&victim).unwrap();
    fs::write(&victim, &b[..b.len() / 2]).unwrap();
    let w = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts()).unwrap();
    let s = w.stats();
    assert_eq!(s.rows_to_redo, 20, "{s:?}");
    assert_eq!(s.quarantined.len(), 1, "{s:?}");
    assert!(s.quarantined[0].starts_with(dir.join("quarantine")));
    assert!(
        s.dropped_shards[0].contains("20 images will be extracted again"),
        "{s:?}"
    );
    assert_eq!(
        fs::read(&s.quarantined[0]).unwrap(),
        &b[..b.len() / 2],
        "kept as found"
    );
    drop(w);
    repair(dir, &all).unwrap();
    assert_eq!(read(dir).unwrap(), expected(&all));
}

// Finding 8: a kill during the end-of-run merge never leaves rows twice in `*.parquet`.

/// Child of `killed_merge_never_shows_duplicates`: appends 4-row shards then merges them.
#[test]
#[ignore = "run by killed_merge_never_shows_duplicates as a child process"]
fn merge_child() {
    let Ok(dir) = std::env::var("VGGCACHE_INTEGRITY_CHILD_DIR") else {
        return;
    };
    let all = rows("k/", 400, 5);
    let o = WriteOptions {
        row_group_rows: 8,
        compact_below_rows: 1000,
        ..WriteOptions::default()
    };
    loop {
        let mut w =
            CacheWriter::open_with(Path::new(&dir), &identity("m1"), &classes(), false, o).unwrap();
        let todo: Vec<Row> = all
            .iter()
            .filter(|r| !w.existing().contains_key(&r.path))
            .cloned()
            .collect();
        for chunk in todo.chunks(4) {
            append(&mut w, chunk);
        }
        w.finish().unwrap();
        // Rewrite rows forever so the parent's kill lands in merges and rewrites too.
        let mut w =
            CacheWriter::open_with(Path::new(&dir), &identity("m1"), &classes(), false, o).unwrap();
        let gone: HashSet<String> = all.iter().step_by(7).map(|r| r.path.clone()).collect();
        w.remove_paths(&gone).unwrap();
        w.finish().unwrap();
    }
}

/// Every path in the top-level `*.parquet` files, as a glob-reading tool sees them.
fn globbed_paths(dir: &Path) -> Vec<String> {
    use arrow::array::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = Vec::new();
    for f in shard_files(dir) {
        let Ok(file) = fs::File::open(&f) else {
            continue;
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = b.column_by_name("path").unwrap().as_string::<i32>();
            out.extend(col.iter().map(|s| s.unwrap().to_string()));
        }
    }
    out
}

#[test]
fn killed_merge_never_shows_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    for round in 0..12 {
        let mut child = Command::new(&exe)
            .args([
                "integrity::merge_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("VGGCACHE_INTEGRITY_CHILD_DIR", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
        child.kill().unwrap();
        child.wait().unwrap();
        let paths = globbed_paths(dir);
        let unique: HashSet<&String> = paths.iter().collect();
        if unique.len() != paths.len() {
            let listing: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            eprintln!("round {round}: files {listing:?}");
            eprintln!(
                "manifest: {}",
                fs::read_to_string(dir.join("manifest.json")).unwrap_or_default()
            );
        }
        assert_eq!(
            unique.len(),
            paths.len(),
            "round {round}: a *.parquet glob sees {} rows, {} distinct",
            paths.len(),
            unique.len()
        );
    }
    // The writer completes whatever was cut short; the reader agrees with the glob.
    drop(CacheWriter::open(dir, &identity("m1"), &classes(), false).unwrap());
    let n = FeatureCache::open(dir).map(|c| c.len()).unwrap_or(0);
    assert!(
        n > 0,
        "no child ever committed a row: did `integrity::merge_child` run?"
    );
    assert_eq!(globbed_paths(dir).len(), n);
}

// Finding 4: a split is a function of (path, split options); re-runs re-assign cached rows.

#[test]
fn set_splits_reassigns_cached_rows_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut all = build(dir);
    let mut w = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts()).unwrap();
    let mut new: HashMap<String, Split> = HashMap::new();
    for r in all.iter_mut().step_by(3) {
        let to = if r.split == "val" {
            Split::Train
        } else {
            Split::Val
        };
        r.split = to.as_str().into();
        new.insert(r.path.clone(), to);
    }
    assert_eq!(w.set_splits(&new).unwrap(), 20);
    assert_eq!(w.set_splits(&new).unwrap(), 0, "idempotent");
    w.finish().unwrap();
    assert_eq!(read(dir).unwrap(), expected(&all));
}

// Finding 9: the model hash in messages is whole.

#[test]
fn identity_messages_carry_the_full_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let mut other = identity("m2");
    other.model.fingerprint = format!("sha256:{}", "ab".repeat(32));
    let err = CacheWriter::open(tmp.path(), &other, &classes(), false).unwrap_err();
    assert!(err.to_string().contains(&"ab".repeat(32)), "{err}");
}

// Finding 1: the fingerprint covers external-data files.

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u64, payload: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// A ModelProto whose one initializer lives in `location` (enough for the fingerprint walk).
fn model_with_external(location: &str) -> Vec<u8> {
    let mut entry = Vec::new();
    bytes_field(1, b"location", &mut entry);
    bytes_field(2, location.as_bytes(), &mut entry);
    let mut tensor = Vec::new();
    bytes_field(8, b"w", &mut tensor);
    bytes_field(13, &entry, &mut tensor);
    varint(14 << 3, &mut tensor);
    varint(1, &mut tensor);
    let mut graph = Vec::new();
    bytes_field(5, &tensor, &mut graph);
    let mut model = Vec::new();
    varint(1 << 3, &mut model);
    varint(8, &mut model);
    bytes_field(7, &graph, &mut model);
    model
}

#[test]
fn fingerprint_covers_external_data_files() {
    use vggcache::trunk::fingerprint_file;
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.onnx");
    fs::write(&model, model_with_external("weights.bin")).unwrap();
    fs::write(tmp.path().join("weights.bin"), [1u8, 2, 3, 4]).unwrap();
    let a = fingerprint_file(&model).unwrap();
    fs::write(tmp.path().join("weights.bin"), [1u8, 2, 3, 5]).unwrap();
    let b = fingerprint_file(&model).unwrap();
    assert_ne!(a, b, "swapping the weights must change the fingerprint");
    assert_eq!(b.len(), "sha256:".len() + 64);
    fs::remove_file(tmp.path().join("weights.bin")).unwrap();
    assert!(
        fingerprint_file(&model).is_err(),
        "missing weights are an error"
    );
    // A location outside the model's folder is refused.
    fs::write(&model, model_with_external("../weights.bin")).unwrap();
    assert!(fingerprint_file(&model).is_err());
    // A self-contained model keeps the plain sha256 of its bytes (old caches stay valid).
    let tiny = common::tiny_trunk();
    let plain = {
        use sha2::{Digest, Sha256};
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(fs::read(&tiny).unwrap()))
        )
    };
    assert_eq!(fingerprint_file(&tiny).unwrap(), plain);
}

// Finding 5: compare-baselines rejects a hold-out fraction outside (0, 1).

fn vggcache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn compare_rejects_val_fraction_outside_0_1() {
    // 0 stays allowed: it means "no hold-out", refused with its own message when the cache has
    // no val split (tests/it/workflow.rs).
    for bad in ["1.5", "-0.1", "NaN"] {
        let flag = format!("--val-fraction={bad}");
        let o = vggcache(&["compare-baselines", "--features", "nope", &flag]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad} accepted");
        assert!(err.contains("--val-fraction must be in [0, 1)"), "{err}");
    }
}

// Finding 9: deleting the lock file while a writer runs does not let a second writer in.

#[test]
fn deleted_lock_file_lets_no_second_writer_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let w = CacheWriter::open(dir, &identity("m1"), &classes(), false).unwrap();
    fs::remove_file(dir.join("vggcache.lock")).unwrap();
    let err = CacheWriter::open(dir, &identity("m1"), &classes(), false)
        .expect_err("a second writer must be refused");
    assert!(matches!(err, CacheError::Locked { .. }), "{err}");
    drop(w);
    drop(CacheWriter::open(dir, &identity("m1"), &classes(), false).unwrap());
}

// End to end with the tiny trunk fixture and ONNX Runtime (findings 1 and 4).

fn tiny() -> PathBuf {
    common::tiny_trunk()
}

/// `per_class` small JPEGs in `dir/{cat,dog}/` (no split folders).
fn class_folder(dir: &Path, per_class: u32) {
    for class in ["cat", "dog"] {
        for i in 0..per_class {
            let p = dir.join(class).join(format!("{class}.{i}.jpg"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let seed = i + class.len() as u32 * 100;
            image::RgbImage::from_fn(40, 40, |x, y| {
                image::Rgb([
                    ((x * 7 + seed * 31) % 256) as u8,
                    ((y * 5 + seed * 17) % 256) as u8,
                    ((x + y + seed) % 256) as u8,
                ])
            })
            .save(&p)
            .unwrap();
        }
    }
}

#[test]
fn swapped_external_weights_are_not_reused() {
    let Some(py) = common::python_with("swapped_external_weights_are_not_reused", &["onnx"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m/model.onnx");
    fs::create_dir_all(model.parent().unwrap()).unwrap();
    // The tiny trunk re-saved with every initializer in m/weights.bin.
    let o = Command::new(py)
        .arg("-c")
        .arg(
            "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.save_model(m, sys.argv[2], \
             save_as_external_data=True, all_tensors_to_one_file=True, location='weights.bin', \
             size_threshold=0)",
        )
        .arg(tiny())
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    class_folder(&imgs, 4);
    let o = extract(&model, &imgs, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    // Finding 9: export --with-trunk cannot carry the external weights: refused, nothing written.
    let runs = d.path().join("runs");
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args([
            "train-head",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--name",
            "h",
            "--features",
        ])
        .arg(&out)
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let onnx_out = d.path().join("x.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["export", "--with-trunk", "--model"])
        .arg(&model)
        .arg("--head")
        .arg(runs.join("h"))
        .arg("--out")
        .arg(&onnx_out)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("external data") && !onnx_out.exists(), "{t}");
    // Other weights, same .onnx bytes: the features would differ, so the cache must not be reused.
    let weights = d.path().join("m/weights.bin");
    let mut w = fs::read(&weights).unwrap();
    for x in w.chunks_exact_mut(4) {
        let v = f32::from_le_bytes([x[0], x[1], x[2], x[3]]) * 0.5;
        x.copy_from_slice(&v.to_le_bytes());
    }
    fs::write(&weights, w).unwrap();
    let o = extract(&model, &imgs, &out, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--force") && !t.contains("reused 8"), "{t}");
}

#[test]
fn rerun_with_other_val_fraction_reassigns_splits() {
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("data");
    class_folder(&imgs, 12);
    let counts = |out: &Path| {
        let c = FeatureCache::open(out).unwrap();
        let all = c.all().unwrap();
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for s in &all.splits {
            *m.entry(s.as_str().to_string()).or_default() += 1;
        }
        let by_path: BTreeMap<String, String> = all
            .paths
            .iter()
            .cloned()
            .zip(all.splits.iter().map(|s| s.as_str().to_string()))
            .collect();
        (m, by_path)
    };
    let rerun = d.path().join("rerun");
    let fresh = d.path().join("fresh");
    assert!(extract(&tiny(), &imgs, &rerun, &["--val-fraction", "0.2"])
        .status
        .success());
    let o = extract(&tiny(), &imgs, &rerun, &["--val-fraction", "0.5"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("extracted 0"),
        "no inference for a split change: {}",
        text(&o)
    );
    assert!(extract(&tiny(), &imgs, &fresh, &["--val-fraction", "0.5"])
        .status
        .success());
    assert_eq!(
        counts(&rerun),
        counts(&fresh),
        "a re-run splits as a fresh run does"
    );
}

// Finding 5: compare-baselines scores a given head on the hold-out the head did not train on.

#[test]
fn compare_uses_the_heads_own_holdout() {
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    class_folder(&imgs, 10);
    // All rows in train (no val split in the cache), so the hold-out decides what is scored.
    assert!(extract(&tiny(), &imgs, &out, &["--val-fraction", "0"])
        .status
        .success());
    let runs = d.path().join("runs");
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args([
            "train-head",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--val-fraction",
            "0.5",
        ])
        .args(["--name", "h", "--features"])
        .arg(&out)
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["compare-baselines", "--features"])
        .arg(&out)
        .arg("--head")
        .arg(runs.join("h"))
        .arg("--out")
        .arg(d.path().join("cmp"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("using the head's own hold-out (--val-fraction 0.5"),
        "{t}"
    );
}

// Finding 9: a FIFO or a link to /dev/zero named .jpg is listed in skipped.csv.

#[test]
fn special_files_named_like_images_are_listed_as_skipped() {
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    class_folder(&imgs, 3);
    let fifo = imgs.join("cat/fifo.jpg");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    std::os::unix::fs::symlink("/dev/zero", imgs.join("dog/zero.jpg")).unwrap();
    let o = extract(&tiny(), &imgs, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = fs::read_to_string(out.join("skipped.csv")).unwrap();
    assert!(csv.contains("dog/zero.jpg"), "{csv}");
    if made {
        assert!(csv.contains("cat/fifo.jpg"), "{csv}");
    }
}

// `vggcache cache verify`: exit 0 on a sound cache, 1 naming the file and the way out.

#[test]
fn cache_verify_reports_ok_then_the_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    build(&dir);
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_vggcache"))
            .args(["cache", "verify", "--features"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let o = verify();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("60 rows"), "{}", text(&o));
    let shard = shard_files(&dir)[0].clone();
    let mut b = fs::read(&shard).unwrap();
    b[100] ^= 1;
    fs::write(&shard, b).unwrap();
    let o = verify();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(shard.file_name().unwrap().to_str().unwrap()) && t.contains("--force"),
        "{t}"
    );
}

// Finding 7 end to end: extract on a damaged cache says what it moved and what it redoes.

#[test]
fn extract_repairs_a_damaged_shard_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    class_folder(&imgs, 5);
    assert!(extract(&tiny(), &imgs, &out, &[]).status.success());
    let shard = shard_files(&out)[0].clone();
    let mut b = fs::read(&shard).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x04;
    fs::write(&shard, b).unwrap();
    // Readers refuse, naming the file and the way out.
    let o = vggcache(&["cache", "verify", "--features", out.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("sha256") && t.contains("vggcache extract") && t.contains("--force"),
        "{t}"
    );
    // extract repairs: the shard goes to quarantine/, its images are extracted again.
    let o = extract(&tiny(), &imgs, &out, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("quarantine") && t.contains("will be extracted again"),
        "{t}"
    );
    assert!(
        t.contains("extracted ") && !t.contains("extracted 0 "),
        "{t}"
    );
    assert_eq!(fs::read_dir(out.join("quarantine")).unwrap().count(), 1);
    let o = vggcache(&["cache", "verify", "--features", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Finding 3 at the size that showed it: every bit of the label column chunk of a 600-row
/// legacy shard (no checksum to stop the bytes first). Some of these flips panic inside
/// arrow-buffer (`bit_chunk_iterator.rs:235`, the panic of the issue) and parquet
/// (`bit_util.rs`, `byte_stream_split_decoder.rs`); the reader turns each into an error, the
/// writer quarantines the shard, and training data stays identical. About 30 s in debug.
#[test]
fn label_flips_in_a_600_row_shard_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("p");
    let all = rows("img/", 600, 29);
    let o = WriteOptions {
        row_group_rows: 256,
        compact_below_rows: 0,
        ..WriteOptions::default()
    };
    let mut w = CacheWriter::open_with(&pristine, &identity("m1"), &classes(), false, o).unwrap();
    append(&mut w, &all);
    w.finish().unwrap();
    downgrade_manifest(&pristine);
    let scratch = tmp.path().join("s");
    let name = shard_files(&pristine)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let range = column_chunk(&pristine.join(&name), 2);
    let (mut tried, mut refused) = (0, 0);
    for at in range {
        for bit in 0..8u8 {
            let _ = fs::remove_dir_all(&scratch);
            copy_dir(&pristine, &scratch);
            let p = scratch.join(&name);
            let mut b = fs::read(&p).unwrap();
            b[at] ^= 1 << bit;
            fs::write(&p, b).unwrap();
            tried += 1;
            let stats = std::panic::catch_unwind(|| repair(&scratch, &all))
                .unwrap_or_else(|_| panic!("panic at {at}.{bit}"))
                .unwrap_or_else(|e| panic!("{at}.{bit}: {e}"));
            refused += usize::from(!stats.dropped_shards.is_empty());
            assert_eq!(read(&scratch).unwrap(), expected(&all), "{at}.{bit}");
        }
    }
    println!("600-row label chunk: {tried} flips, {refused} quarantined, 0 panics escaped");
    assert!(refused > 0);
}

/// Reads, with pyarrow, every file `dir/manifest.json` lists (each with its listed row count)
/// and every top-level `*.parquet` a glob sees; asserts no path twice in either. Returns the
/// paths the manifest's files hold.
fn pyarrow_follow(py: &Path, dir: &Path, what: &str) -> usize {
    let code = r#"
import glob, json, os, sys
import pyarrow.parquet as pq
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
paths = []
for s in m["shards"]:
    t = pq.read_table(os.path.join(d, s["file"]))
    assert t.num_rows == s["rows"], (s, t.num_rows)
    paths += t.column("path").to_pylist()
assert len(paths) == len(set(paths)), "a row twice through the manifest"
seen = []
for f in glob.glob(os.path.join(d, "*.parquet")):
    seen += pq.read_table(f, columns=["path"]).column("path").to_pylist()
assert len(seen) == len(set(seen)), "a row twice through a *.parquet glob"
print(len(paths))
"#;
    let o = Command::new(py)
        .arg("-c")
        .arg(code)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{what}: pyarrow following the manifest: {}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// Copies the files of `from` (one level of subfolders) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Issue 30: a SIGKILL at each step of a commit of the one-machine writer (a rewrite that
/// retires a shard, the compaction, a `--force` rebuild's switch) leaves a `manifest.json` whose
/// every listed file pyarrow reads (no file still under `pending/` or `*.staged`), no row twice
/// through the manifest or a `*.parquet` glob; the next `extract` completes the commit.
#[test]
fn a_kill_at_each_commit_step_leaves_a_manifest_pyarrow_can_follow() {
    let test = "integrity::a_kill_at_each_commit_step_leaves_a_manifest_pyarrow_can_follow";
    if common::ort(test).is_none() {
        return;
    }
    let Some(py) = common::python_with(test, &["pyarrow"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let tiny = common::tiny_trunk();
    let all = crate::sharded::images(&d.path().join("all"));
    // Two images fewer: the next run rewrites the shard holding them (a commit that retires it).
    let fewer = d.path().join("fewer");
    fs::create_dir_all(&fewer).unwrap();
    copy_tree(&all, &fewer);
    fs::remove_file(fewer.join("train/cat/cat.0.jpg")).unwrap();
    fs::remove_file(fewer.join("train/dog/dog.3.jpg")).unwrap();
    let mut bases = Vec::new();
    for (name, images, rows) in [("base24", &all, 24), ("base22", &fewer, 22)] {
        let base = d.path().join(name);
        let o = extract(
            &tiny,
            images,
            &base,
            &["--shard-rows", "6", "--batch-size", "6"],
        );
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(pyarrow_follow(&py, &base, name), rows);
        bases.push(base);
    }
    let (base24, base22) = (&bases[0], &bases[1]);
    // (failpoint, cache before, images, flags, rows after the next run)
    let cases: [(&str, &Path, &Path, &[&str], usize); 12] = [
        // Two images gone: their shard is rewritten (a commit that retires it).
        ("commit-intent", base24, &fewer, &[], 22),
        ("commit-retire", base24, &fewer, &[], 22),
        ("commit-promote", base24, &fewer, &[], 22),
        ("commit-list", base24, &fewer, &[], 22),
        // Two new images: appended (commit 1), then merged with the old shard (commit 2).
        ("commit-promote", base22, &all, &[], 24),
        ("commit-list", base22, &all, &[], 24),
        ("commit-retire#2", base22, &all, &[], 24),
        ("commit-list#2", base22, &all, &[], 24),
        // A rebuild from scratch replaces every shard.
        ("rebuild-main", base24, &all, &["--force"], 24),
        ("rebuild-retire", base24, &all, &["--force"], 24),
        ("rebuild-promote", base24, &all, &["--force"], 24),
        ("rebuild-list", base24, &all, &["--force"], 24),
    ];
    for (n, (point, base, images, extra, rows)) in cases.into_iter().enumerate() {
        let cache = d.path().join(format!("case{n}"));
        fs::create_dir_all(&cache).unwrap();
        copy_tree(base, &cache);
        let mut child = Command::new(env!("CARGO_BIN_EXE_vggcache"))
            .args(["extract", "--device", "cpu", "--threads", "1", "--model"])
            .arg(&tiny)
            .arg("--images")
            .arg(images)
            .arg("--out")
            .arg(&cache)
            .args(extra)
            .env(vggcache::failpoint::ENV, format!("{point}:pause"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let name = point.split('#').next().unwrap();
        crate::sharded::wait_for_line(&mut child, &format!("failpoint {name} reached"));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seen = pyarrow_follow(&py, &cache, point);
        assert!(seen <= 24, "{point}: {seen} rows");
        // vggcache's own reader sees the rows before the change or those it commits to, never a
        // rebuild's interim (its main manifest lists nothing until the change completes).
        let before = if base == base24 { 24 } else { 22 };
        if let Ok(c) = vggcache::cache::FeatureCache::open(&cache) {
            assert!(
                c.len() == before || c.len() == rows,
                "{point}: the reader sees {} rows (before {before}, after {rows})",
                c.len()
            );
        }
        // The next run (without --force) completes or abandons the interrupted commit.
        let o = extract(&tiny, images, &cache, &[]);
        assert!(o.status.success(), "{point}: {}", text(&o));
        assert_eq!(pyarrow_follow(&py, &cache, point), rows, "{point}");
        assert!(
            !cache.join("pending").exists()
                || fs::read_dir(cache.join("pending"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{point}: files left under pending/"
        );
    }
}

/// Issue 30: a listed shard rewritten by pyarrow with default settings (its Parquet list child
/// is then named `element`, its items nullable) is valid Parquet of the cache's schema: read,
/// not called corrupt, once the manifest records its new size and sha256.
#[test]
fn a_shard_rewritten_by_pyarrow_with_default_settings_is_read() {
    let test = "integrity::a_shard_rewritten_by_pyarrow_with_default_settings_is_read";
    let Some(py) = common::python_with(test, &["pyarrow"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = build(dir);
    let mpath = dir.join("manifest.json");
    let mut m: vggcache::cache::Manifest =
        serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    let shard = dir.join(&m.shards[0].file);
    let code = r#"
import sys
import pyarrow as pa, pyarrow.parquet as pq
f, dim = sys.argv[1], int(sys.argv[2])
t = pq.read_table(f)
i = t.schema.get_field_index("features")
flat = pa.array(t.column("features").combine_chunks().flatten(), pa.float32())
t = t.set_column(i, "features", pa.FixedSizeListArray.from_arrays(flat, dim))
pq.write_table(t, f)
print(pq.ParquetFile(f).schema)
"#;
    let o = Command::new(&py)
        .arg("-c")
        .arg(code)
        .arg(&shard)
        .arg(DIM.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("element"), "{}", text(&o));
    let bytes = fs::read(&shard).unwrap();
    m.shards[0].bytes = bytes.len() as u64;
    m.shards[0].sha256 = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    m.checksum = Some(m.compute_checksum());
    fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    assert_eq!(read(dir).unwrap(), expected(&all));
}

/// Issue 30: a manifest whose `dim` was edited (checksum recomputed) is refused by readers with
/// the way out "re-run `vggcache extract`", and that way out works without `--force`: the writer
/// treats the edited manifest as damaged and rebuilds it from the intact shards.
#[test]
fn an_edited_dim_is_refused_and_extract_repairs_it_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = build(dir);
    let mpath = dir.join("manifest.json");
    let mut m: vggcache::cache::Manifest =
        serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    m.dim = DIM * 2;
    m.checksum = Some(m.compute_checksum());
    fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let e = FeatureCache::open(dir).map(|_| ()).unwrap_err();
    assert!(says_way_out(&e), "{e}");
    let w = CacheWriter::open_with(dir, &identity("m1"), &classes(), false, opts())
        .expect("the way out the reader named works without --force");
    assert_eq!(w.existing().len(), all.len());
    w.finish().unwrap();
    assert_eq!(read(dir).unwrap(), expected(&all));
}

/// Issue 30: a shard holding one path twice is named as such, not as "also in shard" itself.
#[test]
fn a_path_twice_in_one_shard_is_named_as_such() {
    let test = "integrity::a_path_twice_in_one_shard_is_named_as_such";
    let Some(py) = common::python_with(test, &["pyarrow"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir);
    let mpath = dir.join("manifest.json");
    let mut m: vggcache::cache::Manifest =
        serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    let shard = dir.join(&m.shards[0].file);
    let code = r#"
import sys
import pyarrow as pa, pyarrow.parquet as pq
f = sys.argv[1]
t = pq.read_table(f)
pq.write_table(pa.concat_tables([t, t.slice(0, 1)]), f)
"#;
    let o = Command::new(&py)
        .arg("-c")
        .arg(code)
        .arg(&shard)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let bytes = fs::read(&shard).unwrap();
    m.shards[0].bytes = bytes.len() as u64;
    m.shards[0].rows += 1;
    m.shards[0].sha256 = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    m.checksum = Some(m.compute_checksum());
    fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let e = FeatureCache::open(dir).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("appears twice in this shard"), "{e}");
}

/// `dir/manifest.json` changed by `edit`, its checksum recomputed (an edit that passes it).
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut vggcache::cache::Manifest)) {
    let mpath = dir.join("manifest.json");
    let mut m: vggcache::cache::Manifest =
        serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    edit(&mut m);
    m.checksum = Some(m.compute_checksum());
    fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Issue 30: readers check the manifest against the shards themselves: a manifest edited (its
/// checksum recomputed) to drop a shard that a `*.parquet` glob still reads is refused naming
/// that file; one listing a shard of another identity (its footer fingerprint) is refused.
#[test]
fn an_edited_manifest_cannot_drop_or_swap_a_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build(&a);
    let dropped = {
        let m = FeatureCache::open(&a).unwrap();
        m.manifest().shards[2].file.clone()
    };
    let pristine = tmp.path().join("pristine");
    copy_dir(&a, &pristine);
    edit_manifest(&a, |m| {
        m.shards.remove(2);
    });
    let e = FeatureCache::open(&a).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains(&dropped) && e.contains("not listed"), "{e}");

    // Shard 0 replaced by a shard of another model (same width and classes).
    let _ = fs::remove_dir_all(&a);
    copy_dir(&pristine, &a);
    let other = rows("img/", 20, 23);
    let mut w = CacheWriter::open_with(&b, &identity("m2"), &classes(), false, opts()).unwrap();
    append(&mut w, &other);
    w.finish().unwrap();
    let theirs = FeatureCache::open(&b).unwrap().manifest().shards[0].clone();
    edit_manifest(&a, |m| {
        let file = m.shards[0].file.clone();
        fs::copy(b.join(&theirs.file), a.join(&file)).unwrap();
        m.shards[0] = vggcache::cache::ShardInfo { file, ..theirs };
    });
    let e = FeatureCache::open(&a).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("footer records cache identity"), "{e}");
}
