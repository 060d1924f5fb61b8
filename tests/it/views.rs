//! Augmented views and test-time augmentation from the cache: the `view` column and recipes
//! round-trip (library and pyarrow), views of unchanged images are reused on a re-run, TTA's mean
//! is the mean of the per-view predictions, train-head trains on views.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vggcache::cache::FeatureCache;
use vggcache::dataset::augment::{self, ViewKind, ViewRecipe};
use vggcache::dataset::Split;
use vggcache::events::Silent;
use vggcache::extract::{ExtractConfig, ViewSettings};
use vggcache::trunk::{Device, TrunkOptions};

use crate::common::{self, text, tiny_trunk};

/// Extraction of `images` into `out` with the tiny trunk on one CPU thread and `views`.
fn config(images: &Path, out: &Path, views: ViewSettings) -> ExtractConfig {
    ExtractConfig {
        images: images.to_path_buf(),
        out: out.to_path_buf(),
        model: tiny_trunk(),
        trunk: TrunkOptions {
            device: Device::Cpu,
            threads: 1,
            ..TrunkOptions::default()
        },
        batch_size: 8,
        views,
        ..ExtractConfig::default()
    }
}

const K: u32 = 2;
const SEED: u64 = 7;

fn views() -> ViewSettings {
    ViewSettings {
        train_views: K,
        tta: true,
        seed: SEED,
        ..ViewSettings::default()
    }
}

/// The bytes of every file of the cache folder `dir` (shards and manifest), by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet" || e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// A temporary folder with `crate::sharded::images` (20 train, 4 val) extracted into
/// `DIR/cache` with `settings`: `(dir, images, cache, summary)`; `None` (the test skips, said by
/// `common::ort`) without ONNX Runtime.
fn extracted(
    test: &str,
    settings: ViewSettings,
) -> Option<(
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    vggcache::extract::ExtractSummary,
)> {
    common::ort(test)?;
    let d = tempfile::tempdir().unwrap();
    let imgs = crate::sharded::images(d.path());
    let out = d.path().join("cache");
    let s = vggcache::extract::run(&config(&imgs, &out, settings), &Silent).unwrap();
    Some((d, imgs, out, s))
}

