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
fn wait_for_line(child: &mut std::process::Child, needle: &str) -> String {
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
