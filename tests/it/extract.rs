//! `vggcache extract` end to end with the real ONNX Runtime and the tiny trunk fixture: layouts,
//! incremental re-runs, bad input, model mismatch, lock, kill -9 and resume, pyarrow read-back.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vggcache::cache::FeatureCache;
use vggcache::dataset::Split;
use vggcache::events::{Event, Events, Silent};
use vggcache::extract::{ExtractConfig, ExtractError};
use vggcache::trunk::{Device, TrunkOptions};

use crate::common;

use common::text;
use common::tiny_trunk as tiny;

/// A cache's rows sorted by path: `(path, split, label, features)`.
type Rows = Vec<(String, String, Option<u32>, Vec<f32>)>;

fn rows(cache: &Path) -> Rows {
    let all = FeatureCache::open(cache)
        .unwrap_or_else(|e| panic!("open {}: {e}", cache.display()))
        .all()
        .expect("read all rows");
    let mut v: Rows = (0..all.len())
        .map(|i| {
            (
                all.paths[i].clone(),
                all.splits[i].as_str().to_string(),
                all.labels[i],
                all.features.row(i).to_vec(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Asserts two caches hold the same rows (paths, splits, labels, bit-identical features).
fn assert_same_rows(got: &Rows, want: &Rows, what: &str) {
    let paths = |r: &Rows| r.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(paths(got), paths(want), "{what}: same paths, no duplicates");
    for (a, b) in got.iter().zip(want) {
        assert_eq!(
            (&a.1, a.2),
            (&b.1, b.2),
            "{what}: split and label of {}",
            a.0
        );
        assert!(a.3 == b.3, "{what}: features of {}", a.0);
    }
}

/// The sorted names of the Parquet files in `dir`.
fn parquet_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn extract(images: &Path, out: &Path, extra: &[&str]) -> Output {
    common::extract(&tiny(), images, out, extra)
}

/// A small real JPEG with some structure (colour depends on `seed`).
fn write_jpeg(path: &Path, seed: u32, size: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 31) % 256) as u8,
            ((y * 5 + seed * 17) % 256) as u8,
            ((x + y + seed) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

fn image_folder(dir: &Path, per_class: u32) {
    for (split, n) in [("train", per_class), ("val", 2)] {
        for class in ["cat", "dog"] {
            for i in 0..n {
                write_jpeg(
                    &dir.join(split).join(class).join(format!("{class}.{i}.jpg")),
                    i + class.len() as u32 * 100,
                    40,
                );
            }
        }
    }
}

fn line_with<'a>(t: &'a str, key: &str) -> &'a str {
    t.lines().find(|l| l.contains(key)).unwrap_or("")
}

#[test]
fn extract_then_rerun_does_no_inference_and_tracks_changes() {
    if common::ort("extract_then_rerun_does_no_inference_and_tracks_changes").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    image_folder(&imgs, 5);
    let o = extract(&imgs, &out, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        line_with(&t, "extracted ").starts_with("extracted 14  reused 0  skipped 0"),
        "{t}"
    );
    assert!(
        t.contains("execution provider: CPUExecutionProvider"),
        "{t}"
    );
    let c = FeatureCache::open(&out).unwrap();
    assert_eq!(c.dim(), 128);
    assert_eq!(c.classes(), ["cat", "dog"]);
    assert_eq!(c.split(Split::Train).unwrap().len(), 10);
    let val = c.split(Split::Val).unwrap();
    assert_eq!(val.len(), 4);
    assert!(val.labels.iter().all(|l| l.is_some()));
    drop(c);
    let first = rows(&out);
    let first_files = parquet_files(&out);

    // Unchanged folder: nothing to extract, no shard rewritten, the same rows.
    let t = text(&extract(&imgs, &out, &[]));
    assert!(t.contains("0 to extract, 14 cached and unchanged"), "{t}");
    assert!(
        line_with(&t, "extracted ").starts_with("extracted 0  reused 14"),
        "{t}"
    );
    assert_eq!(parquet_files(&out), first_files, "no shard written");
    assert_same_rows(&rows(&out), &first, "unchanged re-run");

    // One added, one changed, one deleted.
    write_jpeg(&imgs.join("train/cat/cat.new.jpg"), 999, 40);
    write_jpeg(&imgs.join("train/dog/dog.0.jpg"), 555, 40);
    std::fs::remove_file(imgs.join("train/cat/cat.1.jpg")).unwrap();
    let t = text(&extract(&imgs, &out, &[]));
    assert!(
        t.contains("2 to extract, 12 cached and unchanged, 2 stale rows dropped"),
        "{t}"
    );
    // The incremental cache holds exactly what a fresh extract of the changed folder holds.
    let fresh = d.path().join("fresh");
    assert!(extract(&imgs, &fresh, &[]).status.success());
    let (got, want) = (rows(&out), rows(&fresh));
    assert_eq!(got.len(), 14);
    assert_same_rows(&got, &want, "incremental vs fresh extract");
    let feats = |r: &Rows, p: &str| r.iter().find(|x| x.0 == p).map(|x| x.3.clone());
    assert!(
        feats(&got, "train/dog/dog.0.jpg") != feats(&first, "train/dog/dog.0.jpg"),
        "the changed image was re-extracted"
    );
    assert!(feats(&got, "train/cat/cat.new.jpg").is_some());
    assert!(feats(&got, "train/cat/cat.1.jpg").is_none());
}

#[test]
fn bad_files_are_skipped_and_listed_and_strict_fails() {
    if common::ort("bad_files_are_skipped_and_listed_and_strict_fails").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    image_folder(&imgs, 2);
    std::fs::write(imgs.join("train/cat/empty.jpg"), b"").unwrap();
    std::fs::write(imgs.join("train/dog/text.jpg"), b"this is not an image").unwrap();
    let good = std::fs::read(imgs.join("train/cat/cat.0.jpg")).unwrap();
    std::fs::write(
        imgs.join("train/dog/truncated.jpg"),
        &good[..good.len() / 2],
    )
    .unwrap();
    let o = extract(&imgs, &out, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        line_with(&t, "extracted ").starts_with("extracted 8  reused 0  skipped 3"),
        "{t}"
    );
    let csv = std::fs::read_to_string(out.join("skipped.csv")).unwrap();
    for f in ["empty.jpg", "text.jpg", "truncated.jpg"] {
        assert!(csv.contains(f), "{f} missing from skipped.csv:\n{csv}");
    }
    let o = extract(&imgs, &out, &["--strict"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        FeatureCache::open(&out).unwrap().len(),
        8,
        "nothing cached was lost"
    );
}

#[test]
fn missing_folder_and_other_model_are_clear_errors() {
    if common::ort("missing_folder_and_other_model_are_clear_errors").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    let o = extract(&d.path().join("nope"), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("nope"), "{}", text(&o));

    image_folder(&imgs, 2);
    assert!(extract(&imgs, &out, &[]).status.success());
    // Same graph, one metadata byte different: another fingerprint.
    let other = d.path().join("other.onnx");
    let mut bytes = std::fs::read(tiny()).unwrap();
    let pos = bytes
        .windows(5)
        .position(|w| w == b"tests")
        .expect("source metadata");
    bytes[pos] = b'T';
    std::fs::write(&other, bytes).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vggcache"))
            .args(["extract", "--device", "cpu", "--model"])
            .arg(&other)
            .arg("--images")
            .arg(&imgs)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).to_lowercase().contains("force"), "{}", text(&o));
    assert_eq!(
        FeatureCache::open(&out).unwrap().len(),
        8,
        "refused run left the cache intact"
    );
    let fingerprint = |c: &Path| {
        FeatureCache::open(c)
            .unwrap()
            .manifest()
            .identity()
            .model
            .fingerprint
    };
    let sha256 = |p: &Path| {
        use sha2::{Digest, Sha256};
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
        )
    };
    assert_eq!(fingerprint(&out), sha256(&tiny()), "before --force");
    let o = run(&["--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(FeatureCache::open(&out).unwrap().len(), 8);
    assert_eq!(
        fingerprint(&out),
        sha256(&other),
        "the cache names the new model"
    );
    // The rebuilt rows are the other model's: the same as a fresh extract with it.
    let fresh = d.path().join("fresh");
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["extract", "--device", "cpu", "--model"])
        .arg(&other)
        .arg("--images")
        .arg(&imgs)
        .arg("--out")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_same_rows(&rows(&out), &rows(&fresh), "--force vs fresh extract");
}

/// SIGKILL lands mid-run (polled: two shards on disk, the process still running); the cache it
/// leaves holds fewer rows than the folder; the resumed run equals a fresh extract.
#[test]
fn killed_run_resumes_without_duplicates_or_gaps() {
    if common::ort("killed_run_resumes_without_duplicates_or_gaps").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out, clean) = (
        d.path().join("data"),
        d.path().join("cache"),
        d.path().join("clean"),
    );
    image_folder(&imgs, 60);
    for i in 0..60 {
        // Larger images so the run lasts long enough to be killed mid-way.
        write_jpeg(&imgs.join(format!("train/cat/big.{i}.jpg")), i, 900);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args([
            "extract",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--workers",
            "1",
            "--batch-size",
            "2",
            "--shard-rows",
            "4",
            "--model",
        ])
        .arg(tiny())
        .arg("--images")
        .arg(&imgs)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Rows the manifest lists: what a reader would see (written atomically, so safe to read while
    // the run goes on; shards on disk but not listed yet do not count).
    let committed = || -> usize {
        std::fs::read(out.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|m| {
                m["shards"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s["rows"].as_u64()).sum::<u64>())
            })
            .unwrap_or(0) as usize
    };
    // Poll: kill once some rows are committed, while the run still goes on.
    while committed() < 8
        && child.try_wait().unwrap().is_none()
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before the kill: the resume path was not exercised"
    );
    let n = committed();
    eprintln!("killed with {n} of 184 rows committed");
    assert!(
        (8..184).contains(&n),
        "the kill should land mid-run: {n} of 184 rows committed"
    );
    assert_eq!(
        FeatureCache::open(&out).map(|c| c.len()).unwrap(),
        n,
        "a reader sees exactly the committed rows"
    );
    let o = extract(&imgs, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(extract(&imgs, &clean, &[]).status.success());
    let (a, b) = (rows(&out), rows(&clean));
    assert_eq!(a.len(), 184);
    assert_same_rows(&a, &b, "resumed vs clean run");
}

#[test]
fn second_concurrent_run_fails_at_once() {
    if common::ort("second_concurrent_run_fails_at_once").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    image_folder(&imgs, 2);
    assert!(extract(&imgs, &out, &[]).status.success());
    // Hold the writer lock in this process, then run the binary against the same cache.
    let id = {
        let c = FeatureCache::open(&out).unwrap();
        c.manifest().identity()
    };
    let classes = ["cat".to_string(), "dog".to_string()];
    let _w = vggcache::cache::CacheWriter::open(&out, &id, &classes, false).unwrap();
    let start = Instant::now();
    let o = extract(&imgs, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).to_lowercase().contains("lock"), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn cache_reads_back_in_pyarrow_with_the_same_numbers() {
    let test = "cache_reads_back_in_pyarrow_with_the_same_numbers";
    let Some(py) = common::python_with(test, &["pyarrow"]) else {
        return;
    };
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    image_folder(&imgs, 3);
    assert!(extract(&imgs, &out, &[]).status.success());
    let code = r#"
import sys, glob, json, pyarrow.parquet as pq, pyarrow as pa
t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(sys.argv[1] + '/*.parquet'))])
rows = {p: (s, l, f) for p, s, l, f in zip(t['path'].to_pylist(), t['split'].to_pylist(), t['label'].to_pylist(), t['features'].to_pylist())}
print(json.dumps(rows))
"#;
    let o = Command::new(&py)
        .args(["-c", code])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = FeatureCache::open(&out).unwrap().all().unwrap();
    assert_eq!(v.as_object().unwrap().len(), c.len());
    for (i, p) in c.paths.iter().enumerate() {
        let row = &v[p];
        assert_eq!(row[0].as_str().unwrap(), c.splits[i].as_str());
        assert_eq!(row[1].as_u64().map(|x| x as u32), c.labels[i]);
        let f: Vec<f32> = row[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(f.as_slice(), c.features.row(i).as_slice().unwrap());
    }
}

#[test]
fn several_trunk_sessions_write_the_same_cache_in_the_same_order() {
    if common::ort("several_trunk_sessions_write_the_same_cache_in_the_same_order").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, one, three) = (
        d.path().join("data"),
        d.path().join("one"),
        d.path().join("three"),
    );
    image_folder(&imgs, 9);
    let small = ["--batch-size", "2", "--shard-rows", "3"];
    let o = extract(&imgs, &one, &small);
    assert!(o.status.success(), "{}", text(&o));
    let o = extract(&imgs, &three, &[&small[..], &["--sessions", "3"]].concat());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(line_with(&t, "trunk busy").contains("of 3 sessions"), "{t}");
    assert!(
        line_with(&t, "last row written at").contains("img/s from the first decode"),
        "{t}"
    );
    let (a, b) = (
        FeatureCache::open(&one).unwrap().all().unwrap(),
        FeatureCache::open(&three).unwrap().all().unwrap(),
    );
    assert_eq!(a.len(), 22);
    // Batches finish out of order across sessions; the writer restores the pipeline's order.
    assert_eq!(a.paths, b.paths, "rows in the same order");
    assert_eq!(a.features, b.features, "the same features");
}