/// Runs the Python `script` (with pyarrow) on the cache folder `cache` and parses what it prints
/// as JSON; `None` (skipped, said by `common::python_with`) without pyarrow.
fn pyarrow_json<T: serde::de::DeserializeOwned>(
    test: &str,
    script: &str,
    cache: &Path,
) -> Option<T> {
    let py = common::python_with(test, &["pyarrow"])?;
    let o = Command::new(py)
        .args(["-c", script])
        .arg(cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn view_column_and_recipes_round_trip_through_the_library_and_pyarrow() {
    let Some((_d, imgs, out, s)) = extracted("views::view_column_and_recipes_round_trip", views())
    else {
        return;
    };
    assert_eq!(
        s.extracted,
        24 + 20 * K as usize + 4 * augment::TTA_VIEWS as usize
    );

    let cache = FeatureCache::open(&out).unwrap();
    assert_eq!(cache.len(), s.extracted);
    let data = cache.all().unwrap();
    let hashes: BTreeMap<&str, String> = cache
        .row_paths()
        .iter()
        .map(|p| {
            (
                p.as_str(),
                vggcache::dataset::content_hash(&imgs.join(p)).unwrap(),
            )
        })
        .collect();
    let mut per_image: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for i in 0..cache.len() {
        let (path, view, split) = (
            &cache.row_paths()[i],
            cache.row_views()[i],
            cache.row_splits()[i],
        );
        assert_eq!(data.views[i], view);
        per_image.entry(path).or_default().push(view);
        let recipe = cache.row_recipes()[i]
            .as_deref()
            .map(|r| ViewRecipe::from_json(r).unwrap());
        let want = match (view, split) {
            (0, _) => None,
            (v, Split::Train) => Some(augment::train_recipe(&hashes[path.as_str()], v, SEED)),
            (v, _) => augment::tta_recipe(v),
        };
        assert_eq!(recipe, want, "row {i}: {path} view {view}");
        assert_eq!(
            cache.row_view_kinds()[i],
            want.map(|r| r.kind),
            "row {i}: {path} view {view}"
        );
    }
    for (path, mut v) in per_image {
        v.sort();
        let n = if path.starts_with("train/") {
            K
        } else {
            augment::TTA_VIEWS
        };
        assert_eq!(v, (0..=n).collect::<Vec<_>>(), "{path}");
    }
    // A view differs from its plain image (the tiny trunk sees the augmentation).
    let plain = (0..cache.len())
        .find(|&i| cache.row_views()[i] == 0)
        .unwrap();
    let view1 = (0..cache.len())
        .find(|&i| cache.row_views()[i] == 1 && cache.row_paths()[i] == cache.row_paths()[plain])
        .unwrap();
    assert_ne!(data.features.row(plain), data.features.row(view1));

    // pyarrow reads the same columns from the shards the manifest lists.
    let script = r#"
import json, sys, collections
import pyarrow.parquet as pq
root = sys.argv[1]
m = json.load(open(root + "/manifest.json"))
t = pq.read_table([root + "/" + s["file"] for s in m["shards"]], columns=["path", "split", "view", "view_recipe"])
counts = collections.Counter()
for path, split, view, recipe in zip(*(t.column(c).to_pylist() for c in ["path", "split", "view", "view_recipe"])):
    kind = None if recipe is None else json.loads(recipe)["kind"]
    assert (view == 0) == (recipe is None), (path, view, recipe)
    counts[f"{split}:{view}:{kind}"] += 1
print(json.dumps(dict(sorted(counts.items()))))
"#;
    let Some(counts) =
        pyarrow_json::<BTreeMap<String, usize>>("views::round_trip (pyarrow)", script, &out)
    else {
        return;
    };
    let mut want = BTreeMap::from([
        ("train:0:None".to_string(), 20),
        ("val:0:None".to_string(), 4),
    ]);
    for v in 1..=K {
        want.insert(format!("train:{v}:aug"), 20);
    }
    for v in 1..=augment::TTA_VIEWS {
        want.insert(format!("val:{v}:tta"), 4);
    }
    assert_eq!(counts, want);
}

#[test]
fn a_cache_without_views_has_no_view_columns() {
    let Some((_d, _, out, _)) = extracted(
        "views::a_cache_without_views_has_no_view_columns",
        ViewSettings::default(),
    ) else {
        return;
    };
    let cache = FeatureCache::open(&out).unwrap();
    assert!(!cache.has_views() && cache.row_views().iter().all(|&v| v == 0));
    for name in files(&out).into_keys().filter(|n| n.ends_with(".parquet")) {
        let file = std::fs::File::open(out.join(&name)).unwrap();
        let meta =
            parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default())
                .unwrap();
        let names: Vec<&str> = meta
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "path",
                "split",
                "label",
                "class",
                "content_hash",
                "features"
            ],
            "{name}"
        );
    }
}

#[test]
fn unchanged_images_keep_their_views_on_a_rerun() {
    if common::ort("views::unchanged_images_keep_their_views_on_a_rerun").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = crate::sharded::images(d.path());
    let out = d.path().join("cache");
    let cfg = config(&imgs, &out, views());
    vggcache::extract::run(&cfg, &Silent).unwrap();
    let before = files(&out);
    let again = vggcache::extract::run(&cfg, &Silent).unwrap();
    assert_eq!(again.extracted, 0, "nothing extracted again");
    assert_eq!(
        again.reused,
        24 + 20 * K as usize + 4 * augment::TTA_VIEWS as usize
    );
    assert_eq!(files(&out), before, "no byte of the cache changed");

    // One changed training image: its plain row and its K views are made again, nothing else.
    let changed = imgs.join("train/cat/cat.3.jpg");
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 10, 10]))
        .save(&changed)
        .unwrap();
    let third = vggcache::extract::run(&cfg, &Silent).unwrap();
    assert_eq!(third.extracted, 1 + K as usize);
    // Fewer views asked for: the extra ones go, none is made.
    let fewer = ViewSettings {
        train_views: 1,
        ..views()
    };
    let fourth = vggcache::extract::run(&config(&imgs, &out, fewer), &Silent).unwrap();
    assert_eq!((fourth.extracted, fourth.removed), (0, 20));
    let cache = FeatureCache::open(&out).unwrap();
    assert!(cache.row_views().iter().all(|&v| v <= augment::TTA_VIEWS));
    assert_eq!(
        (0..cache.len())
            .filter(|&i| cache.row_splits()[i] == Split::Train && cache.row_views()[i] > 0)
            .count(),
        20
    );
}

