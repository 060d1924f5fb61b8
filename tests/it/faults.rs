//! Issue 30's seeded fault suite: byte flips, truncations, deletions, checksum-resealed edits of
//! manifest.json / plan.json / part records (hostile names included) and kill -9 of `extract` and
//! `cache commit`, over a one-machine cache and a sharded local root. After each fault the readers
//! run (`cache verify`, `train-head`, a re-run of `extract`) and every case asserts: no panic or
//! abort, no silent change (a refusal names the affected file, or the data read equals the
//! original), no row lost or doubled after a kill and re-run, no file touched outside the root.
//!
//! One `#[test]` per fault kind, all sharing fixtures built once. Every case prints its kind and
//! seed when it fails; `VGGCACHE_FAULTS_ONLY=<seed>` (hex, as printed) runs only that case.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arrow::array::{Array, FixedSizeListArray, Float32Array, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use vggcache::cache::{FeatureCache, Manifest, ShardInfo};

use crate::common::{self, tiny_trunk};

/// The suite's one seed: every case's choices (file, offset, bit, edit, kill time) follow from it.
const SEED: u64 = 0x0030_fa17;
/// A child still running after this long is killed, and the case fails.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// Shards of the sharded root's plan.
const SHARDS: u32 = 2;
/// Images per part in the sharded root's plan (24 images: 4 or so parts per shard).
const PART_ROWS: usize = 3;

// ------------------------------------------------------------------------------------------------
// Child processes, bounded in time.

/// How one child process ended.
struct Ran {
    what: String,
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    /// This suite sent the SIGKILL that ended it (a seeded kill, not a crash).
    killed_by_us: bool,
    out: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// A panic (101), an abort (134), a signal death the suite did not cause, or a timeout:
    /// what no fault may produce.
    fn crash(&self) -> Option<String> {
        if self.timed_out {
            return Some(format!(
                "{} ran past {} s and was killed",
                self.what,
                CHILD_LIMIT.as_secs()
            ));
        }
        match (self.code, self.signal) {
            (Some(c @ (101 | 134)), _) => Some(format!(
                "{} exited {c} (panic/abort): {}",
                self.what,
                tail(&self.out)
            )),
            (None, Some(s)) if !(self.killed_by_us && s == 9) => Some(format!(
                "{} died of signal {s}: {}",
                self.what,
                tail(&self.out)
            )),
            _ => None,
        }
    }

    fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "unknown".into(),
        }
    }
}

/// The last 1,500 characters of `s` (failure messages stay readable).
fn tail(s: &str) -> String {
    let s = s.trim();
    let cut = s.char_indices().rev().nth(1500).map_or(0, |(i, _)| i);
    let t = &s[cut..];
    if cut > 0 {
        format!("…{t}")
    } else {
        t.to_string()
    }
}

/// Runs `cmd` to its end (at most [`CHILD_LIMIT`]); with `kill_after`, SIGKILLs it at that time
/// if it is still running.
fn run_child(what: &str, mut cmd: Command, kill_after: Option<Duration>) -> Ran {
    use std::os::unix::process::ExitStatusExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let (mut sent_kill, mut timed_out) = (false, false);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for a child") {
            break st;
        }
        let now = t0.elapsed();
        if kill_after.is_some_and(|k| now >= k) && !sent_kill {
            let _ = child.kill();
            sent_kill = true;
        } else if now >= CHILD_LIMIT && !timed_out {
            let _ = child.kill();
            timed_out = true;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.join().unwrap_or_default()),
        String::from_utf8_lossy(&err.join().unwrap_or_default())
    );
    Ran {
        what: what.to_string(),
        code: status.code(),
        signal: status.signal(),
        timed_out,
        killed_by_us: sent_kill && !timed_out && status.signal() == Some(9),
        out: text,
    }
}

// ------------------------------------------------------------------------------------------------
// What a cache holds.

/// Every row as read, sorted by path: path, split, label, feature bits.
type Seen = Vec<(String, String, Option<u32>, Vec<u32>)>;

/// A short digest of `s` for messages: rows and sha256 of the rows.
fn describe(s: &Seen) -> String {
    let mut h = Sha256::new();
    for (p, sp, l, f) in s {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(sp.as_bytes());
        h.update(format!("{l:?}").as_bytes());
        for x in f {
            h.update(x.to_le_bytes());
        }
    }
    let paths: Vec<&str> = s.iter().take(3).map(|r| r.0.as_str()).collect();
    format!(
        "{} rows, features sha256 {}…, first paths {paths:?}",
        s.len(),
        &hex::encode(h.finalize())[..12]
    )
}

/// What vggcache's own reader (the code `verify` and `train-head` run) returns for `root`.
fn read_lib(root: &Path) -> Result<Seen, String> {
    let r = std::panic::catch_unwind(|| -> Result<Seen, String> {
        let c = FeatureCache::open(root).map_err(|e| e.to_string())?;
        let d = c.all().map_err(|e| e.to_string())?;
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
        Ok(v)
    });
    r.unwrap_or_else(|_| Err("the library reader panicked".into()))
}

/// Every row of the files `root/manifest.json` lists, read with the parquet crate alone (as
/// pyarrow following the manifest would), sorted by path; rows listed twice stay twice.
fn follow_manifest(root: &Path) -> Result<Seen, String> {
    let r = std::panic::catch_unwind(|| -> Result<Seen, String> {
        let p = root.join("manifest.json");
        let bytes = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let m: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
        let shards = m["shards"]
            .as_array()
            .ok_or("manifest lists no shards array")?;
        let mut rows = Seen::new();
        for s in shards {
            let name = s["file"].as_str().ok_or("a shard without a file name")?;
            let path = root.join(name);
            let file = fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for batch in reader {
                let b = batch.map_err(|e| format!("{}: {e}", path.display()))?;
                let col = |n: &str| {
                    b.column_by_name(n)
                        .cloned()
                        .ok_or(format!("{}: no column {n}", path.display()))
                };
                let strs = |n: &str| -> Result<StringArray, String> {
                    col(n)?
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .cloned()
                        .ok_or(format!("{}: column {n} is not utf8", path.display()))
                };
                let (paths, splits) = (strs("path")?, strs("split")?);
                let labels = col("label")?;
                let labels = labels
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or("label is not uint32")?;
                let feats = col("features")?;
                let feats = feats
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()
                    .ok_or("features is not a fixed-size list")?;
                for i in 0..b.num_rows() {
                    let v = feats.value(i);
                    let v = v
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .ok_or("features are not float32")?;
                    rows.push((
                        paths.value(i).to_string(),
                        splits.value(i).to_string(),
                        (!labels.is_null(i)).then(|| labels.value(i)),
                        v.values().iter().map(|x| x.to_bits()).collect(),
                    ));
                }
            }
        }
        rows.sort();
        Ok(rows)
    });
    r.unwrap_or_else(|_| Err("the parquet crate panicked following the manifest".into()))
}

