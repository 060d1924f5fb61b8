//! Sharded extraction end to end through the binary, on a local root (this file) and on a real S3
//! server (`s3.rs` runs the same scenarios): plan + shards + commit equal a one-machine run, a
//! SIGKILLed shard resumes without a duplicate row and `verify` names its orphan, two attempts of
//! one shard commit once. The tiny trunk fixture keeps each run to seconds.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, FixedSizeListArray, Float32Array, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{self, text, tiny_trunk};

/// Where a scenario writes: a local folder, or a prefix on the test's S3 server with the
/// `AWS_*` settings its processes need.
pub struct Root {
    pub url: String,
    pub env: Vec<(String, String)>,
}

impl Root {
    pub fn local(dir: &Path) -> Root {
        Root {
            url: dir.display().to_string(),
            env: Vec::new(),
        }
    }

    /// `vggcache ARGS` with this root's environment.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vggcache"));
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `vggcache ARGS`, which must succeed; its output as text.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let o = self.cmd(args).output().expect("run vggcache");
        let t = text(&o);
        assert!(
            o.status.success(),
            "vggcache {:?} failed: {t}",
            self.show(args)
        );
        t
    }

    fn show<S: AsRef<OsStr>>(&self, args: &[S]) -> Vec<String> {
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect()
    }

    /// The storage API on this root (to look at parts and records as a reader would).
    pub fn store(&self) -> Box<dyn vggcache::storage::Storage> {
        vggcache::storage::open_with(&self.url, &self.env).expect("open the root")
    }

    /// `plan` of `images` into `shards` shards of parts of `part_rows` images.
    pub fn plan(&self, images: &Path, shards: u32, part_rows: usize) -> String {
        let tiny = tiny_trunk();
        self.ok(&[
            OsStr::new("plan"),
            OsStr::new("--device"),
            OsStr::new("cpu"),
            OsStr::new("--model"),
            tiny.as_os_str(),
            OsStr::new("--images"),
            images.as_os_str(),
            OsStr::new("--out"),
            OsStr::new(&self.url),
            OsStr::new("--shards"),
            OsStr::new(&shards.to_string()),
            OsStr::new("--part-rows"),
            OsStr::new(&part_rows.to_string()),
        ])
    }

    /// `extract --plan ROOT --shard K/N` on the tiny trunk, not yet started.
    pub fn shard(&self, k: u32, n: u32, extra: &[&str]) -> Command {
        let mut c = self.cmd(&[
            "extract",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--plan",
            &self.url,
            "--shard",
        ]);
        c.arg(format!("{k}/{n}"))
            .arg("--model")
            .arg(tiny_trunk())
            .args(extra);
        c
    }

    /// Runs every shard of `n` (which must succeed), then `cache commit`.
    pub fn all_shards_and_commit(&self, n: u32, extra: &[&str]) -> String {
        for k in 0..n {
            let o = self.shard(k, n, extra).output().unwrap();
            assert!(o.status.success(), "shard {k}/{n}: {}", text(&o));
        }
        self.ok(&["cache", "commit", &self.url])
    }

    /// The committed rows: read in place for a local root, after `cache pull` for S3.
    pub fn rows(&self, scratch: &Path) -> Vec<Row> {
        if self.env.is_empty() {
            return table(Path::new(&self.url));
        }
        let to = scratch.join(format!("pulled-{}", rand_suffix()));
        self.ok(&[
            OsStr::new("cache"),
            OsStr::new("pull"),
            OsStr::new(&self.url),
            OsStr::new("--to"),
            to.as_os_str(),
        ]);
        table(&to)
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// One cached row as stored: path, split, label, content hash, the features' bit patterns.
pub type Row = (String, String, Option<u32>, String, Vec<u32>);

/// Every row of the files `dir/manifest.json` lists, read with the parquet crate (not
/// vggcache's reader), sorted by path; no path may appear twice.
pub fn table(dir: &Path) -> Vec<Row> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut rows = Vec::new();
    for s in m["shards"].as_array().unwrap() {
        let file = File::open(dir.join(s["file"].as_str().unwrap())).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let strs = |n: &str| {
                col(n)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let (paths, splits, hashes) = (strs("path"), strs("split"), strs("content_hash"));
            let labels = col("label");
            let labels = labels.as_any().downcast_ref::<UInt32Array>().unwrap();
            let feats = col("features");
            let feats = feats.as_any().downcast_ref::<FixedSizeListArray>().unwrap();
            for i in 0..b.num_rows() {
                let v = feats.value(i);
                let v = v.as_any().downcast_ref::<Float32Array>().unwrap();
                rows.push((
                    paths.value(i).to_string(),
                    splits.value(i).to_string(),
                    (!labels.is_null(i)).then(|| labels.value(i)),
                    hashes.value(i).to_string(),
                    v.values().iter().map(|x| x.to_bits()).collect(),
                ));
            }
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let unique: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        unique.len(),
        rows.len(),
        "a row is listed twice in {}",
        dir.display()
    );
    rows
}

/// Asserts equal rows: paths, splits, labels and content hashes exactly; features bit-equal
/// when `tol` is `None`, else within `tol` of the largest |value|. Returns whether every
/// feature was bit-equal.
pub fn assert_rows(got: &[Row], want: &[Row], tol: Option<f32>, what: &str) -> bool {
    let key = |r: &[Row]| {
        r.iter()
            .map(|x| (x.0.clone(), x.1.clone(), x.2, x.3.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        key(got),
        key(want),
        "{what}: path, split, label, content hash"
    );
    assert!(!want.is_empty(), "{what}: no rows");
    let mut bit_equal = true;
    for (a, b) in got.iter().zip(want) {
        if a.4 == b.4 {
            continue;
        }
        bit_equal = false;
        let Some(tol) = tol else {
            panic!("{what}: features of {} differ (bit-equality expected)", a.0);
        };
        let f = |v: &[u32]| v.iter().map(|x| f32::from_bits(*x)).collect::<Vec<_>>();
        let (x, y) = (f(&a.4), f(&b.4));
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = x
            .iter()
            .zip(&y)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= tol * scale,
            "{what}: {} differs by {diff} (scale {scale})",
            a.0
        );
    }
    bit_equal
}

/// A small real JPEG (colour pattern from `seed`).
fn write_jpeg(path: &Path, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 31) % 256) as u8,
            ((y * 5 + seed * 17) % 256) as u8,
            ((x + y + seed) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

/// An ImageFolder of 2 classes: 10 train and 2 val images each (24 in all).
pub fn images(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    for (split, n) in [("train", 10), ("val", 2)] {
        for (c, class) in ["cat", "dog"].into_iter().enumerate() {
            for i in 0..n {
                let seed = i + 100 * c as u32 + if split == "val" { 50 } else { 0 };
                write_jpeg(
                    &root
                        .join(split)
                        .join(class)
                        .join(format!("{class}.{i}.jpg")),
                    seed,
                );
            }
        }
    }
    root
}

/// The one-machine cache of `images` at `--batch-size batch` (rows as stored).
pub fn one_machine(dir: &Path, images: &Path, batch: &str) -> Vec<Row> {
    let out = dir.join(format!("one-b{batch}"));
    let o = common::extract(&tiny_trunk(), images, &out, &["--batch-size", batch]);
    assert!(o.status.success(), "{}", text(&o));
    table(&out)
}

/// Scenario 1: plan + 4 shards + commit equals the one-machine run: bit-equal at batch size 1;
/// at the default batch size within 1e-6 (and says whether bit-equal). Repeated shard runs and
/// commits are no-ops; `verify` passes with no orphan.
pub fn equivalence(root: &Root, root2: &Root, dir: &Path) {
    let imgs = images(dir);
    let t = root.plan(&imgs, 4, 3);
    assert!(t.contains("24 images in 4 shards"), "{t}");
    let t = root.all_shards_and_commit(4, &["--batch-size", "1"]);
    assert!(
        t.contains("committed: 4 shards") && t.contains("24 rows"),
        "{t}"
    );
    assert_rows(
        &root.rows(dir),
        &one_machine(dir, &imgs, "1"),
        None,
        "batch size 1",
    );
    // A finished shard and a repeated commit change nothing.
    let o = root.shard(2, 4, &[]).output().unwrap();
    assert!(
        o.status.success() && text(&o).contains("already committed"),
        "{}",
        text(&o)
    );
    let t = root.ok(&["cache", "commit", &root.url]);
    assert!(t.contains("already committed (same parts)"), "{t}");
    let t = root.ok(&["cache", "verify", "--features", &root.url]);
    assert!(
        t.contains("24 rows") && t.contains("orphaned parts: none"),
        "{t}"
    );

    root2.plan(&imgs, 4, 3);
    root2.all_shards_and_commit(4, &[]);
    let default_batch = vggcache::extract::ExtractConfig::default()
        .batch_size
        .to_string();
    let bit_equal = assert_rows(
        &root2.rows(dir),
        &one_machine(dir, &imgs, &default_batch),
        Some(1e-6),
        "default batch size",
    );
    eprintln!(
        "sharded vs one-machine at the default batch size ({default_batch}): {}",
        if bit_equal {
            "bit-equal (ONNX Runtime CPU is batch-invariant on this trunk)"
        } else {
            "within 1e-6, not bit-equal"
        }
    );
}

/// Reads `child`'s stderr until a line contains `needle` (or 120 s pass); the lines read.
pub fn wait_for_line(child: &mut std::process::Child, needle: &str) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(&needle) {
                let _ = tx.send((true, seen.clone()));
            }
        }
        let _ = tx.send((false, seen));
    });
    let start = Instant::now();
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok((true, seen)) => seen,
        Ok((false, seen)) => panic!("child ended before {:?}: {seen}", "failpoint"),
        Err(_) => panic!("no failpoint line after {:?}", start.elapsed()),
    }
}