/// `train-head` on `features` with a small head and `extra` flags; the run folder.
fn train_head(dir: &Path, features: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .arg("train-head")
        .arg("--features")
        .arg(features)
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .args([
            "--name",
            name,
            "--hidden",
            "16",
            "--epochs",
            "3",
            "--batch-size",
            "8",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    dir.join("runs").join(name)
}

#[test]
fn train_head_samples_views_and_predict_tta_is_the_mean_over_views() {
    let Some((d, imgs, out, _)) =
        extracted("views::train_head_samples_views_and_predict_tta", views())
    else {
        return;
    };

    let run = train_head(d.path(), &out, "views", &["--tta"]);
    let (head, meta) = vggcache::head::FittedHead::load(&run.join("head.safetensors")).unwrap();
    assert_eq!(meta.get("views").map(String::as_str), Some("sample"));
    assert_eq!(meta.get("view_rows").map(String::as_str), Some("40"));
    assert_eq!(meta.get("tta").map(String::as_str), Some("true"));
    // --tta on a cache without test-time views says how to add them.
    let plain = d.path().join("plain");
    let no_tta = ViewSettings {
        tta: false,
        ..views()
    };
    vggcache::extract::run(&config(&imgs, &plain, no_tta), &Silent).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args([
            "train-head",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--tta",
            "--features",
        ])
        .arg(&plain)
        .arg("--runs-dir")
        .arg(d.path().join("runs"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("--tta-views"), "{}", text(&o));

    // predict --tta on the val images: each image's probabilities are the mean over its plain
    // view and its six cached test-time views, as the library predicts them one by one.
    let csv = d.path().join("pred.csv");
    let pcache = d.path().join("pcache");
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args([
            "predict",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--tta",
            "--head",
        ])
        .arg(&run)
        .arg("--model")
        .arg(tiny_trunk())
        .arg("--images")
        .arg(imgs.join("val"))
        .arg("--cache")
        .arg(&pcache)
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let cache = FeatureCache::open(&pcache).unwrap();
    assert_eq!(cache.len(), 4 * (1 + augment::TTA_VIEWS as usize));
    let all = cache.all().unwrap();
    let proba = head.predict_proba(all.features.view());
    let mut want: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
    for i in 0..cache.len() {
        assert!(i == 0 || cache.row_view_kinds()[i] != Some(ViewKind::Aug));
        let e = want
            .entry(all.paths[i].clone())
            .or_insert((vec![0.0; 2], 0));
        for c in 0..2 {
            e.0[c] += f64::from(proba[[i, c]]);
        }
        e.1 += 1;
    }
    let text_csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text_csv.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{text_csv}");
    let mut differs_from_plain = false;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (sum, n) = &want[f[0]];
        assert_eq!(*n, 7, "{}", f[0]);
        for c in 0..2 {
            let got: f64 = f[2 + c].parse().unwrap();
            assert!(
                (got - sum[c] / 7.0).abs() < 2e-6,
                "{line}: want {}",
                sum[c] / 7.0
            );
        }
        let plain_row = (0..cache.len())
            .find(|&i| all.paths[i] == f[0] && all.views[i] == 0)
            .unwrap();
        let p0: f64 = f[2].parse().unwrap();
        differs_from_plain |= (p0 - f64::from(proba[[plain_row, 0]])).abs() > 1e-6;
    }
    assert!(
        differs_from_plain,
        "TTA changed no prediction: were the views averaged?"
    );
}

/// `(model, path) → probabilities` of a predictions.csv.
fn predictions(path: &Path) -> BTreeMap<(String, String), Vec<f64>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let p = rec.iter().skip(4).map(|v| v.parse().unwrap()).collect();
            ((rec[0].to_string(), rec[1].to_string()), p)
        })
        .collect()
}