/// Records every event of a job, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<Event>>);

impl Events for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Checks a run's progress steps: one phase over `planned` images, opened by a step of 0 images,
/// `done` growing by each later step's `images` up to the total.
fn assert_batches(ev: &[Event], planned: usize) {
    let mut done = 0;
    let steps = ev.iter().filter_map(|e| match e {
        Event::Batch {
            done,
            total,
            images,
        } => Some((*done, *total, *images)),
        _ => None,
    });
    for (i, (d, total, images)) in steps.enumerate() {
        assert_eq!(total, planned, "{ev:#?}");
        assert_eq!(
            i == 0,
            images == 0,
            "only the opening step is empty: {ev:#?}"
        );
        done += images;
        assert_eq!(d, done, "steps add up: {ev:#?}");
    }
    assert_eq!(
        done, planned,
        "the steps cover every planned image: {ev:#?}"
    );
}

#[test]
fn extract_reports_its_work_as_events_in_process() {
    if common::ort("extract::extract_reports_its_work_as_events_in_process").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out) = (d.path().join("data"), d.path().join("cache"));
    image_folder(&imgs, 5); // 14 images
    std::fs::write(imgs.join("train/cat/empty.jpg"), b"").unwrap();
    std::fs::write(imgs.join("train/dog/text.jpg"), b"this is not an image").unwrap();
    let cfg = ExtractConfig {
        images: imgs.clone(),
        out: out.clone(),
        model: tiny(),
        trunk: TrunkOptions {
            device: Device::Cpu,
            threads: 1,
            ..TrunkOptions::default()
        },
        batch_size: 4,
        ..ExtractConfig::default()
    };
    let rec = Recorder::default();
    let summary = vggcache::extract::run(&cfg, &rec).unwrap();
    let ev = rec.take();
    assert_eq!((summary.extracted, summary.skipped), (14, 2));
    assert!(
        matches!(&ev[0], Event::Provider { name, .. } if name == "CPUExecutionProvider"),
        "{ev:#?}"
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Scanned { images: 16, .. })),
        "{ev:#?}"
    );
    let planned: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Planned {
                images,
                reused,
                removed,
                moved,
            } => Some((*images, *reused, *removed, *moved)),
            _ => None,
        })
        .collect();
    assert_eq!(planned, [(16, 0, 0, 0)], "{ev:#?}");
    assert_batches(&ev, 16);
    let mut skipped: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Skipped { path, reason } => {
                assert!(!reason.is_empty());
                Some(path.as_str())
            }
            _ => None,
        })
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        ["train/cat/empty.jpg", "train/dog/text.jpg"],
        "one Skipped per bad file: {ev:#?}"
    );
    assert_eq!(
        ev.last(),
        Some(&Event::Finished {
            extracted: 14,
            skipped: 2
        }),
        "{ev:#?}"
    );

    // A rerun reuses every row; a silent sink takes the same run without a word.
    let again = vggcache::extract::run(&cfg, &Silent).unwrap();
    assert_eq!((again.extracted, again.reused), (0, 14));
}