/// Scenario 2: shard 0 is SIGKILLed after its first part is claimed, while its second part file
/// exists unclaimed; the rerun reuses part 0, redoes part 1; the committed rows equal the
/// one-machine run with no row twice; `verify` names the orphan, `gc` deletes it.
pub fn kill_and_resume(root: &Root, dir: &Path) {
    let imgs = images(dir);
    root.plan(&imgs, 2, 2);
    let mut child = root
        .shard(0, 2, &["--batch-size", "1"])
        .env(vggcache::failpoint::ENV, "part-written#2:pause")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let seen = wait_for_line(&mut child, "failpoint part-written reached");
    let store = root.store();
    let keys = |prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect()
    };
    // Mid-shard, polled: two part files, one record, no commit.
    let parts = keys("parts/shard-00000");
    let records = keys("records/shard-00000");
    assert_eq!(parts.len(), 2, "{parts:?} {seen}");
    assert_eq!(
        records,
        vec!["records/shard-00000/part-00000.json".to_string()]
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let orphan = parts
        .iter()
        .find(|p| p.contains("/part-00001-"))
        .expect("the unclaimed second part")
        .clone();

    let o = root.shard(0, 2, &["--batch-size", "1"]).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("1 reused") && t.contains("committed by this attempt"),
        "{t}"
    );
    root.all_shards_and_commit(2, &["--batch-size", "1"]);
    let want = one_machine(dir, &imgs, "1");
    assert_rows(&root.rows(dir), &want, None, "after kill and resume");

    let t = root.ok(&["cache", "verify", "--features", &root.url]);
    assert!(t.contains("orphaned parts") && t.contains(&orphan), "{t}");
    let t = root.ok(&["cache", "gc", &root.url]);
    assert!(
        t.contains("deleted 1 orphaned part") && t.contains(&orphan),
        "{t}"
    );
    let t = root.ok(&["cache", "verify", "--features", &root.url]);
    assert!(t.contains("orphaned parts: none"), "{t}");
    assert_rows(&root.rows(dir), &want, None, "after gc");
}