#[test]
fn compare_baselines_fits_linfa_on_all_views_and_scores_every_model_by_tta() {
    use vggcache::baseline::{fit_logistic, Classifier};
    use vggcache::jobs::{compare, CompareConfig};
    let Some((d, imgs, out, _)) =
        extracted("views::compare_baselines_fits_linfa_on_all_views", views())
    else {
        return;
    };
    let run = train_head(d.path(), &out, "views", &[]);
    let cfg = CompareConfig {
        features: out.clone(),
        head: Some(run.clone()),
        c: Some(1.0),
        logistic_views: true,
        tta: true,
        out: d.path().join("cmp"),
        ..CompareConfig::default()
    };
    let r = compare(&cfg, &Silent).unwrap();
    let notes = r.report.notes.join("\n");
    assert!(notes.contains("fitted on 60 rows"), "{notes}");
    assert!(notes.contains("test-time augmentation"), "{notes}");
    assert_eq!((r.report.n_train, r.report.n_val), (20, 4));

    // By hand: linfa fitted on every train row (plain and augmented views, the image's label);
    // each model's val probabilities the mean over the image's plain and test-time rows.
    let cache = FeatureCache::open(&out).unwrap();
    let all = cache.all().unwrap();
    let label = |i: usize| cache.row_labels()[i].unwrap() as usize;
    let train: Vec<usize> = (0..cache.len())
        .filter(|&i| cache.row_splits()[i] == Split::Train)
        .collect();
    let x = all.features.select(ndarray::Axis(0), &train);
    let y: Vec<usize> = train.iter().map(|&i| label(i)).collect();
    let logistic = fit_logistic(&cfg.logistic_params(1.0), x.view(), &y, 2).unwrap();
    let (head, _) = vggcache::head::FittedHead::load(&run.join("head.safetensors")).unwrap();
    let got = predictions(&r.predictions);
    let head_name = got
        .keys()
        .map(|(m, _)| m.clone())
        .find(|m| m.starts_with("mlp head"))
        .unwrap();
    let mut views_seen = 0;
    for (model, proba) in [
        (
            "linfa-logistic".to_string(),
            logistic.predict_proba(all.features.view()),
        ),
        (head_name, head.predict_proba(all.features.view())),
    ] {
        let mut want: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
        for i in (0..cache.len()).filter(|&i| cache.row_splits()[i] == Split::Val) {
            let e = want
                .entry(all.paths[i].clone())
                .or_insert((vec![0.0; 2], 0));
            for c in 0..2 {
                e.0[c] += f64::from(proba[[i, c]]);
            }
            e.1 += 1;
        }
        assert_eq!(want.len(), 4);
        for (path, (sum, n)) in want {
            views_seen += n;
            let p = &got[&(model.clone(), path.clone())];
            for c in 0..2 {
                assert!(
                    (p[c] - sum[c] / n as f64).abs() < 1e-5,
                    "{model} {path}: {} vs {}",
                    p[c],
                    sum[c] / n as f64
                );
            }
        }
    }
    assert_eq!(views_seen, 2 * 4 * (1 + augment::TTA_VIEWS as usize));

    // Without augmented views, --logistic-views all says how to make them.
    let plain = d.path().join("plain");
    let tta_only = ViewSettings {
        train_views: 0,
        ..views()
    };
    vggcache::extract::run(&config(&imgs, &plain, tta_only), &Silent).unwrap();
    let e = compare(
        &CompareConfig {
            features: plain,
            ..cfg.clone()
        },
        &Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("extract --views K"), "{e}");
}

#[test]
fn adding_views_to_a_plain_cache_gives_every_shard_the_view_columns() {
    let Some((_d, imgs, out, _)) = extracted(
        "views::adding_views_to_a_plain_cache",
        ViewSettings::default(),
    ) else {
        return;
    };
    // Views added by a later run (tests/it/cache.rs checks the writer's rewrite of plain shards
    // that compaction leaves alone).
    vggcache::extract::run(&config(&imgs, &out, views()), &Silent).unwrap();
    // A reader that takes the first file's schema for all (pyarrow's dataset) sees every view.
    let script = r#"
import json, sys
import pyarrow.parquet as pq
root = sys.argv[1]
files = [root + "/" + s["file"] for s in json.load(open(root + "/manifest.json"))["shards"]]
assert all("view" in pq.read_schema(f).names for f in files), files
t = pq.read_table(files)
views = t.column("view").to_pylist()
print(json.dumps([len(views), views.count(0)]))
"#;
    let Some(counts) = pyarrow_json::<Vec<usize>>("views::adding_views (pyarrow)", script, &out)
    else {
        return;
    };
    let views = 20 * K as usize + 4 * augment::TTA_VIEWS as usize;
    assert_eq!(counts, vec![24 + views, 24]);
}

#[test]
fn streaming_says_it_reads_plain_rows_and_a_sharded_plan_refuses_views() {
    let Some((d, imgs, out, _)) = extracted("views::streaming_says_it_reads_plain_rows", views())
    else {
        return;
    };
    let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["train-head", "--stream", "--hidden", "16", "--epochs", "1"])
        .arg("--features")
        .arg(&out)
        .arg("--runs-dir")
        .arg(d.path().join("runs"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(
            "streaming reads the plain images only: the 40 augmented view rows are not used"
        ),
        "{t}"
    );
    for flag in [&["--views", "2"][..], &["--tta-views"][..]] {
        let o = Command::new(env!("CARGO_BIN_EXE_vggcache"))
            .args(["extract", "--shard", "0/2"])
            .args(flag)
            .arg("--plan")
            .arg(d.path().join("plan"))
            .arg("--images")
            .arg(&imgs)
            .output()
            .unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(
            t.contains("cannot be used with") && t.contains("--plan"),
            "{t}"
        );
    }
}