/// Asks the run to stop once the first batch of images is done (`Events::cancelled`).
#[derive(Default)]
struct StopAfterFirstBatch(std::sync::atomic::AtomicBool);

impl Events for StopAfterFirstBatch {
    fn event(&self, e: &Event) {
        if matches!(e, Event::Batch { images, .. } if *images > 0) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The caller's stop (a Python front end's Ctrl-C) ends the run with `Interrupted` after
/// committing the batches in flight: the cache verifies, and a re-run extracts only the rest and
/// equals a fresh extraction (issue 31).
#[test]
fn cancelled_extract_keeps_a_valid_cache_and_a_rerun_does_the_rest() {
    if common::ort("extract::cancelled_extract_keeps_a_valid_cache_and_a_rerun_does_the_rest")
        .is_none()
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (imgs, out, fresh) = (
        d.path().join("data"),
        d.path().join("cache"),
        d.path().join("fresh"),
    );
    image_folder(&imgs, 20); // 44 images
    let cfg = ExtractConfig {
        images: imgs.clone(),
        out: out.clone(),
        model: tiny(),
        trunk: TrunkOptions {
            device: Device::Cpu,
            threads: 1,
            ..TrunkOptions::default()
        },
        batch_size: 2,
        workers: Some(1),
        shard_rows: 2,
        ..ExtractConfig::default()
    };
    let e = vggcache::extract::run(&cfg, &StopAfterFirstBatch::default())
        .expect_err("a cancelled run does not finish");
    let ExtractError::Interrupted { done, total } = e else {
        panic!("expected Interrupted, got {e}");
    };
    assert_eq!(total, 44, "{e}");
    assert!((2..44).contains(&done), "stopped mid-run: {done} of 44");
    let v = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["cache", "verify", "--features"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "cache verify: {}", text(&v));
    let kept = FeatureCache::open(&out).unwrap().verify().unwrap().rows;
    assert_eq!(kept, done, "every image done before the stop is committed");

    let again = vggcache::extract::run(&cfg, &Silent).unwrap();
    assert_eq!(
        (again.extracted, again.reused),
        (44 - kept, kept),
        "the re-run extracts only the rest"
    );
    let clean = ExtractConfig {
        out: fresh.clone(),
        ..cfg
    };
    vggcache::extract::run(&clean, &Silent).unwrap();
    assert_same_rows(&rows(&out), &rows(&fresh), "resumed vs fresh extract");
}