/// Rows (by split) that `train-head` should report for `s`: (train, val).
fn split_counts(s: &Seen) -> (usize, usize) {
    let train = s.iter().filter(|r| r.1 == "train").count();
    let val = s.iter().filter(|r| r.1 == "val").count();
    (train, val)
}

// ------------------------------------------------------------------------------------------------
// Files.

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for e in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else if ty.is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Regular files under `dir`, relative, `/`-separated, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                walk(base, &p, out);
            } else if ty.is_file() {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(rel);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Every entry under `dir` except `skip` (and what is below it): kind, size, mtime.
type Snapshot = BTreeMap<String, (char, u64, i128)>;

fn snapshot(dir: &Path, skip: &Path) -> Snapshot {
    fn walk(base: &Path, d: &Path, skip: &Path, out: &mut Snapshot) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            let kind = if md.is_dir() {
                'd'
            } else if md.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            let mtime = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(-1, |d| d.as_nanos() as i128);
            let size = if kind == 'd' { 0 } else { md.len() };
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().to_string();
            out.insert(rel, (kind, size, mtime));
            if kind == 'd' {
                walk(base, &p, skip, out);
            }
        }
    }
    let mut s = Snapshot::new();
    walk(dir, dir, skip, &mut s);
    s
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

/// A small real JPEG (colour pattern from `seed`).
fn write_jpeg(path: &Path, seed: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 31) % 256) as u8,
            ((y * 5 + seed * 17) % 256) as u8,
            ((x + y + seed) % 256) as u8,
        ])
    })
    .save(path)
    .unwrap();
}

