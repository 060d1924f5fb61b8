//! The path boundary through the binary: names from data (manifest shard files, plan entries,
//! pulled names) never lead outside their root, `--out` never lands inside a feature cache, and
//! names a spreadsheet would evaluate are neutralized in predictions.csv. Every hostile case
//! snapshots the folders around the root before and after: nothing outside is created, moved,
//! changed or read into the cache.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use vggcache::cache::Manifest;
use vggcache::dataset::{content_hash, Split};
use vggcache::extract::sharded::{PlannedImage, ShardPlan};

use crate::common::{self, text, tiny_trunk};
use crate::sharded::{self, Root};

/// Said by every refusal of the path rule.
const RULE: &str = "must be relative paths under that root";

fn vggcache<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run vggcache")
}

/// Every file under `dir` (recursively) with its bytes; a symlink as `-> target`. The lock file
/// is left out.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "vggcache.lock") {
                continue; // the writer stamps its pid there on every run
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(p, format!("-> {}", t.display()).into_bytes());
            } else if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A small real JPEG.
fn jpeg(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), y as u8, seed])
    })
    .save(path)
    .unwrap();
}

/// The tiny-trunk cache of `images` at `out`.
fn cache_of(images: &Path, out: &Path) {
    let o = common::extract(&tiny_trunk(), images, out, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

fn load_manifest(dir: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Stores `m` at `dir/manifest.json` with its checksum recomputed (as an attacker would).
fn store_manifest(dir: &Path, mut m: Manifest) -> Vec<u8> {
    m.checksum = Some(m.compute_checksum());
    let bytes = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(dir.join("manifest.json"), &bytes).unwrap();
    bytes
}

/// A manifest naming `../outside/x.parquet`, an absolute path or a name with a NUL (checksum
/// recomputed): `verify` and `extract` refuse it naming the entry; the files outside are not
/// moved to quarantine/, changed or read, and the manifest stays as it was.
#[test]
fn hostile_manifest_names_are_refused_and_nothing_outside_is_touched() {
    let test = "paths::hostile_manifest_names_are_refused_and_nothing_outside_is_touched";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let cache = d.path().join("cache");
    cache_of(&imgs, &cache);
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.parquet"), b"someone else's file").unwrap();
    std::fs::write(outside.join("y.parquet"), b"another one").unwrap();
    let pristine = load_manifest(&cache);
    let abs = outside.join("y.parquet").display().to_string();
    for (entry, shown) in [
        (
            "../outside/x.parquet".to_string(),
            "\"../outside/x.parquet\"".to_string(),
        ),
        (abs.clone(), format!("{abs:?}")),
        (
            "shard\0.parquet".to_string(),
            "\"shard\\0.parquet\"".to_string(),
        ),
    ] {
        let mut m = pristine.clone();
        m.shards[0].file = entry.clone();
        let edited = store_manifest(&cache, m);
        let before = snapshot(d.path());
        let o = vggcache(
            &[
                OsStr::new("cache"),
                "verify".as_ref(),
                "--features".as_ref(),
                cache.as_os_str(),
            ],
            d.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{entry:?}: {}", text(&o));
        assert!(
            text(&o).contains(&shown) && text(&o).contains(RULE),
            "{}",
            text(&o)
        );
        let o = common::extract(&tiny_trunk(), &imgs, &cache, &[]);
        assert!(
            !o.status.success(),
            "{entry:?}: extract accepted it: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(&shown) && text(&o).contains(RULE),
            "{}",
            text(&o)
        );
        assert_eq!(snapshot(d.path()), before, "{entry:?}: files changed");
        assert!(
            !cache.join("quarantine").exists(),
            "{entry:?}: something was quarantined"
        );
        assert_eq!(std::fs::read(cache.join("manifest.json")).unwrap(), edited);
    }
}

/// A listed shard replaced by a symlink to a copy outside the cache: refused by `verify` and
/// `extract` (the link resolves outside the root), nothing read through it or moved.
#[test]
fn a_shard_symlinked_outside_the_cache_is_refused() {
    let test = "paths::a_shard_symlinked_outside_the_cache_is_refused";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let cache = d.path().join("cache");
    cache_of(&imgs, &cache);
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let shard = cache.join(&load_manifest(&cache).shards[0].file);
    std::fs::copy(&shard, outside.join("copy.parquet")).unwrap();
    std::fs::remove_file(&shard).unwrap();
    std::os::unix::fs::symlink(outside.join("copy.parquet"), &shard).unwrap();
    let before = snapshot(d.path());
    let o = vggcache(
        &[
            OsStr::new("cache"),
            "verify".as_ref(),
            "--features".as_ref(),
            cache.as_os_str(),
        ],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("outside the root"), "{}", text(&o));
    let o = common::extract(&tiny_trunk(), &imgs, &cache, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("outside the root"), "{}", text(&o));
    assert_eq!(snapshot(d.path()), before);
}

/// `cache pull` of a root whose manifest names `../x.parquet`: refused before anything is
/// fetched; nothing appears beside `--to`, and the outside file of the source is not read.
#[test]
fn pull_refuses_a_name_leading_out_of_the_target() {
    let test = "paths::pull_refuses_a_name_leading_out_of_the_target";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let src = d.path().join("src");
    cache_of(&imgs, &src);
    let mut m = load_manifest(&src);
    std::fs::rename(src.join(&m.shards[0].file), d.path().join("x.parquet")).unwrap();
    m.shards[0].file = "../x.parquet".into();
    store_manifest(&src, m);
    let dst = d.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let to = dst.join("cache");
    let before = snapshot(d.path());
    let o = vggcache(
        &[
            OsStr::new("cache"),
            "pull".as_ref(),
            src.as_os_str(),
            "--to".as_ref(),
            to.as_os_str(),
        ],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("\"../x.parquet\"") && text(&o).contains(RULE),
        "{}",
        text(&o)
    );
    assert!(!dst.join("x.parquet").exists(), "pull wrote outside --to");
    assert_eq!(snapshot(d.path()), before);
}

/// The same against the S3 server: a published manifest naming `../x.parquet` is refused by
/// `cache pull` and `cache verify`; nothing is written beside `--to`.
#[test]
fn s3_pull_refuses_a_name_leading_out_of_the_target() {
    let test = "paths::s3_pull_refuses_a_name_leading_out_of_the_target";
    if common::ort(test).is_none() {
        return;
    }
    let Some(server) = common::s3_server(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let local = d.path().join("local");
    cache_of(&imgs, &local);
    let url = server.url("hostile");
    let store = vggcache::storage::open_with(&url, &server.env()).unwrap();
    let mut m = load_manifest(&local);
    for s in &m.shards {
        store
            .put(&s.file, &std::fs::read(local.join(&s.file)).unwrap())
            .unwrap();
    }
    store
        .put(
            "x.parquet",
            &std::fs::read(local.join(&m.shards[0].file)).unwrap(),
        )
        .unwrap();
    m.shards[0].file = "../x.parquet".into();
    m.checksum = Some(m.compute_checksum());
    store
        .put("manifest.json", &serde_json::to_vec_pretty(&m).unwrap())
        .unwrap();
    let dst = d.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let to = dst.join("cache");
    let root = Root {
        url: url.clone(),
        env: server.env(),
    };
    let o = root
        .cmd(&[
            OsStr::new("cache"),
            "pull".as_ref(),
            url.as_ref(),
            "--to".as_ref(),
            to.as_os_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("\"../x.parquet\"") && text(&o).contains(RULE),
        "{}",
        text(&o)
    );
    assert!(!dst.join("x.parquet").exists(), "pull wrote outside --to");
    assert!(!to.join("manifest.json").exists());
    let o = root
        .cmd(&["cache", "verify", "--features", &url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(RULE), "{}", text(&o));
}

/// A plan listing `../outside/secret.jpg` or `/etc/passwd` (checksum recomputed): the shard run
/// refuses it naming the entry; no part, record or skipped.csv is written, nothing is read.
/// A plan edited without its checksum (`"shards": 2` of 1) is refused too.
#[test]
fn plan_entries_outside_the_images_root_and_edited_plans_are_refused() {
    let test = "paths::plan_entries_outside_the_images_root_and_edited_plans_are_refused";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let root_dir = d.path().join("root");
    let root = Root::local(&root_dir);
    root.plan(&imgs, 1, 100);
    let secret = d.path().join("outside/secret.jpg");
    jpeg(&secret, 7);
    let plan_path = root_dir.join("plan.json");
    let pristine = std::fs::read(&plan_path).unwrap();
    for (entry, file) in [
        ("../outside/secret.jpg", secret.clone()),
        ("/etc/passwd", PathBuf::from("/etc/passwd")),
    ] {
        if !file.exists() {
            continue;
        }
        let mut plan: ShardPlan = serde_json::from_slice(&pristine).unwrap();
        plan.entries.push(PlannedImage {
            path: entry.into(),
            split: Split::Train,
            label: Some(0),
            class: Some("cat".into()),
            content_hash: content_hash(&file).unwrap(),
            shard: 0,
        });
        plan.entries.sort_by(|a, b| a.path.cmp(&b.path));
        std::fs::write(&plan_path, plan.seal()).unwrap();
        let before = snapshot(d.path());
        let o = root.shard(0, 1, &[]).output().unwrap();
        assert!(!o.status.success(), "{entry}: the shard ran: {}", text(&o));
        assert!(
            text(&o).contains(&format!("\"{entry}\"")) && text(&o).contains(RULE),
            "{}",
            text(&o)
        );
        assert_eq!(snapshot(d.path()), before, "{entry}: files changed");
        assert!(!root_dir.join("parts").exists() && !root_dir.join("records").exists());
        assert!(!root_dir.join("skipped.csv").exists());
    }
    // An edit without the checksum recomputed: refused before any shard runs.
    let mut v: serde_json::Value = serde_json::from_slice(&pristine).unwrap();
    v["shards"] = 2.into();
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let o = root.shard(0, 2, &[]).output().unwrap();
    assert!(!o.status.success(), "an edited plan ran: {}", text(&o));
    assert!(text(&o).contains("plan fails its checksum"), "{}", text(&o));
    assert!(!root_dir.join("parts").exists() && !root_dir.join("records").exists());
}

/// A symlink in the images folder leading outside it: `plan` skips it with the reason (it is
/// never planned), and a plan that lists it anyway (checksum recomputed) is refused by the run.
#[test]
fn a_symlinked_image_leading_outside_the_images_root_is_refused() {
    let test = "paths::a_symlinked_image_leading_outside_the_images_root_is_refused";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let secret = d.path().join("outside/secret.jpg");
    jpeg(&secret, 9);
    let link = "train/cat/zz-link.jpg";
    std::os::unix::fs::symlink(&secret, imgs.join(link)).unwrap();
    let root_dir = d.path().join("root");
    let root = Root::local(&root_dir);
    root.plan(&imgs, 1, 100);
    let plan_path = root_dir.join("plan.json");
    let mut plan: ShardPlan = serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    assert!(
        plan.entries.iter().all(|e| e.path != link),
        "the link was planned"
    );
    let (_, why) = plan
        .skipped
        .iter()
        .find(|(p, _)| p == link)
        .expect("the link is a reported skip");
    assert!(why.contains("outside the root"), "{why}");
    plan.entries.push(PlannedImage {
        path: link.into(),
        split: Split::Train,
        label: Some(0),
        class: Some("cat".into()),
        content_hash: content_hash(&secret).unwrap(),
        shard: 0,
    });
    plan.entries.sort_by(|a, b| a.path.cmp(&b.path));
    std::fs::write(&plan_path, plan.seal()).unwrap();
    let o = root.shard(0, 1, &[]).output().unwrap();
    assert!(!o.status.success(), "the shard ran: {}", text(&o));
    assert!(text(&o).contains("outside the root"), "{}", text(&o));
    assert!(!root_dir.join("records").exists());
}

/// `--out` of predict, export, report and compare-baselines inside a feature cache (its folder, a
/// sub folder not yet made, or the manifest itself): exit 2 naming the cache; the cache is
/// unchanged and no output written. An `--out` outside the cache still works.
#[test]
fn out_inside_a_feature_cache_is_refused() {
    let test = "paths::out_inside_a_feature_cache_is_refused";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = sharded::images(d.path());
    let cache = d.path().join("cache");
    cache_of(&imgs, &cache);
    let o = vggcache(
        &[
            "train-head",
            "--features",
            "cache",
            "--epochs",
            "2",
            "--hidden",
            "8",
            "--name",
            "s",
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let tiny = tiny_trunk().display().to_string();
    let before = snapshot(&cache);
    let cases: Vec<Vec<String>> = vec![
        vec!["export", "--head", "runs/s", "--out", "cache/manifest.json"],
        vec![
            "export",
            "--head",
            "runs/s",
            "--out",
            "cache/new/dir/head.onnx",
        ],
        vec!["report", "--run", "runs/s", "--out", "cache/report.html"],
        vec![
            "compare-baselines",
            "--features",
            "cache",
            "--head",
            "runs/s",
            "--out",
            "cache",
        ],
        vec![
            "predict",
            "--head",
            "runs/s",
            "--images",
            "data",
            "--model",
            &tiny,
            "--device",
            "cpu",
            "--out",
            "cache/predictions.csv",
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    for args in &cases {
        let o = vggcache(args, d.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("inside the feature cache") && text(&o).contains("cache"),
            "{args:?}: {}",
            text(&o)
        );
        assert_eq!(snapshot(&cache), before, "{args:?} changed the cache");
    }
    let o = vggcache(
        &["export", "--head", "runs/s", "--out", "head.onnx"],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// A class named `=HYPERLINK(...)` (and so its images' paths): every such cell of
/// compare-baselines' predictions.csv starts with `'`; the probabilities stay numbers.
#[test]
fn formula_names_are_neutralized_in_predictions_csv() {
    let test = "paths::formula_names_are_neutralized_in_predictions_csv";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let evil = "=HYPERLINK(\"http://x\",\"y\")";
    let imgs = d.path().join("flat");
    for i in 0..12u8 {
        jpeg(&imgs.join(evil).join(format!("e{i}.jpg")), i + 1);
        jpeg(&imgs.join("dog").join(format!("d{i}.jpg")), i + 101);
    }
    let cache = d.path().join("cache");
    let o = common::extract(&tiny_trunk(), &imgs, &cache, &["--val-fraction", "0.3"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = vggcache(
        &["compare-baselines", "--features", "cache", "--out", "cmp"],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut r = csv::Reader::from_path(d.path().join("cmp/predictions.csv")).unwrap();
    let mut evil_cells = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        for (j, cell) in rec.iter().enumerate() {
            if j >= 4 {
                assert!(cell.parse::<f64>().is_ok(), "probability {cell:?}");
            } else if cell.contains("HYPERLINK") {
                assert!(cell.starts_with('\''), "raw formula cell {cell:?}");
                evil_cells += 1;
            }
        }
    }
    assert!(
        evil_cells > 0,
        "no row of the evil class in predictions.csv"
    );
}