/// Scenario 3: two attempts of one shard at the same time both exit 0; exactly one creates the
/// commit record; the result has no row twice and equals the one-machine run.
pub fn two_attempts(root: &Root, dir: &Path) {
    let imgs = images(dir);
    root.plan(&imgs, 2, 2);
    let spawn = || {
        root.shard(0, 2, &["--batch-size", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let won = [&a, &b]
        .iter()
        .filter(|o| text(o).contains("committed by this attempt"))
        .count();
    let lost = [&a, &b]
        .iter()
        .filter(|o| text(o).contains("already committed by attempt"))
        .count();
    assert_eq!((won, lost), (1, 1), "{}\n{}", text(&a), text(&b));
    let o = root.shard(1, 2, &["--batch-size", "1"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    root.ok(&["cache", "commit", &root.url]);
    assert_rows(
        &root.rows(dir),
        &one_machine(dir, &imgs, "1"),
        None,
        "two attempts",
    );
}

#[test]
fn plan_shards_commit_equal_one_machine_run() {
    if common::ort("sharded::plan_shards_commit_equal_one_machine_run").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (r1, r2) = (
        Root::local(&d.path().join("root1")),
        Root::local(&d.path().join("root2")),
    );
    equivalence(&r1, &r2, d.path());
    // The committed root opens like any cache: train-head reads it.
    let o = r1
        .cmd(&[
            "train-head",
            "--features",
            &r1.url,
            "--epochs",
            "2",
            "--hidden",
            "8,8",
            "--name",
            "s",
        ])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.path().join("runs/s").is_dir());
}

#[test]
fn killed_shard_resumes_and_verify_names_the_orphan() {
    if common::ort("sharded::killed_shard_resumes_and_verify_names_the_orphan").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    kill_and_resume(&Root::local(&d.path().join("root")), d.path());
}

#[test]
fn two_attempts_of_one_shard_commit_once() {
    if common::ort("sharded::two_attempts_of_one_shard_commit_once").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    two_attempts(&Root::local(&d.path().join("root")), d.path());
}

#[test]
fn bad_shard_and_missing_plan_are_clear_errors() {
    if common::ort("sharded::bad_shard_and_missing_plan_are_clear_errors").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = Root::local(&d.path().join("root"));
    let o = root.shard(0, 2, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no plan here"), "{}", text(&o));
    root.plan(&images(d.path()), 2, 4);
    let o = root.shard(1, 3, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("which has 2 shards"), "{}", text(&o));
    // Commit before every shard ran: refused, naming the missing shards.
    let o = root.shard(0, 2, &[]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = root.cmd(&["cache", "commit", &root.url]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("shard(s) 1 of 2"), "{}", text(&o));
    // A different plan into the same root is refused.
    let o = root
        .cmd(&[
            OsStr::new("plan"),
            OsStr::new("--model"),
            tiny_trunk().as_os_str(),
            OsStr::new("--images"),
            d.path().join("data").as_os_str(),
            OsStr::new("--out"),
            OsStr::new(&root.url),
            OsStr::new("--shards"),
            OsStr::new("3"),
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("another plan"),
        "{}",
        text(&o)
    );
}

/// `plan.json` of `root` (a local folder) edited by `edit`.
/// Edits `plan.json` and reseals it (its checksum recomputed), as a deliberate hand edit would:
/// what is tested is what the edited plan asks, not the checksum.
fn edit_plan(root: &Root, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = Path::new(&root.url).join("plan.json");
    let mut plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut plan);
    let mut typed: vggcache::extract::sharded::ShardPlan = serde_json::from_value(plan).unwrap();
    std::fs::write(&path, typed.seal()).unwrap();
}

/// `cache commit` on `root`: must refuse with exit 2, naming each of `names`, and publish nothing.
fn commit_refused(root: &Root, names: &[&str], what: &str) {
    let o = root.cmd(&["cache", "commit", &root.url]).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{what}: {t}");
    for n in names {
        assert!(t.contains(n), "{what}: {n:?} not named: {t}");
    }
    assert!(
        !Path::new(&root.url).join("manifest.json").exists(),
        "{what}: published anyway"
    );
}

/// Issue 30: `cache commit` reconciles the committed rows and recorded skips with the plan:
/// a plan edited to fewer shards, to 0 shards, or listing one image in two shards is refused
/// (exit 2, naming the missing or doubled images) and nothing is published; restored, it commits
/// every image once.
#[test]
fn commit_refuses_a_plan_its_shards_do_not_account_for() {
    if common::ort("sharded::commit_refuses_a_plan_its_shards_do_not_account_for").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = images(d.path());
    let root = Root::local(&d.path().join("root"));
    root.plan(&imgs, 4, 4);
    let plan_path = Path::new(&root.url).join("plan.json");
    let original = std::fs::read(&plan_path).unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let in_shard = |k: u64| -> Vec<String> {
        plan["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["shard"] == k)
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    };
    for k in 0..4 {
        let o = root.shard(k, 4, &[]).output().unwrap();
        assert!(o.status.success(), "shard {k}: {}", text(&o));
    }
    // "shards": 2 of 4: the images of shards 2 and 3 are in no committed shard.
    edit_plan(&root, |p| p["shards"] = 2.into());
    let lost = [in_shard(2), in_shard(3)].concat();
    commit_refused(
        &root,
        &[&format!("{} planned image(s)", lost.len()), &lost[0]],
        "shards 2",
    );
    edit_plan(&root, |p| p["shards"] = 0.into());
    commit_refused(&root, &["24 planned image(s)"], "shards 0");
    // One image listed in two shards: both extract it.
    std::fs::write(&plan_path, &original).unwrap();
    let twice = in_shard(0)[0].clone();
    let root2 = Root::local(&d.path().join("root2"));
    root2.plan(&imgs, 4, 4);
    edit_plan(&root2, |p| {
        let mut e = p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == twice.as_str())
            .unwrap()
            .clone();
        e["shard"] = 1.into();
        p["entries"].as_array_mut().unwrap().push(e);
    });
    for k in 0..4 {
        let o = root2.shard(k, 4, &[]).output().unwrap();
        assert!(o.status.success(), "shard {k}: {}", text(&o));
    }
    commit_refused(
        &root2,
        &["accounted for twice", &twice],
        "one image in two shards",
    );
    // The plan as made: every image committed once.
    let t = root.ok(&["cache", "commit", &root.url]);
    assert!(t.contains("24 rows"), "{t}");
    assert_eq!(table(Path::new(&root.url)).len(), 24);
}

/// Issue 30: on a sharded root whose shards ran but which is not committed, `train-head` and
/// `verify` name `vggcache cache commit ROOT`; `extract --out ROOT` (the old advice) refuses to
/// write a one-machine manifest there; `gc` deletes no claimed part; the commit then publishes
/// every row.
#[test]
fn advice_on_an_uncommitted_root_keeps_it_repairable() {
    if common::ort("sharded::advice_on_an_uncommitted_root_keeps_it_repairable").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = images(d.path());
    let root = Root::local(&d.path().join("root"));
    root.plan(&imgs, 2, 4);
    for k in 0..2 {
        let o = root.shard(k, 2, &[]).output().unwrap();
        assert!(o.status.success(), "shard {k}: {}", text(&o));
    }
    let advice = format!("vggcache cache commit {}", root.url);
    let o = root
        .cmd(&["train-head", "--features", &root.url, "--epochs", "1"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains(&advice),
        "{}",
        text(&o)
    );
    let o = root
        .cmd(&["cache", "verify", "--features", &root.url])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains(&advice),
        "{}",
        text(&o)
    );
    // The old advice: a one-machine extract into the root.
    let o = common::extract(&tiny_trunk(), &imgs, Path::new(&root.url), &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--plan"), "{}", text(&o));
    assert!(!Path::new(&root.url).join("manifest.json").exists());
    // gc before the commit refuses; after it, no claimed part is deleted.
    let o = root.cmd(&["cache", "gc", &root.url]).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let t = root.ok(&["cache", "commit", &root.url]);
    assert!(t.contains("24 rows"), "{t}");
    let t = root.ok(&["cache", "gc", &root.url]);
    assert!(t.contains("deleted 0 orphaned part"), "{t}");
    // A manifest that lists fewer parts than the records claim (checksum recomputed): gc still
    // deletes no claimed part.
    let mpath = Path::new(&root.url).join("manifest.json");
    let good = std::fs::read(&mpath).unwrap();
    let mut m: vggcache::cache::Manifest = serde_json::from_slice(&good).unwrap();
    assert!(m.shards.len() > 1);
    m.shards.truncate(1);
    m.checksum = Some(m.compute_checksum());
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let t = root.ok(&["cache", "gc", &root.url]);
    assert!(t.contains("deleted 0 orphaned part"), "{t}");
    std::fs::write(&mpath, &good).unwrap();
    assert_rows(
        &root.rows(d.path()),
        &one_machine(d.path(), &imgs, "1"),
        Some(1e-6),
        "after the advice path",
    );
}

/// Issue 30: the errors of a sharded run say what happened and the one command that fixes it:
/// a trunk other than the plan's names the plan's model (not `--force`); a plan edited to 0
/// shards says so (not "K in 0..0"); `cache commit` on a folder without a plan says it is no
/// sharded root (exit 1, not "--plan: no plan here"); `plan --file-list` of a missing file says
/// it cannot read it (not "writing"); `--model` naming a folder says so.
#[test]
fn sharded_errors_name_what_happened_and_the_fix() {
    if common::ort("sharded::sharded_errors_name_what_happened_and_the_fix").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = images(d.path());
    let root = Root::local(&d.path().join("root"));
    root.plan(&imgs, 2, 4);
    // The same trunk plus one unknown protobuf field (tag 100, varint 1): loads, other sha256.
    let other = d.path().join("other.onnx");
    let mut bytes = std::fs::read(tiny_trunk()).unwrap();
    bytes.extend([0xa0, 0x06, 0x01]);
    std::fs::write(&other, bytes).unwrap();
    let mut c = root.cmd(&[
        "extract", "--device", "cpu", "--plan", &root.url, "--shard", "0/2", "--model",
    ]);
    let o = c.arg(&other).output().unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!("--model {}", tiny_trunk().display())) && !t.contains("--force"),
        "{t}"
    );
    // --model naming a folder.
    let mut c = root.cmd(&[
        "extract", "--device", "cpu", "--plan", &root.url, "--shard", "0/2", "--model",
    ]);
    let o = c.arg(d.path()).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("is a folder"),
        "{}",
        text(&o)
    );
    // A plan edited to 0 shards.
    edit_plan(&root, |p| p["shards"] = 0.into());
    let o = root.shard(0, 2, &[]).output().unwrap();
    let t = text(&o);
    assert!(!o.status.success() && t.contains("\"shards\": 0"), "{t}");
    assert!(!t.contains("0..0"), "{t}");
    // `cache commit` where no plan is.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = root
        .cmd(&[OsStr::new("cache"), OsStr::new("commit"), empty.as_os_str()])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("not the root of a sharded cache"), "{t}");
    // `plan --file-list` of a missing file.
    let o = root
        .cmd(&[
            OsStr::new("plan"),
            OsStr::new("--model"),
            tiny_trunk().as_os_str(),
            OsStr::new("--images"),
            imgs.as_os_str(),
            OsStr::new("--out"),
            d.path().join("root3").as_os_str(),
            OsStr::new("--file-list"),
            OsStr::new("/no/such/list.txt"),
        ])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("cannot read /no/such/list.txt") && !t.contains("writing"),
        "{t}"
    );
}