/// An ImageFolder of 2 classes under `dir`: `train` train and `val` val images each, colours
/// from `base`.
fn image_folder(dir: &Path, train: u32, val: u32, base: u32) {
    for (split, n) in [("train", train), ("val", val)] {
        for (c, class) in ["cat", "dog"].into_iter().enumerate() {
            for i in 0..n {
                let seed = base + i + 100 * c as u32 + if split == "val" { 50 } else { 0 };
                write_jpeg(
                    &dir.join(split).join(class).join(format!("{class}.{i}.jpg")),
                    seed,
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Fixtures, built once per test binary.

/// Which prepared state a case starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Start {
    /// A complete one-machine cache (`extract`).
    OneMachine,
    /// A sharded root with only its plan.
    Planned,
    /// A sharded root whose shards all ran, not committed.
    Ran,
    /// A committed sharded root.
    Committed,
}

impl Start {
    fn sharded(self) -> bool {
        self != Start::OneMachine
    }
}

struct Fixture {
    dir: PathBuf,
    images: PathBuf,
    /// A JPEG in no images folder (the target of hostile plan entries).
    secret: PathBuf,
    /// A valid shard of another cache made by the same trunk (other images): what a reader
    /// following a hostile name would read as data.
    foreign: PathBuf,
    roots: HashMap<Start, PathBuf>,
    /// The one-machine cache's rows, and the committed sharded root's.
    one_machine: Seen,
    sharded: Seen,
    /// Whether `verify` / `train-head` already refuse the untouched state (uncommitted roots).
    baseline_refuses: HashMap<(Start, &'static str), bool>,
    /// Unkilled durations, the ranges of the seeded kill times.
    t_extract: Duration,
    t_force: Duration,
    t_shard: Duration,
    t_commit: Duration,
}

impl Fixture {
    fn root(&self, s: Start) -> &Path {
        &self.roots[&s]
    }

    fn want(&self, s: Start) -> &Seen {
        if s.sharded() {
            &self.sharded
        } else {
            &self.one_machine
        }
    }
}

fn vgg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
}

fn extract_args(images: &Path, out: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = [
        "extract",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--batch-size",
        "1",
        "--shard-rows",
        "3",
        "--model",
    ]
    .iter()
    .map(Into::into)
    .collect();
    v.push(tiny_trunk().into());
    v.push("--images".into());
    v.push(images.into());
    v.push("--out".into());
    v.push(out.into());
    v
}

fn shard_args(root: &Path, images: &Path, k: u32) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = [
        "extract",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--batch-size",
        "1",
        "--plan",
    ]
    .iter()
    .map(Into::into)
    .collect();
    v.push(root.into());
    v.push("--shard".into());
    v.push(format!("{k}/{SHARDS}").into());
    v.push("--model".into());
    v.push(tiny_trunk().into());
    v.push("--images".into());
    v.push(images.into());
    v
}

fn must(r: Ran) -> Ran {
    assert!(r.ok(), "fixture step {} failed: {}", r.what, r.out);
    r
}

fn timed(what: &str, cmd: Command) -> Duration {
    let t0 = Instant::now();
    must(run_child(what, cmd, None));
    t0.elapsed()
}

fn build_fixture() -> Fixture {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    // Fixtures of earlier runs of this binary (statics are never dropped), unless that run is
    // still going.
    for e in fs::read_dir(&base).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("faults-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("faults-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let images = dir.join("images");
    image_folder(&images, 10, 2, 0);
    let secret = dir.join("secret.jpg");
    write_jpeg(&secret, 777);

    // The one-machine cache, and the time an unkilled extract takes.
    let m = dir.join("one-machine");
    let mut c = vgg();
    c.args(extract_args(&images, &m));
    let t_extract = timed("extract (fixture)", c);
    let one_machine = read_lib(&m).expect("the fixture cache reads");
    assert_eq!(one_machine.len(), 24, "{}", describe(&one_machine));
    // A --force rebuild of a copy: the range of kill times for rebuilds.
    let forced = dir.join("forced");
    copy_tree(&m, &forced);
    let mut c = vgg();
    c.args(extract_args(&images, &forced)).arg("--force");
    let t_force = timed("extract --force (fixture)", c);
    fs::remove_dir_all(&forced).unwrap();

    // A foreign shard: same trunk, same classes, other images.
    let other_images = dir.join("other-images");
    image_folder(&other_images, 2, 1, 500);
    let other = dir.join("other-cache");
    let mut c = vgg();
    c.args(extract_args(&other_images, &other));
    must(run_child("extract (foreign cache)", c, None));
    let mf: Manifest =
        serde_json::from_slice(&fs::read(other.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(mf.shards.len(), 1);
    let foreign = dir.join("foreign.parquet");
    fs::copy(other.join(&mf.shards[0].file), &foreign).unwrap();

    // The sharded root: planned, ran, committed.
    let p = dir.join("planned");
    let mut c = vgg();
    c.args(["plan", "--device", "cpu", "--model"])
        .arg(tiny_trunk())
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&p)
        .args([
            "--shards",
            &SHARDS.to_string(),
            "--part-rows",
            &PART_ROWS.to_string(),
        ]);
    must(run_child("plan (fixture)", c, None));
    let r = dir.join("ran");
    copy_tree(&p, &r);
    let mut t_shard = Duration::ZERO;
    for k in 0..SHARDS {
        let mut c = vgg();
        c.args(shard_args(&r, &images, k));
        t_shard = t_shard.max(timed("extract --plan --shard (fixture)", c));
    }
    // A commit takes milliseconds: the longest of three (on copies) sets its kill times.
    let mut t_commit = Duration::ZERO;
    for n in 0..3 {
        let copy = dir.join(format!("commit-timing-{n}"));
        copy_tree(&r, &copy);
        let mut c = vgg();
        c.args(["cache", "commit"]).arg(&copy);
        t_commit = t_commit.max(timed("cache commit (timing)", c));
        fs::remove_dir_all(&copy).unwrap();
    }
    let cm = dir.join("committed");
    copy_tree(&r, &cm);
    let mut c = vgg();
    c.args(["cache", "commit"]).arg(&cm);
    must(run_child("cache commit (fixture)", c, None));
    let sharded = read_lib(&cm).expect("the committed fixture root reads");
    assert_eq!(
        follow_manifest(&cm).as_ref(),
        Ok(&sharded),
        "the parquet crate reads the committed root as vggcache does"
    );
    assert_eq!(sharded.len(), 24, "{}", describe(&sharded));

    let roots = HashMap::from([
        (Start::OneMachine, m),
        (Start::Planned, p),
        (Start::Ran, r),
        (Start::Committed, cm),
    ]);
    let mut baseline_refuses = HashMap::new();
    for (s, root) in &roots {
        let mut c = vgg();
        c.args(["cache", "verify", "--features"]).arg(root);
        let v = run_child("verify (fixture)", c, None);
        let mut c = vgg();
        c.args(["train-head", "--epochs", "1", "--hidden", "4", "--features"])
            .arg(root)
            .arg("--runs-dir")
            .arg(dir.join("runs"))
            .arg("--name")
            .arg(format!("{s:?}"));
        let t = run_child("train-head (fixture)", c, None);
        for r in [&v, &t] {
            assert!(r.crash().is_none(), "{:?}", r.crash());
        }
        if matches!(s, Start::OneMachine | Start::Committed) {
            assert!(v.ok() && t.ok(), "{}\n{}", v.out, t.out);
        }
        baseline_refuses.insert((*s, "verify"), !v.ok());
        baseline_refuses.insert((*s, "train-head"), !t.ok());
    }
    eprintln!(
        "fault suite fixtures in {}: extract {:.2} s, --force {:.2} s, shard {:.2} s, commit {:.2} s",
        dir.display(),
        t_extract.as_secs_f64(),
        t_force.as_secs_f64(),
        t_shard.as_secs_f64(),
        t_commit.as_secs_f64()
    );
    Fixture {
        dir,
        images,
        secret,
        foreign,
        roots,
        one_machine,
        sharded,
        baseline_refuses,
        t_extract,
        t_force,
        t_shard,
        t_commit,
    }
}

/// The shared fixtures, or `None` (a recorded skip) without ONNX Runtime.
fn fixture(test: &str) -> Option<&'static Fixture> {
    common::ort(test)?;
    static FX: OnceLock<Fixture> = OnceLock::new();
    Some(FX.get_or_init(build_fixture))
}

// ------------------------------------------------------------------------------------------------
// One case: a private copy of a prepared root inside a box of neighbours that must not change.

/// ```text
/// <case>/box/root/        the cache or sharded root under test (a copy of a prepared one)
/// <case>/box/images/      the images (read by extract; never written)
/// <case>/box/x.parquet    a valid foreign shard: `../x.parquet` from the root
/// <case>/box/sibling/     copy.parquet (a copy of a root's shard), secret.jpg, notes.txt
/// <case>/tmp/             TMPDIR of every child: must hold nothing afterwards but ONNX
///                         Runtime's own `.ses` session file (1.31 writes one per process)
/// <case>/runs/            train-head's runs (outside the box)
/// ```
struct Case {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    boxd: PathBuf,
    root: PathBuf,
    images: PathBuf,
    trains: usize,
    before: Option<Snapshot>,
}

impl Case {
    fn new(fx: &Fixture, start: Option<Start>) -> Case {
        let tmp = tempfile::Builder::new()
            .prefix("case-")
            .tempdir_in(&fx.dir)
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let boxd = dir.join("box");
        let root = boxd.join("root");
        let images = boxd.join("images");
        copy_tree(&fx.images, &images);
        fs::create_dir_all(boxd.join("sibling")).unwrap();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        fs::copy(&fx.foreign, boxd.join("x.parquet")).unwrap();
        fs::copy(&fx.secret, boxd.join("sibling/secret.jpg")).unwrap();
        fs::write(boxd.join("sibling/notes.txt"), b"not the cache's\n").unwrap();
        fs::write(boxd.join("sibling/copy.parquet"), b"").unwrap();
        if let Some(s) = start {
            copy_tree(fx.root(s), &root);
            // The copy target of hostile names: one of this root's own data files.
            if let Some(first) = data_files(&root).first() {
                fs::copy(root.join(first), boxd.join("sibling/copy.parquet")).unwrap();
            }
        }
        Case {
            _tmp: tmp,
            dir,
            boxd,
            root,
            images,
            trains: 0,
            before: None,
        }
    }

    /// Takes the snapshot of everything outside the root (call after setting up the fault).
    fn seal(&mut self) {
        self.before = Some(snapshot(&self.boxd, &self.root));
    }

    fn cmd(&self) -> Command {
        let mut c = vgg();
        c.env("TMPDIR", self.dir.join("tmp")).current_dir(&self.dir);
        c
    }

    fn verify(&self) -> Ran {
        let mut c = self.cmd();
        c.args(["cache", "verify", "--features"]).arg(&self.root);
        run_child("cache verify", c, None)
    }

    fn train(&mut self) -> Ran {
        self.trains += 1;
        let mut c = self.cmd();
        c.args(["train-head", "--epochs", "1", "--hidden", "4", "--features"])
            .arg(&self.root)
            .arg("--runs-dir")
            .arg(self.dir.join("runs"))
            .arg("--name")
            .arg(format!("h{}", self.trains));
        run_child("train-head", c, None)
    }

    fn extract_cmd(&self, extra: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(extract_args(&self.images, &self.root)).args(extra);
        c
    }

    fn shard_cmd(&self, k: u32) -> Command {
        let mut c = self.cmd();
        c.args(shard_args(&self.root, &self.images, k));
        c
    }

    fn commit_cmd(&self) -> Command {
        let mut c = self.cmd();
        c.args(["cache", "commit"]).arg(&self.root);
        c
    }

    /// The re-run of extraction: `extract` (one machine), or every shard then `cache commit`
    /// (each step runs even when an earlier one refused: a commit must not publish around a
    /// refused shard).
    fn rerun(&self, sharded: bool) -> Vec<Ran> {
        if !sharded {
            return vec![run_child("extract (re-run)", self.extract_cmd(&[]), None)];
        }
        let mut steps: Vec<Ran> = (0..SHARDS)
            .map(|k| {
                run_child(
                    &format!("extract --plan --shard {k}/{SHARDS} (re-run)"),
                    self.shard_cmd(k),
                    None,
                )
            })
            .collect();
        steps.push(run_child("cache commit (re-run)", self.commit_cmd(), None));
        steps
    }

    /// What changed outside the root since [`Case::seal`]: names, sizes, mtimes.
    fn outside_changes(&self) -> Vec<String> {
        let before = self.before.as_ref().expect("Case::seal before the readers");
        let after = snapshot(&self.boxd, &self.root);
        let mut v = Vec::new();
        for (k, b) in before {
            match after.get(k) {
                None => v.push(format!("{k} removed")),
                Some(a) if a != b => v.push(format!("{k} changed {b:?} -> {a:?}")),
                _ => {}
            }
        }
        for k in after.keys().filter(|k| !before.contains_key(*k)) {
            v.push(format!("{k} created"));
        }
        let tmp = self.dir.join("tmp");
        for f in files_under(&tmp).into_iter().filter(|f| f != ".ses") {
            v.push(format!("{} left in TMPDIR", tmp.join(f).display()));
        }
        v
    }
}

/// The data files a root's manifest lists (relative), or its `*.parquet` when it has none.
fn data_files(root: &Path) -> Vec<String> {
    if let Ok(b) = fs::read(root.join("manifest.json")) {
        if let Ok(m) = serde_json::from_slice::<Manifest>(&b) {
            return m.shards.iter().map(|s| s.file.clone()).collect();
        }
    }
    files_under(root)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Faults.

fn flip(root: &Path, rel: &str, at: usize, bit: u8) {
    let p = root.join(rel);
    let mut b = fs::read(&p).unwrap();
    b[at] ^= 1 << bit;
    fs::write(&p, b).unwrap();
}

fn truncate(root: &Path, rel: &str, keep: usize) {
    let p = root.join(rel);
    let b = fs::read(&p).unwrap();
    fs::write(&p, &b[..keep]).unwrap();
}

/// Edits `root/manifest.json` and recomputes its checksum (the edit is caught only by what
/// the readers check beyond the checksum).
fn edit_manifest(root: &Path, f: impl FnOnce(&mut Manifest)) {
    let p = root.join("manifest.json");
    let mut m: Manifest = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut m);
    m.checksum = Some(m.compute_checksum());
    fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Edits `root/plan.json` as JSON; when the plan carries a checksum (`checksum`, sha256 of the
/// compact JSON of the typed plan with `checksum` null, as manifests have), recomputes it so
/// that the edit is not caught merely by the checksum.
fn edit_plan(root: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    use vggcache::extract::sharded::ShardPlan;
    let p = root.join("plan.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    if let Some(old) = v.get("checksum").cloned().filter(|c| !c.is_null()) {
        // Through the typed plan, so the field order (and thus the bytes hashed) is the writer's.
        let typed: ShardPlan = serde_json::from_value(v.clone()).unwrap();
        let compact = serde_json::to_string(&typed).unwrap();
        let recorded = format!("\"checksum\":{old}");
        assert!(
            compact.contains(&recorded),
            "plan.json has a checksum the typed plan does not carry: update edit_plan"
        );
        let unsealed = compact.replacen(&recorded, "\"checksum\":null", 1);
        v["checksum"] = hex::encode(Sha256::digest(unsealed.as_bytes())).into();
    }
    fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// `ShardInfo` describing the file at `path` (its bytes, sha256 and `rows`) under the name `file`.
fn info_of(path: &Path, file: &str, rows: usize) -> ShardInfo {
    ShardInfo {
        file: file.to_string(),
        rows,
        bytes: fs::metadata(path).unwrap().len(),
        sha256: Some(sha256_file(path)),
    }
}

/// The sharded fixture's plan, as planned.
fn fixture_plan(fx: &Fixture) -> vggcache::extract::sharded::ShardPlan {
    let p = fx.root(Start::Planned).join("plan.json");
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// The image paths of part `j` of shard `k` of the fixture's plan.
fn part_paths(fx: &Fixture, k: u32, j: usize) -> Vec<String> {
    fixture_plan(fx).parts(k)[j]
        .iter()
        .map(|e| e.path.clone())
        .collect()
}

/// Rows of the foreign shard (as its own manifest would list them).
fn foreign_rows(fx: &Fixture) -> usize {
    let m: Manifest =
        serde_json::from_slice(&fs::read(fx.dir.join("other-cache/manifest.json")).unwrap())
            .unwrap();
    m.rows()
}

// ------------------------------------------------------------------------------------------------
// The tally of one fault kind, and the rules each case is judged by.

struct Suite {
    kind: &'static str,
    rng: StdRng,
    only: Option<u64>,
    cases: usize,
    refusals: usize,
    identical: usize,
    recoveries: usize,
    unrepaired: usize,
    /// Seeded kills that landed while the child ran (the rest found it finished).
    killed: usize,
    failures: Vec<String>,
    t0: Instant,
}

impl Suite {
    fn new(kind: &'static str) -> Suite {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        let k = u64::from_le_bytes(h.finalize()[..8].try_into().unwrap());
        let only = std::env::var("VGGCACHE_FAULTS_ONLY")
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        Suite {
            kind,
            rng: StdRng::seed_from_u64(SEED ^ k),
            only,
            cases: 0,
            refusals: 0,
            identical: 0,
            recoveries: 0,
            unrepaired: 0,
            killed: 0,
            failures: Vec::new(),
            t0: Instant::now(),
        }
    }

    /// The next case's seed and its own generator; `None` when `VGGCACHE_FAULTS_ONLY` names
    /// another case.
    fn next_case(&mut self) -> Option<(u64, StdRng)> {
        let seed: u64 = self.rng.random();
        if self.only.is_some_and(|o| o != seed) {
            return None;
        }
        self.cases += 1;
        Some((seed, StdRng::seed_from_u64(seed)))
    }

    fn fail(&mut self, id: &str, msg: String) {
        let line = format!("[{} {id}] {msg}", self.kind);
        eprintln!("FAULT-SUITE FAILURE {line}");
        self.failures.push(line);
    }

    /// No panic, abort, foreign signal or timeout.
    fn no_crash(&mut self, id: &str, r: &Ran) -> bool {
        match r.crash() {
            Some(c) => {
                self.fail(id, c);
                false
            }
            None => true,
        }
    }

    /// A reader after a corrupting fault: it refuses naming one of `names` (unless the untouched
    /// state already refuses), or exits 0 on a root that reads as `want` (for `train-head`, with
    /// the row counts of `want` in its output).
    fn judge_reader(
        &mut self,
        id: &str,
        r: &Ran,
        names: &[String],
        now: &Result<Seen, String>,
        want: &Seen,
        baseline_refuses: bool,
    ) {
        if !self.no_crash(id, r) {
            return;
        }
        if r.ok() {
            match now {
                Ok(s) if s == want => self.identical += 1,
                Ok(s) => self.fail(
                    id,
                    format!(
                        "SILENT CHANGE: {} exit 0 on data that differs: read {} vs original {}\n{}",
                        r.what,
                        describe(s),
                        describe(want),
                        tail(&r.out)
                    ),
                ),
                Err(e) => self.fail(
                    id,
                    format!(
                        "SILENT: {} exit 0 but the root does not read ({e})\n{}",
                        r.what,
                        tail(&r.out)
                    ),
                ),
            }
            if r.what == "train-head" {
                if let Ok(s) = now {
                    let (t, v) = split_counts(s);
                    let line = format!("train {t} rows, val {v} rows");
                    if s == want && !r.out.contains(&line) {
                        self.fail(
                            id,
                            format!("train-head exit 0 without `{line}`: {}", tail(&r.out)),
                        );
                    }
                }
            }
            return;
        }
        self.refusals += 1;
        if !baseline_refuses && !names.iter().any(|n| r.out.contains(n.as_str())) {
            self.fail(
                id,
                format!(
                    "{} refused ({}) without naming the affected file (any of {names:?}): {}",
                    r.what,
                    r.status(),
                    tail(&r.out)
                ),
            );
        }
    }

    /// The re-run of extraction after a corrupting fault: the first step that refuses names one
    /// of `names` (later steps may refuse for that reason alone); when the last step exits 0 the
    /// root reads as `want`, or does not read at all (then the next `verify` must refuse, naming
    /// the file). Returns whether the last step exited 0.
    fn judge_rerun(
        &mut self,
        id: &str,
        steps: &[Ran],
        names: &[String],
        after: &Result<Seen, String>,
        want: &Seen,
    ) -> bool {
        let mut refused = false;
        for r in steps {
            if !self.no_crash(id, r) {
                return false;
            }
            if r.ok() || refused {
                continue;
            }
            refused = true;
            self.refusals += 1;
            if !names.iter().any(|n| r.out.contains(n.as_str())) {
                self.fail(
                    id,
                    format!(
                        "{} refused ({}) without naming the affected file (any of {names:?}): {}",
                        r.what,
                        r.status(),
                        tail(&r.out)
                    ),
                );
            }
        }
        let last = steps.last().expect("a re-run has steps");
        if !last.ok() {
            return false;
        }
        match after {
            Ok(s) if s == want => self.recoveries += 1,
            Ok(s) => self.fail(
                id,
                format!(
                    "SILENT CHANGE: {} exit 0 and the root now reads {} vs original {}\n{}",
                    last.what,
                    describe(s),
                    describe(want),
                    tail(&last.out)
                ),
            ),
            Err(_) => self.unrepaired += 1,
        }
        true
    }

    fn judge_outside(&mut self, id: &str, case: &Case) {
        let ch = case.outside_changes();
        if !ch.is_empty() {
            self.fail(id, format!("TOUCHED OUTSIDE THE ROOT: {}", ch.join("; ")));
        }
    }

    /// Prints the kind's one-line summary and fails the test with every failing case.
    fn finish(self) {
        println!(
            "fault suite {}: {} faults{}, {} refusals, {} reads identical, {} recoveries, \
             {} left refused, {} failures, {:.1} s (seed {SEED:#x})",
            self.kind,
            self.cases,
            if self.killed > 0 {
                format!(" ({} killed mid-run)", self.killed)
            } else {
                String::new()
            },
            self.refusals,
            self.identical,
            self.recoveries,
            self.unrepaired,
            self.failures.len(),
            self.t0.elapsed().as_secs_f64()
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} {} faults failed:\n{}",
            self.failures.len(),
            self.cases,
            self.kind,
            self.failures.join("\n")
        );
    }
}

/// One corrupting fault on a copy of `start`: `damage` changes the root; then `verify`,
/// `train-head`, the re-run of extraction and a final `verify` are judged.
fn corruption_case(
    s: &mut Suite,
    fx: &Fixture,
    id: String,
    start: Start,
    names: Vec<String>,
    damage: impl FnOnce(&Case),
) {
    let mut case = Case::new(fx, Some(start));
    damage(&case);
    case.seal();
    let want = fx.want(start);
    let now = read_lib(&case.root);
    let v = case.verify();
    let refuses = |r: &str| fx.baseline_refuses[&(start, r)];
    s.judge_reader(&id, &v, &names, &now, want, refuses("verify"));
    let t = case.train();
    s.judge_reader(&id, &t, &names, &now, want, refuses("train-head"));
    let steps = case.rerun(start.sharded());
    let after = read_lib(&case.root);
    let completed = s.judge_rerun(&id, &steps, &names, &after, want);
    let v = case.verify();
    let still_uncommitted = start.sharded() && !completed && refuses("verify");
    s.judge_reader(&id, &v, &names, &after, want, still_uncommitted);
    s.judge_outside(&id, &case);
}

/// `rel` plus its file name: what a refusal naming the file contains.
fn names_of(rel: &str) -> Vec<String> {
    let base = rel.rsplit('/').next().unwrap_or(rel).to_string();
    let mut v = vec![rel.to_string()];
    if base != rel {
        v.push(base);
    }
    v
}

/// Files of a prepared root a fault may hit (not the lock file: it holds no data).
fn fault_targets(fx: &Fixture, start: Start) -> Vec<String> {
    files_under(fx.root(start))
        .into_iter()
        .filter(|f| !f.ends_with(".lock"))
        .collect()
}

fn flips(kind: &'static str, start: Start, n: usize) {
    let Some(fx) = fixture(&format!("faults::{kind}")) else {
        return;
    };
    let mut s = Suite::new(kind);
    let targets = fault_targets(fx, start);
    for _ in 0..n {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let rel = targets[r.random_range(0..targets.len())].clone();
        let len = fs::metadata(fx.root(start).join(&rel)).unwrap().len() as usize;
        let (at, bit) = (r.random_range(0..len), r.random_range(0..8u8));
        let id = format!("seed {seed:#018x} flip {rel}@{at}.{bit}");
        let names = names_of(&rel);
        corruption_case(&mut s, fx, id, start, names, |c| {
            flip(&c.root, &rel, at, bit)
        });
    }
    s.finish();
}

fn truncations(kind: &'static str, start: Start, n: usize) {
    let Some(fx) = fixture(&format!("faults::{kind}")) else {
        return;
    };
    let mut s = Suite::new(kind);
    let targets = fault_targets(fx, start);
    for _ in 0..n {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let rel = targets[r.random_range(0..targets.len())].clone();
        let len = fs::metadata(fx.root(start).join(&rel)).unwrap().len() as usize;
        let keep = r.random_range(0..len.max(1));
        let id = format!("seed {seed:#018x} truncate {rel} to {keep} of {len}");
        let names = names_of(&rel);
        corruption_case(&mut s, fx, id, start, names, |c| {
            truncate(&c.root, &rel, keep)
        });
    }
    s.finish();
}

fn deletions(kind: &'static str, start: Start, n: usize) {
    let Some(fx) = fixture(&format!("faults::{kind}")) else {
        return;
    };
    let mut s = Suite::new(kind);
    let mut targets = fault_targets(fx, start);
    // Seeded choice of `n` distinct files (all of them when there are fewer).
    let mut order = StdRng::seed_from_u64(SEED);
    let mut picked = Vec::new();
    while picked.len() < n && !targets.is_empty() {
        picked.push(targets.remove(order.random_range(0..targets.len())));
    }
    for rel in picked {
        let Some((seed, _)) = s.next_case() else {
            continue;
        };
        let id = format!("seed {seed:#018x} delete {rel}");
        let names = names_of(&rel);
        corruption_case(&mut s, fx, id, start, names, |c| {
            fs::remove_file(c.root.join(&rel)).unwrap()
        });
    }
    s.finish();
}

/// The manifest edits (checksum recomputed): hostile names and identity changes.
fn manifest_edits(kind: &'static str, start: Start, variants: &[&str]) {
    let Some(fx) = fixture(&format!("faults::{kind}")) else {
        return;
    };
    let mut s = Suite::new(kind);
    let shards = data_files(fx.root(start));
    let foreign_rows = foreign_rows(fx);
    for &variant in variants {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let i = r.random_range(0..shards.len());
        let id = format!("seed {seed:#018x} manifest {variant} on shard entry {i}");
        // A refusal names the manifest, the hostile name it lists, or the shard it is about.
        let mut names = vec!["manifest.json".to_string()];
        match variant {
            "traversal-foreign" | "traversal-stale" | "absolute-foreign" => {
                names.push("x.parquet".into())
            }
            "traversal-copy" | "absolute-copy" => names.push("copy.parquet".into()),
            "nested-traversal" => names.push("sub/../../x.parquet".into()),
            // The manifest's identity against the shards': any data file it lists may be named.
            "model-fingerprint" | "preprocess-mean" | "dim" | "classes-swapped" => {
                names.extend(shards.iter().flat_map(|f| names_of(f)))
            }
            _ => names.extend(names_of(&shards[i])),
        }
        corruption_case(&mut s, fx, id, start, names, |c| {
            let x = c.boxd.join("x.parquet");
            let copy = c.boxd.join("sibling/copy.parquet");
            edit_manifest(&c.root, |m| {
                // `copy.parquet` is a copy of the root's first data file.
                let first = m.shards[0].clone();
                let e = &mut m.shards[i];
                match variant {
                    "traversal-foreign" => *e = info_of(&x, "../x.parquet", foreign_rows),
                    "traversal-stale" => e.file = "../x.parquet".into(),
                    "traversal-copy" => {
                        *e = ShardInfo {
                            file: "../sibling/copy.parquet".into(),
                            ..first
                        }
                    }
                    "nested-traversal" => *e = info_of(&x, "sub/../../x.parquet", foreign_rows),
                    "absolute-foreign" => *e = info_of(&x, &x.display().to_string(), foreign_rows),
                    "absolute-copy" => {
                        *e = ShardInfo {
                            file: copy.display().to_string(),
                            ..first
                        }
                    }
                    "drop-entry" => {
                        m.shards.remove(i);
                    }
                    "duplicate-entry" => {
                        let d = e.clone();
                        m.shards.push(d);
                    }
                    "rows-plus-one" => e.rows += 1,
                    "model-fingerprint" => {
                        m.model.fingerprint = format!("sha256:{}", "ab".repeat(32));
                        m.fingerprint = m.identity().fingerprint();
                    }
                    "preprocess-mean" => {
                        m.preprocess.mean[0] += 1.0;
                        m.fingerprint = m.identity().fingerprint();
                    }
                    "dim" => {
                        m.dim *= 2;
                        m.fingerprint = m.identity().fingerprint();
                    }
                    "classes-swapped" => m.classes.reverse(),
                    other => panic!("unknown manifest edit {other}"),
                }
            });
        });
    }
    s.finish();
}

const MANIFEST_VARIANTS: &[&str] = &[
    "traversal-foreign",
    "traversal-stale",
    "traversal-copy",
    "nested-traversal",
    "absolute-foreign",
    "absolute-copy",
    "drop-entry",
    "duplicate-entry",
    "rows-plus-one",
    "model-fingerprint",
    "preprocess-mean",
    "dim",
    "classes-swapped",
];

// ------------------------------------------------------------------------------------------------
// Kills.

/// After a kill: a reader exits 0 only on rows that are each exactly an original row (no row
/// twice; with `whole`, all of them), else it refuses (no file to name: the state is the kill's).
fn judge_after_kill(
    s: &mut Suite,
    id: &str,
    r: &Ran,
    now: &Result<Seen, String>,
    want: &Seen,
    whole: bool,
) {
    if !s.no_crash(id, r) {
        return;
    }
    if !r.ok() {
        s.refusals += 1;
        return;
    }
    match now {
        Ok(got) if whole && got != want => s.fail(
            id,
            format!(
                "SILENT CHANGE after kill: {} exit 0 on {} vs original {}",
                r.what,
                describe(got),
                describe(want)
            ),
        ),
        Ok(got) => {
            let orig: HashSet<&(String, String, Option<u32>, Vec<u32>)> = want.iter().collect();
            let mut seen = HashSet::new();
            let bad: Vec<&str> = got
                .iter()
                .filter(|row| !orig.contains(row) || !seen.insert(row.0.clone()))
                .map(|row| row.0.as_str())
                .collect();
            if bad.is_empty() {
                s.identical += 1;
            } else {
                s.fail(
                    id,
                    format!(
                        "SILENT CHANGE after kill: {} exit 0 with rows not in the original or twice: {bad:?}",
                        r.what
                    ),
                );
            }
        }
        Err(e) => s.fail(
            id,
            format!(
                "SILENT: {} exit 0 after the kill but the root does not read: {e}",
                r.what
            ),
        ),
    }
}

/// After the kill and the readers: the re-run must exit 0 and leave every image exactly once
/// (vggcache's reader and the parquet crate following the manifest agree with the original).
fn judge_recovery(s: &mut Suite, id: &str, steps: &[Ran], root: &Path, want: &Seen) {
    for r in steps {
        if !s.no_crash(id, r) {
            return;
        }
    }
    let last = steps.last().expect("steps");
    if !last.ok() {
        s.fail(
            id,
            format!(
                "re-run after the kill failed: {} {}: {}",
                last.what,
                last.status(),
                tail(&last.out)
            ),
        );
        return;
    }
    let lib = read_lib(root);
    let raw = follow_manifest(root);
    match (&lib, &raw) {
        (Ok(a), Ok(b)) if a == want && b == want => s.recoveries += 1,
        _ => {
            let d = |x: &Result<Seen, String>| match x {
                Ok(v) => describe(v),
                Err(e) => format!("error: {e}"),
            };
            s.fail(
                id,
                format!(
                    "ROWS LOST OR DOUBLED after kill + re-run: vggcache reads {}, the manifest's \
                     files hold {}, original {}",
                    d(&lib),
                    d(&raw),
                    describe(want)
                ),
            );
        }
    }
}

/// The seeded kill time: a fraction of an unkilled run of the same command, from a quarter of it
/// (process start and ONNX Runtime's set-up take most of a run on the tiny trunk) to a little past
/// its end.
fn kill_time(r: &mut StdRng, full: Duration) -> (f64, Duration) {
    let f: f64 = r.random_range(0.25..1.1);
    (f, full.mul_f64(f))
}

// ------------------------------------------------------------------------------------------------
// The tests: one per fault kind.

#[test]
fn one_machine_byte_flips() {
    flips("one_machine_byte_flips", Start::OneMachine, 40);
}

#[test]
fn one_machine_truncations() {
    truncations("one_machine_truncations", Start::OneMachine, 10);
}

#[test]
fn one_machine_deletions() {
    deletions("one_machine_deletions", Start::OneMachine, 3);
}

#[test]
fn one_machine_manifest_edits() {
    manifest_edits(
        "one_machine_manifest_edits",
        Start::OneMachine,
        MANIFEST_VARIANTS,
    );
}

#[test]
fn one_machine_kill_extract() {
    let Some(fx) = fixture("faults::one_machine_kill_extract") else {
        return;
    };
    let mut s = Suite::new("one_machine_kill_extract");
    let want = fx.want(Start::OneMachine);
    // A first extract into an empty root, then a `--force` rebuild of a complete cache.
    for (label, from, full, extra, whole) in [
        ("fresh extract", None, fx.t_extract, &[][..], false),
        (
            "extract --force",
            Some(Start::OneMachine),
            fx.t_force,
            &["--force"][..],
            true,
        ),
    ] {
        let n = if from.is_none() { 10 } else { 6 };
        for _ in 0..n {
            let Some((seed, mut r)) = s.next_case() else {
                continue;
            };
            let (f, at) = kill_time(&mut r, full);
            let id = format!(
                "seed {seed:#018x} kill -9 {label} at {:.0} ms ({f:.2} of a run)",
                at.as_secs_f64() * 1e3
            );
            let mut case = Case::new(fx, from);
            case.seal();
            let k = run_child(label, case.extract_cmd(extra), Some(at));
            if !s.no_crash(&id, &k) {
                continue;
            }
            s.killed += usize::from(k.killed_by_us);
            let id = format!(
                "{id} ({})",
                if k.killed_by_us {
                    "killed"
                } else {
                    "it finished first"
                }
            );
            let now = read_lib(&case.root);
            let v = case.verify();
            judge_after_kill(&mut s, &id, &v, &now, want, whole);
            let t = case.train();
            judge_after_kill(&mut s, &id, &t, &now, want, whole);
            let steps = case.rerun(false);
            judge_recovery(&mut s, &id, &steps, &case.root, want);
            s.judge_outside(&id, &case);
        }
    }
    s.finish();
}

#[test]
fn sharded_byte_flips() {
    flips("sharded_byte_flips", Start::Committed, 40);
}

#[test]
fn sharded_truncations() {
    truncations("sharded_truncations", Start::Committed, 10);
}

#[test]
fn sharded_deletions() {
    deletions("sharded_deletions", Start::Committed, 10);
}

#[test]
fn sharded_manifest_edits() {
    manifest_edits(
        "sharded_manifest_edits",
        Start::Committed,
        &[
            "traversal-foreign",
            "traversal-stale",
            "nested-traversal",
            "absolute-foreign",
            "absolute-copy",
            "drop-entry",
            "duplicate-entry",
            "model-fingerprint",
            "classes-swapped",
        ],
    );
}

/// Plan edits (checksum recomputed when plans carry one): hostile entry paths before the shards
/// run; shard counts, entries moved or doubled after they ran, before the commit.
#[test]
fn sharded_plan_edits() {
    let Some(fx) = fixture("faults::sharded_plan_edits") else {
        return;
    };
    let mut s = Suite::new("sharded_plan_edits");
    let n_entries = fx.sharded.len();
    let cases: &[(Start, &str)] = &[
        (Start::Planned, "entry-traversal"),
        (Start::Planned, "entry-absolute"),
        (Start::Planned, "entry-nested-traversal"),
        (Start::Planned, "entry-added-outside"),
        (Start::Planned, "entry-in-two-shards"),
        (Start::Ran, "shards-1"),
        (Start::Ran, "shards-0"),
        (Start::Ran, "shards-3"),
        (Start::Ran, "entry-traversal"),
        (Start::Ran, "entry-in-two-shards"),
    ];
    for &(start, variant) in cases {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let i = r.random_range(0..n_entries);
        let id = format!("seed {seed:#018x} plan {variant} (entry {i}) on the {start:?} root");
        let hostile = match variant {
            "entry-traversal" | "entry-added-outside" => Some("../sibling/secret.jpg"),
            "entry-nested-traversal" => Some("train/cat/../../../sibling/secret.jpg"),
            _ => None,
        };
        // `plan.json`, or "the plan at ROOT" as `--shard` errors name it, or the hostile entry.
        let mut names = vec!["plan.json".to_string(), "the plan at".to_string()];
        names.extend(hostile.map(String::from));
        if variant == "entry-absolute" {
            names.push("secret.jpg".into());
        }
        // A reconciling commit names the images it cannot account for: those of the edited
        // entry, or (shard count edits) any planned image.
        if variant == "entry-in-two-shards" {
            names.push(fixture_plan(fx).entries[i].path.clone());
        }
        if variant.starts_with("shards-") {
            names.extend(fixture_plan(fx).entries.iter().map(|e| e.path.clone()));
        }
        let secret_hash = sha256_file(&fx.secret);
        corruption_case(&mut s, fx, id, start, names, |c| {
            let abs = c.boxd.join("sibling/secret.jpg").display().to_string();
            edit_plan(&c.root, |v| {
                let entries = v["entries"].as_array_mut().unwrap();
                let shard_of = |p: &str| vggcache::extract::sharded::shard_of(p, SHARDS);
                let point = |e: &mut serde_json::Value, p: &str| {
                    e["path"] = p.into();
                    e["content_hash"] = secret_hash.clone().into();
                    e["shard"] = shard_of(p).into();
                };
                match variant {
                    "entry-traversal" => point(&mut entries[i], "../sibling/secret.jpg"),
                    "entry-nested-traversal" => {
                        point(&mut entries[i], "train/cat/../../../sibling/secret.jpg")
                    }
                    "entry-absolute" => point(&mut entries[i], &abs),
                    "entry-added-outside" => {
                        let mut e = entries[i].clone();
                        point(&mut e, "../sibling/secret.jpg");
                        entries.insert(0, e);
                    }
                    "entry-in-two-shards" => {
                        let mut e = entries[i].clone();
                        let other = (e["shard"].as_u64().unwrap() + 1) % u64::from(SHARDS);
                        e["shard"] = other.into();
                        entries.insert(i + 1, e);
                    }
                    "shards-1" => v["shards"] = 1.into(),
                    "shards-0" => v["shards"] = 0.into(),
                    "shards-3" => v["shards"] = 3.into(),
                    other => panic!("unknown plan edit {other}"),
                }
            });
        });
    }
    s.finish();
}

/// Part record edits after the shards ran (the part's record and its copy in the shard's
/// commit record both changed, as a consistent forgery would): hostile names, another shard's
/// part, a missing part, a dropped part.
#[test]
fn sharded_record_edits() {
    let Some(fx) = fixture("faults::sharded_record_edits") else {
        return;
    };
    let mut s = Suite::new("sharded_record_edits");
    let ran = fx.root(Start::Ran);
    let commit0 = "records/shard-00000/commit.json";
    let commit1 = "records/shard-00001/commit.json";
    let parts_of = |rel: &str| -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(ran.join(rel)).unwrap()).unwrap();
        v["parts"].as_array().unwrap().clone()
    };
    let n0 = parts_of(commit0).len();
    let other_part = parts_of(commit1)[0]["file"].clone();
    let foreign_rows = foreign_rows(fx);
    for variant in [
        "traversal",
        "absolute",
        "nested-traversal",
        "other-shards-part",
        "missing-part",
        "dropped-part",
    ] {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let j = r.random_range(0..n0);
        let id = format!("seed {seed:#018x} record {variant} on shard 0 part {j}");
        let record = format!("records/shard-00000/part-{j:05}.json");
        let hostile = match variant {
            "traversal" => Some("../x.parquet".to_string()),
            "nested-traversal" => Some("parts/shard-00000/../../../x.parquet".to_string()),
            "missing-part" => Some(format!("parts/shard-00000/part-{j:05}-gone.parquet")),
            _ => None,
        };
        let mut names = vec!["commit.json".to_string(), record.clone()];
        names.extend(names_of(&record));
        names.extend(hostile.clone());
        if variant == "absolute" {
            names.push("x.parquet".into());
        }
        // A reconciling commit names the images listed twice or not at all.
        if variant == "other-shards-part" {
            names.push(other_part["file"].as_str().unwrap().to_string());
            names.extend(part_paths(fx, 1, 0));
        }
        if variant == "dropped-part" {
            names.extend(part_paths(fx, 0, j));
        }
        let other_part = other_part.clone();
        corruption_case(&mut s, fx, id, Start::Ran, names, |c| {
            let x = c.boxd.join("x.parquet");
            let file: Option<serde_json::Value> = match variant {
                "traversal" | "nested-traversal" | "missing-part" => Some(
                    serde_json::to_value(info_of(&x, hostile.as_deref().unwrap(), foreign_rows))
                        .unwrap(),
                ),
                "absolute" => Some(
                    serde_json::to_value(info_of(&x, &x.display().to_string(), foreign_rows))
                        .unwrap(),
                ),
                "other-shards-part" => Some(other_part.clone()),
                _ => None,
            };
            let p = c.root.join(commit0);
            let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            let parts = v["parts"].as_array_mut().unwrap();
            match &file {
                Some(f) => {
                    parts[j]["file"] = f.clone();
                    let rp = c.root.join(&record);
                    let mut rec: serde_json::Value =
                        serde_json::from_slice(&fs::read(&rp).unwrap()).unwrap();
                    rec["file"] = f.clone();
                    fs::write(&rp, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
                }
                None => {
                    parts.remove(j);
                }
            }
            fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        });
    }
    s.finish();
}

#[test]
fn sharded_kill_shard_extract() {
    let Some(fx) = fixture("faults::sharded_kill_shard_extract") else {
        return;
    };
    let mut s = Suite::new("sharded_kill_shard_extract");
    let want = fx.want(Start::Planned);
    for _ in 0..12 {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let k = r.random_range(0..SHARDS);
        let (f, at) = kill_time(&mut r, fx.t_shard);
        let id = format!(
            "seed {seed:#018x} kill -9 extract --plan --shard {k}/{SHARDS} at {:.0} ms ({f:.2} of a run)",
            at.as_secs_f64() * 1e3
        );
        let mut case = Case::new(fx, Some(Start::Planned));
        case.seal();
        let killed = run_child("extract --plan --shard", case.shard_cmd(k), Some(at));
        if !s.no_crash(&id, &killed) {
            continue;
        }
        s.killed += usize::from(killed.killed_by_us);
        let id = format!(
            "{id} ({})",
            if killed.killed_by_us {
                "killed"
            } else {
                "it finished first"
            }
        );
        let now = read_lib(&case.root);
        let v = case.verify();
        judge_after_kill(&mut s, &id, &v, &now, want, true);
        let t = case.train();
        judge_after_kill(&mut s, &id, &t, &now, want, true);
        let steps = case.rerun(true);
        judge_recovery(&mut s, &id, &steps, &case.root, want);
        let v = case.verify();
        let after = read_lib(&case.root);
        judge_after_kill(&mut s, &id, &v, &after, want, true);
        s.judge_outside(&id, &case);
    }
    s.finish();
}

/// kill -9 of `cache commit` at seeded times: the manifest is absent or complete, and the
/// parquet crate following it reads every row (pyarrow's view); a re-run commits once.
#[test]
fn sharded_kill_commit() {
    let Some(fx) = fixture("faults::sharded_kill_commit") else {
        return;
    };
    let mut s = Suite::new("sharded_kill_commit");
    let want = fx.want(Start::Ran);
    for _ in 0..16 {
        let Some((seed, mut r)) = s.next_case() else {
            continue;
        };
        let (f, at) = kill_time(&mut r, fx.t_commit);
        let id = format!(
            "seed {seed:#018x} kill -9 cache commit at {:.1} ms ({f:.2} of a run)",
            at.as_secs_f64() * 1e3
        );
        let mut case = Case::new(fx, Some(Start::Ran));
        case.seal();
        let killed = run_child("cache commit", case.commit_cmd(), Some(at));
        if !s.no_crash(&id, &killed) {
            continue;
        }
        s.killed += usize::from(killed.killed_by_us);
        let id = format!(
            "{id} ({})",
            if killed.killed_by_us {
                "killed"
            } else {
                "it finished first"
            }
        );
        if case.root.join("manifest.json").exists() {
            match follow_manifest(&case.root) {
                Ok(got) if &got == want => {}
                Ok(got) => s.fail(
                    &id,
                    format!(
                        "HALF-VISIBLE COMMIT: the manifest's files hold {} vs original {}",
                        describe(&got),
                        describe(want)
                    ),
                ),
                Err(e) => s.fail(
                    &id,
                    format!("HALF-VISIBLE COMMIT: following manifest.json fails: {e}"),
                ),
            }
        }
        let now = read_lib(&case.root);
        let v = case.verify();
        judge_after_kill(&mut s, &id, &v, &now, want, true);
        let t = case.train();
        judge_after_kill(&mut s, &id, &t, &now, want, true);
        let steps = case.rerun(true);
        judge_recovery(&mut s, &id, &steps, &case.root, want);
        s.judge_outside(&id, &case);
    }
    s.finish();
}
