//! The whole product through the binary on the tiny trunk: extract → train-head → compare-baselines,
//! predict (CSV, Kaggle), export (head, head + trunk) checked against the library and ONNX Runtime,
//! and the bad inputs of issue 5 (not a run, other trunk, other classes, empty val split, bad flag).
//!
//! Each test builds its own small world in a temp dir (generated PNGs, classes told apart by hue,
//! with pixel noise; unlabelled test images between the hues get uncertain probabilities) and runs
//! the binary with that dir as the working directory, so nothing lands in the checkout. ONNX Runtime comes from
//! `ORT_DYLIB_PATH`, else the project `.venv` (the search of `vggcache::trunk::find_library`); the
//! binary is given the same library through `ORT_DYLIB_PATH`. Without one every test skips loudly.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;
use vggcache::baseline::{
    fit_logistic, fit_majority, search_c, CSearchParams, Classifier, LogisticParams,
};
use vggcache::cache::FeatureCache;
use vggcache::dataset::{decode_rgb8, preprocess_into, DecodeLimits};
use vggcache::export::{inspect, OUTPUT_NAME};
use vggcache::head::FittedHead;
use vggcache::jobs::train_val;
use vggcache::metrics;
use vggcache::report::CompareReport;

/// Largest accepted difference between two routes to the same probability.
const TOL: f32 = 1e-5;

use crate::common;

use common::fixture;

/// The shared tiny trunk (`scripts/fixtures/make_tiny_trunk.py`).
fn trunk_a() -> PathBuf {
    fixture("tiny_trunk.onnx")
}

/// The same graph with other weights (`scripts/fixtures/make_workflow_trunk_b.py`).
fn trunk_b() -> PathBuf {
    fixture("workflow/tiny_trunk_b.onnx")
}

/// Builds an `OsStr` argument list from strings and paths alike.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(OsStr::new(&$a)),*] };
}

/// One test's world: a temp dir (also the binary's working directory) and the runtime library.
struct World {
    dir: TempDir,
    ort_lib: PathBuf,
    env: &'static Environment,
}

impl World {
    /// `None` (after a `setup` skip) when no ONNX Runtime library is found.
    fn new(test: &str) -> Option<World> {
        let (ort_lib, env) = common::ort(test)?;
        Some(World {
            dir: tempfile::tempdir().expect("tempdir"),
            ort_lib,
            env,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs the binary in the world's dir.
    fn run(&self, args: &[&OsStr]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vggcache"))
            .args(args)
            .current_dir(self.dir.path())
            .env("ORT_DYLIB_PATH", &self.ort_lib)
            .output()
            .expect("run vggcache")
    }

    /// Runs the binary and asserts success; returns stdout.
    fn ok(&self, args: &[&OsStr]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "vggcache {args:?} failed:\n{}",
            text(&o)
        );
        String::from_utf8(o.stdout).expect("utf-8 stdout")
    }

    /// `extract --images images --out self/out --model model`.
    fn extract(&self, images: &Path, out: &str, model: &Path, extra: &[&str]) -> PathBuf {
        let out = self.path(out);
        let mut a: Vec<&OsStr> = args![
            "extract",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--model",
            model,
            "--images",
            images,
            "--out",
            out
        ]
        .to_vec();
        a.extend(extra.iter().map(OsStr::new));
        self.ok(&a);
        out
    }

    /// A small, quick head on `cache`, written to `runs/NAME` (lr 1e-3: the default 1e-4 is chosen
    /// for the full-size head on 25,088 features and moves a 16-wide head too little in 10 epochs).
    fn train(&self, cache: &Path, name: &str) -> PathBuf {
        self.ok(args![
            "train-head",
            "--features",
            cache,
            "--name",
            name,
            "--lr",
            "1e-3",
            "--hidden",
            "16,16",
            "--epochs",
            "10",
            "--batch-size",
            "8",
            "--dropout",
            "0.1"
        ]);
        self.path("runs").join(name)
    }

    /// Two-class ImageFolder data, its cache with trunk A and a head trained on it.
    fn trained(&self) -> (PathBuf, PathBuf) {
        let data = self.path("data");
        image_folder(&data, &["cat", "dog"], 20, 8, 1);
        let cache = self.extract(&data, "cache_a", &trunk_a(), &[]);
        let run = self.train(&cache, "x");
        (cache, run)
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A 24x24 PNG of a colour `t` of the way from red to blue (then `t` past blue towards green for a
/// third class), with uniform noise of ±45 per channel and pixel.
fn write_png(path: &Path, t: f32, rng: &mut StdRng) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    let (red, blue, green) = (
        [200.0, 60.0, 40.0],
        [40.0, 80.0, 210.0],
        [50.0, 210.0, 60.0],
    );
    let base: [f32; 3] = std::array::from_fn(|c| {
        if t <= 1.0 {
            (1.0 - t) * red[c] + t * blue[c]
        } else {
            (2.0 - t) * blue[c] + (t - 1.0) * green[c]
        }
    });
    let img = image::RgbImage::from_fn(24, 24, |_, _| {
        image::Rgb(std::array::from_fn(|c| {
            (base[c] + rng.random_range(-45.0..45.0)).clamp(0.0, 255.0) as u8
        }))
    });
    img.save(path).expect("write png");
}

/// `root/{train,val}/CLASS/CLASS.i.png`: class k draws its colour from `[k - 0.35, k + 0.35]`
/// clipped to `[0, classes - 1]`: separable by hue, noisy per pixel.
fn image_folder(root: &Path, classes: &[&str], train: usize, val: usize, seed: u64) {
    images(root, classes, &[("train", train), ("val", val)], seed);
}

/// `root/SPLIT/CLASS/CLASS.i.png` for each `(SPLIT, count)`; an empty SPLIT writes `root/CLASS/`.
fn images(root: &Path, classes: &[&str], splits: &[(&str, usize)], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let top = (classes.len() - 1) as f32;
    for &(split, n) in splits {
        for (k, class) in classes.iter().enumerate() {
            for i in 0..n {
                let t = (k as f32 + rng.random_range(-0.35..0.35)).clamp(0.0, top);
                write_png(
                    &root
                        .join(split)
                        .join(class)
                        .join(format!("{class}.{i}.png")),
                    t,
                    &mut rng,
                );
            }
        }
    }
}

/// `root/1.png .. root/n.png`, unlabelled, colours spread over both classes.
fn unlabelled_folder(root: &Path, n: usize) -> Vec<PathBuf> {
    let mut rng = StdRng::seed_from_u64(99);
    (1..=n)
        .map(|i| {
            let p = root.join(format!("{i}.png"));
            let t = rng.random_range(0.0..1.0);
            write_png(&p, t, &mut rng);
            p
        })
        .collect()
}

fn load_head(run: &Path) -> FittedHead {
    FittedHead::load(&run.join("head.safetensors"))
        .expect("head loads")
        .0
}

/// `(header, rows)` of a CSV text.
fn parse_csv(s: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(s.as_bytes());
    let header = r
        .headers()
        .expect("csv header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("csv row").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// predict's CSV: checks its form; returns `(path, class, probs)` per row, in file order.
fn check_predict_csv(s: &str, classes: &[String]) -> Vec<(String, String, Vec<f32>)> {
    let (header, rows) = parse_csv(s);
    let mut want = vec!["path".to_string(), "class".into()];
    want.extend(classes.iter().map(|c| format!("prob_{c}")));
    assert_eq!(header, want, "CSV header");
    rows.into_iter()
        .map(|r| {
            assert_eq!(r.len(), 2 + classes.len(), "row {r:?}");
            let p: Vec<f32> = r[2..]
                .iter()
                .map(|v| v.parse().expect("probability is a number"))
                .collect();
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "row {r:?}");
            let sum: f32 = p.iter().sum();
            assert!((sum - 1.0).abs() <= TOL, "row {r:?} sums to {sum}");
            let best = metrics::argmax_rows(&p, classes.len())[0];
            assert_eq!(r[1], classes[best], "class is the arg-max in row {r:?}");
            (r[0].clone(), r[1].clone(), p)
        })
        .collect()
}

/// Worst `|a - b|` over two equally long sequences.
fn max_diff<'a>(a: impl IntoIterator<Item = &'a f32>, b: impl IntoIterator<Item = &'a f32>) -> f32 {
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.into_iter().copied().collect(),
        b.into_iter().copied().collect(),
    );
    assert_eq!(a.len(), b.len(), "same number of probabilities");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The library head on the features a cache holds for `paths`, one row per path.
fn head_on_cache(head: &FittedHead, cache: &Path, paths: &[String]) -> Array2<f32> {
    let all = FeatureCache::open(cache)
        .expect("cache opens")
        .all()
        .expect("cache reads");
    let index: BTreeMap<&str, usize> = all
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let rows: Vec<usize> = paths
        .iter()
        .map(|p| {
            *index
                .get(p.as_str())
                .unwrap_or_else(|| panic!("{p} not cached"))
        })
        .collect();
    head.predict_proba(all.features.select(ndarray::Axis(0), &rows).view())
}

/// Runs an ONNX model on one float input; returns its `probabilities` output `(n, C)`.
fn ort_probabilities(
    env: &Environment,
    model: &Path,
    input: &str,
    x: Vec<f32>,
    shape: &[usize],
) -> Array2<f32> {
    let mut session = Session::builder(env)
        .expect("builder")
        .commit_from_file(model)
        .unwrap_or_else(|e| panic!("ORT loads {}: {e}", model.display()));
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let outputs = session
        .run(ort::inputs![input => Tensor::from_array((dims, x)).expect("tensor")])
        .expect("ORT runs the model");
    let (s, v) = outputs[OUTPUT_NAME]
        .try_extract_tensor::<f32>()
        .expect("f32 probabilities");
    Array2::from_shape_vec((s[0] as usize, s[1] as usize), v.to_vec()).expect("(n, C)")
}

/// The `metadata_props` of an ONNX model file, as ONNX Runtime reads them.
fn onnx_metadata(env: &Environment, model: &Path) -> BTreeMap<String, String> {
    let session = Session::builder(env)
        .expect("builder")
        .commit_from_file(model)
        .expect("loads");
    let meta = session.metadata().expect("metadata");
    let keys = meta.custom_keys().expect("keys");
    keys.into_iter()
        .map(|k| {
            let v = meta.custom(&k).expect("present");
            (k, v)
        })
        .collect()
}

fn assert_refused(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    assert!(!err.contains("panicked"), "{}", text(o));
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{}", text(o));
    }
}

#[test]
fn compare_report_equals_a_recomputation_with_the_library() {
    let Some(w) = World::new("compare_report_equals_a_recomputation_with_the_library") else {
        return;
    };
    let (cache, run) = w.trained();
    let out = w.path("cmp");
    let stdout = w.ok(args![
        "compare-baselines",
        "--features",
        cache,
        "--head",
        run,
        "--out",
        out
    ]);
    let json = std::fs::read_to_string(out.join("compare.json")).expect("compare.json");
    let md = std::fs::read_to_string(out.join("compare.md")).expect("compare.md");
    let report =
        CompareReport::from_json(&json).expect("compare.json reads back as a CompareReport");
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "majority class");
    assert_eq!(names[1], "linfa-logistic");
    assert!(names[2].starts_with("mlp head ("), "{names:?}");
    assert!(
        json.contains("\"fit_seconds\": null") && report.rows[2].fit_seconds.is_nan(),
        "a given head's unknown fit time is written as null and read back as NaN"
    );

    // The same split, models and metrics, through the library.
    let fc = FeatureCache::open(&cache).expect("cache");
    let head = load_head(&run);
    let (train, val, held_out) = train_val(&fc, 0.2, head.config().seed).expect("split");
    assert!(!held_out, "the images have a val folder");
    assert_eq!(
        (report.n_train, report.n_val, report.feature_dim),
        (40, 16, 128)
    );
    assert_eq!(report.classes, ["cat", "dog"]);
    let majority = fit_majority(&train.y, 2).expect("majority");
    // compare-baselines' default: C searched on a split of train, then refitted on all of train.
    let search = search_c(
        &LogisticParams::default(),
        &CSearchParams::default(),
        train.x.view(),
        &train.y,
        2,
    )
    .expect("C search");
    let params = LogisticParams {
        l2: LogisticParams::l2_from_sklearn_c(search.chosen_c),
        ..LogisticParams::default()
    };
    let logistic = fit_logistic(&params, train.x.view(), &train.y, 2).expect("logistic");
    assert_eq!(report.sections.len(), 1, "the accuracy-against-C table");
    assert_eq!(report.sections[0].rows.len(), search.curve.len());
    let probas = [
        majority.predict_proba(val.x.view()),
        logistic.predict_proba(val.x.view()),
        head.predict_proba(val.x.view()),
    ];
    for (row, p) in report.rows.iter().zip(&probas) {
        let flat = p.as_slice().expect("standard layout");
        let pred = metrics::argmax_rows(flat, 2);
        let accuracy = metrics::accuracy(&val.y, &pred);
        assert_eq!(row.accuracy, accuracy, "{}: accuracy", row.name);
        let log_loss = metrics::log_loss(&val.y, flat, 2);
        assert!(
            (row.log_loss - log_loss).abs() < 1e-9,
            "{}: log loss {} vs {log_loss}",
            row.name,
            row.log_loss
        );
        let cm = metrics::confusion_matrix(&val.y, &pred, 2);
        for (score, (p, r)) in row.per_class.iter().zip(metrics::precision_recall(&cm)) {
            assert_eq!((score.precision, score.recall), (p, r), "{}", row.name);
        }
        let cell = format!(" {accuracy:.4} ");
        assert!(
            md.contains(&cell) && stdout.contains(&cell),
            "{cell} not shown:\n{md}"
        );
        eprintln!(
            "{}: accuracy {accuracy:.4}, log loss {log_loss:.4}",
            row.name
        );
    }
    // The written predictions: every model's rows, and the report's numbers recomputed from them.
    let csv = std::fs::read_to_string(out.join("predictions.csv")).expect("predictions.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("model,path,label,predicted,prob_cat,prob_dog")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        3 * val.y.len(),
        "one row per model and val image"
    );
    let class_index = |c: &str| ["cat", "dog"].iter().position(|x| *x == c).expect("class");
    for row in &report.rows {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == row.name).collect();
        assert_eq!(mine.len(), val.y.len(), "{}", row.name);
        let y: Vec<usize> = mine.iter().map(|r| class_index(r[2])).collect();
        let pred: Vec<usize> = mine.iter().map(|r| class_index(r[3])).collect();
        let probs: Vec<f32> = mine
            .iter()
            .flat_map(|r| r[4..].iter().map(|v| v.parse::<f32>().expect("prob")))
            .collect();
        assert_eq!(y, val.y, "{}: labels in val order", row.name);
        assert_eq!(metrics::accuracy(&y, &pred), row.accuracy, "{}", row.name);
        assert!(
            (metrics::log_loss(&y, &probs, 2) - row.log_loss).abs() < 1e-6,
            "{}: log loss from predictions.csv",
            row.name
        );
    }
    assert_eq!(report.rows[0].accuracy, 0.5, "balanced val split");
    assert!(
        report.rows[1].accuracy > report.rows[0].accuracy,
        "logistic beats majority"
    );
    assert!(
        report.rows[2].accuracy > report.rows[0].accuracy,
        "head beats majority"
    );
}

#[test]
fn predict_csv_and_kaggle_parse_back_and_match_the_library_head() {
    let Some(w) = World::new("predict_csv_and_kaggle_parse_back_and_match_the_library_head") else {
        return;
    };
    let (cache, run) = w.trained();
    let test = w.path("test");
    let files = unlabelled_folder(&test, 10);
    let head = load_head(&run);
    let classes = head.classes().to_vec();
    let ta = trunk_a();
    let predict =
        args!["predict", "--device", "cpu", "--model", ta, "--head", run, "--images", test];

    // Default: CSV on stdout, features in predict-cache/<hash> under the working directory.
    let csv = w.ok(predict);
    let rows = check_predict_csv(&csv, &classes);
    let ids: Vec<String> = (1..=files.len()).map(|i| i.to_string()).collect();
    let paths: Vec<String> = ids.iter().map(|i| format!("{i}.png")).collect();
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        paths,
        "one row per image, in natural order"
    );
    let caches: Vec<PathBuf> = std::fs::read_dir(w.path("predict-cache"))
        .expect("predict made predict-cache/ in the working directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    assert!(!w.path("cache").exists(), "nothing under cache/");
    let lib = head_on_cache(&head, &caches[0], &paths);
    let diff = max_diff(rows.iter().flat_map(|r| &r.2), lib.iter());
    assert!(diff <= TOL, "CSV vs library head: {diff:e}");
    eprintln!("predict CSV vs FittedHead::predict_proba: max |diff| {diff:e}");
    let (lo, hi) = lib
        .column(1)
        .fold((1f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(
        lo < 0.4 && hi > 0.6,
        "probabilities spread over both classes: [{lo}, {hi}]"
    );

    // --out FILE: the same text, nothing on stdout.
    let file = w.path("pred.csv");
    let mut a = predict.to_vec();
    a.extend(args!["--out", file]);
    assert_eq!(w.ok(&a), "", "results go to the file");
    assert_eq!(std::fs::read_to_string(&file).expect("pred.csv"), csv);

    // Kaggle: id = file stem, label = P(class 1), same rows.
    let kaggle_file = w.path("kaggle.csv");
    let mut a = predict.to_vec();
    a.extend(args!["--format", "kaggle", "--out", kaggle_file]);
    w.ok(&a);
    let (header, krows) = parse_csv(&std::fs::read_to_string(&kaggle_file).expect("kaggle.csv"));
    assert_eq!(header, ["id", "label"]);
    assert_eq!(krows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), ids);
    for (k, r) in krows.iter().zip(&rows) {
        let label: f32 = k[1].parse().expect("label is a number");
        assert_eq!(
            label, r.2[1],
            "kaggle label of {} = CSV prob_{}",
            k[0], classes[1]
        );
    }

    // Labelled images already in the training cache: predict's freshly extracted features give the
    // head's probabilities on the training cache's rows for the same files.
    let val_images = w.path("data/val");
    let val_cache = w.path("val_cache");
    let a = args![
        "predict", "--device", "cpu", "--model", ta, "--head", run, "--images", val_images,
        "--cache", val_cache
    ];
    let vrows = check_predict_csv(&w.ok(a), &classes);
    assert_eq!(vrows.len(), 16);
    let in_training: Vec<String> = vrows.iter().map(|r| format!("val/{}", r.0)).collect();
    let lib = head_on_cache(&head, &cache, &in_training);
    let diff = max_diff(vrows.iter().flat_map(|r| &r.2), lib.iter());
    assert!(
        diff <= TOL,
        "predict on val/ vs head on the training cache: {diff:e}"
    );
}

/// The `path` column of every Parquet file `glob("DIR/**/*.parquet", recursive=True)` finds, read
/// by pyarrow as a user would; `None` (after a skip) without pyarrow.
fn globbed_paths(test: &str, dir: &Path) -> Option<Vec<String>> {
    let py = common::python_with(test, &["pyarrow"])?;
    let code = r#"
import sys, glob, json, pyarrow.parquet as pq
files = sorted(glob.glob(sys.argv[1] + '/**/*.parquet', recursive=True))
print(json.dumps([p for f in files for p in pq.read_table(f, columns=['path'])['path'].to_pylist()]))
"#;
    let o = Command::new(py)
        .args(["-c", code])
        .arg(dir)
        .output()
        .expect("run python");
    assert!(o.status.success(), "{}", text(&o));
    let mut paths: Vec<String> = serde_json::from_slice(&o.stdout).expect("a JSON list");
    paths.sort();
    Some(paths)
}

/// Issue 33: with the training cache in the default `cache/`, `predict` keeps its own cache beside
/// it, so a glob over `cache/` reads only training rows; a second `predict` reuses its cache, and
/// one left inside the training cache by an earlier version (`cache/predict-<hash>`) is moved out
/// (renamed, not extracted again).
#[test]
fn predict_cache_stays_out_of_the_training_cache_glob() {
    let t = "predict_cache_stays_out_of_the_training_cache_glob";
    let Some(w) = World::new(t) else {
        return;
    };
    let data = w.path("data");
    image_folder(&data, &["cat", "dog"], 6, 3, 1);
    let cache = w.extract(&data, "cache", &trunk_a(), &[]);
    let run = w.train(&cache, "x");
    let mut training = FeatureCache::open(&cache).unwrap().all().unwrap().paths;
    training.sort();
    let Some(before) = globbed_paths(t, &cache) else {
        return;
    };
    assert_eq!(before, training, "the glob reads the training cache");

    let test = w.path("test");
    unlabelled_folder(&test, 5);
    let ta = trunk_a();
    let predict =
        args!["predict", "--device", "cpu", "--model", ta, "--head", run, "--images", test];
    let first = w.run(predict);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("extracted 5  reused 0"),
        "{}",
        text(&first)
    );
    assert_eq!(
        globbed_paths(t, &cache).unwrap(),
        training,
        "after predict the glob over cache/ sees only training rows"
    );
    let own: Vec<PathBuf> = std::fs::read_dir(w.path("predict-cache"))
        .expect("predict-cache/ beside cache/")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(globbed_paths(t, &own[0]).unwrap().len(), 5);

    let second = w.run(predict);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("extracted 0  reused 5"),
        "the second predict reuses its cache: {}",
        text(&second)
    );
    assert_eq!(first.stdout, second.stdout, "the same predictions");

    // A cache where earlier versions kept it, inside the training cache: moved out on the next
    // predict, whole (nothing extracted again), and the glob is clean again.
    let hash = own[0].file_name().unwrap().to_string_lossy().into_owned();
    let legacy = cache.join(format!("predict-{hash}"));
    std::fs::rename(&own[0], &legacy).unwrap();
    assert_eq!(globbed_paths(t, &cache).unwrap().len(), training.len() + 5);
    let third = w.run(predict);
    assert!(third.status.success(), "{}", text(&third));
    let said = text(&third);
    assert!(said.contains("moved predict's cache"), "{said}");
    assert!(said.contains("extracted 0  reused 5"), "{said}");
    assert!(!legacy.exists() && own[0].is_dir(), "{said}");
    assert_eq!(globbed_paths(t, &cache).unwrap(), training);
    assert_eq!(first.stdout, third.stdout, "the same predictions");

    // One whose new place is taken stays where it is, named, and breaks nothing.
    std::fs::create_dir(&legacy).unwrap();
    std::fs::write(legacy.join("x.parquet"), b"not parquet").unwrap();
    let fourth = w.run(predict);
    assert!(fourth.status.success(), "{}", text(&fourth));
    assert!(text(&fourth).contains("left "), "{}", text(&fourth));
    assert!(legacy.join("x.parquet").is_file(), "left in place");
    assert_eq!(first.stdout, fourth.stdout, "the same predictions");
}

#[test]
fn exported_models_give_predicts_probabilities_through_ort() {
    let Some(w) = World::new("exported_models_give_predicts_probabilities_through_ort") else {
        return;
    };
    let (_, run) = w.trained();
    let test = w.path("test");
    let files = unlabelled_folder(&test, 6);
    let head = load_head(&run);
    let pcache = w.path("pcache");
    let csv = w.ok(args![
        "predict",
        "--device",
        "cpu",
        "--model",
        trunk_a(),
        "--head",
        run,
        "--images",
        test,
        "--cache",
        pcache
    ]);
    let rows = check_predict_csv(&csv, head.classes());
    let want: Vec<f32> = rows.iter().flat_map(|r| r.2.clone()).collect();
    let paths: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();

    // Head only: input `features` (n, 128) from predict's cache.
    let head_onnx = w.path("head.onnx");
    w.ok(args!["export", "--head", run, "--out", head_onnx]);
    let all = FeatureCache::open(&pcache)
        .expect("cache")
        .all()
        .expect("read");
    let rows_of: Vec<usize> = paths
        .iter()
        .map(|p| all.paths.iter().position(|q| q == p).expect("cached"))
        .collect();
    let x = all.features.select(ndarray::Axis(0), &rows_of);
    let got = ort_probabilities(
        w.env,
        &head_onnx,
        "features",
        x.iter().copied().collect(),
        &[x.nrows(), x.ncols()],
    );
    let diff = max_diff(got.iter(), want.iter());
    assert!(diff <= TOL, "exported head (ORT) vs predict CSV: {diff:e}");
    let diff_lib = max_diff(got.iter(), head.predict_proba(x.view()).iter());
    assert!(
        diff_lib <= TOL,
        "exported head (ORT) vs FittedHead: {diff_lib:e}"
    );
    eprintln!("head.onnx: max |diff| vs CSV {diff:e}, vs FittedHead {diff_lib:e}");
    let fingerprint = vggcache::trunk::fingerprint_file(&trunk_a()).expect("fingerprint");
    let meta = onnx_metadata(w.env, &head_onnx);
    assert_eq!(
        meta.get("classes").map(String::as_str),
        Some(r#"["cat","dog"]"#)
    );
    assert_eq!(meta.get("vggcache.trunk_fingerprint"), Some(&fingerprint));

    // Trunk + head: input the preprocessed image tensor, made by the library from the same files.
    let full = w.path("full.onnx");
    w.ok(args![
        "export",
        "--head",
        run,
        "--with-trunk",
        "--model",
        trunk_a(),
        "--out",
        full
    ]);
    let spec = FeatureCache::open(&pcache)
        .expect("cache")
        .manifest()
        .preprocess
        .clone();
    let len = spec.tensor_len();
    let mut images = vec![0f32; paths.len() * len];
    for (p, out) in paths.iter().zip(images.chunks_exact_mut(len)) {
        let img = decode_rgb8(&test.join(p), &DecodeLimits::default()).expect("decodes");
        preprocess_into(&img, &spec, out);
    }
    let trunk_input = inspect(&std::fs::read(trunk_a()).expect("trunk"))
        .expect("parses")
        .graph_inputs[0]
        .clone();
    let shape = [paths.len(), 3, spec.height as usize, spec.width as usize];
    let got = ort_probabilities(w.env, &full, &trunk_input, images, &shape);
    assert_eq!(got.dim(), (files.len(), 2));
    let diff = max_diff(got.iter(), want.iter());
    assert!(
        diff <= TOL,
        "exported trunk + head (ORT) vs predict CSV: {diff:e}"
    );
    eprintln!("full.onnx: max |diff| vs CSV {diff:e}");
    let meta = onnx_metadata(w.env, &full);
    assert_eq!(meta.get("vggcache.trunk_fingerprint"), Some(&fingerprint));
    let carried = meta
        .get("vggcache.preprocess")
        .expect("trunk preprocessing carried over");
    let carried: vggcache::spec::PreprocessSpec = serde_json::from_str(carried).expect("spec JSON");
    assert_eq!(carried, spec);
}

#[test]
fn a_head_folder_that_is_not_a_run_is_refused() {
    let Some(w) = World::new("a_head_folder_that_is_not_a_run_is_refused") else {
        return;
    };
    let data = w.path("data");
    image_folder(&data, &["cat", "dog"], 4, 2, 1);
    let cache = w.extract(&data, "cache_a", &trunk_a(), &[]);
    let empty = w.path("runs/empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    for head in [empty, w.path("runs/missing")] {
        let shown = head.display().to_string();
        let needles = ["is not a train-head run", shown.as_str()];
        let o = w.run(args![
            "compare-baselines",
            "--features",
            cache,
            "--head",
            head
        ]);
        assert_refused(&o, &needles);
        let o = w.run(args![
            "predict",
            "--model",
            trunk_a(),
            "--head",
            head,
            "--images",
            data
        ]);
        assert_refused(&o, &needles);
        let o = w.run(args!["export", "--head", head, "--out", w.path("x.onnx")]);
        assert_refused(&o, &needles);
        assert!(!w.path("x.onnx").exists());
    }
}

#[test]
fn a_head_from_another_trunk_is_refused() {
    let Some(w) = World::new("a_head_from_another_trunk_is_refused") else {
        return;
    };
    let fp = |p: &Path| vggcache::trunk::fingerprint_file(p).expect("fingerprint");
    assert_ne!(fp(&trunk_a()), fp(&trunk_b()), "the two fixtures differ");
    let data = w.path("data");
    image_folder(&data, &["cat", "dog"], 6, 2, 1);
    let cache_a = w.extract(&data, "cache_a", &trunk_a(), &[]);
    let cache_b = w.extract(&data, "cache_b", &trunk_b(), &[]);
    let run_b = w.train(&cache_b, "b");
    let cache_shown = cache_a.display().to_string();
    let o = w.run(args![
        "compare-baselines",
        "--features",
        cache_a,
        "--head",
        run_b
    ]);
    assert_refused(&o, &["another trunk", cache_shown.as_str()]);
    let o = w.run(args![
        "predict",
        "--device",
        "cpu",
        "--model",
        trunk_a(),
        "--head",
        run_b,
        "--images",
        data
    ]);
    assert_refused(&o, &["another trunk", "--model"]);
    let o = w.run(args![
        "export",
        "--head",
        run_b,
        "--with-trunk",
        "--model",
        trunk_a(),
        "--out",
        w.path("x.onnx")
    ]);
    assert_refused(&o, &["another trunk", "--model"]);
    assert!(!w.path("x.onnx").exists());
    // The matching trunk is accepted.
    w.ok(args![
        "compare-baselines",
        "--features",
        cache_b,
        "--head",
        run_b,
        "--out",
        w.path("cmp")
    ]);
}

#[test]
fn a_head_trained_on_other_classes_is_refused() {
    let Some(w) = World::new("a_head_trained_on_other_classes_is_refused") else {
        return;
    };
    let data2 = w.path("data2");
    image_folder(&data2, &["cat", "dog"], 6, 2, 1);
    let cache2 = w.extract(&data2, "cache2", &trunk_a(), &[]);
    let run2 = w.train(&cache2, "two");
    let data3 = w.path("data3");
    image_folder(&data3, &["cat", "dog", "fox"], 4, 2, 2);
    let cache3 = w.extract(&data3, "cache3", &trunk_a(), &[]);
    let o = w.run(args![
        "compare-baselines",
        "--features",
        cache3,
        "--head",
        run2
    ]);
    assert_refused(&o, &["class names differ", "\"fox\""]);
}

#[test]
fn compare_on_a_cache_without_val_rows_is_refused() {
    let Some(w) = World::new("compare_on_a_cache_without_val_rows_is_refused") else {
        return;
    };
    let (_, run) = w.trained();
    // Class folders without split folders, nothing held out: the cache has a train split only.
    let flat = w.path("flat");
    images(&flat, &["cat", "dog"], &[("", 6)], 3);
    let cache = w.extract(&flat, "cache_flat", &trunk_a(), &["--val-fraction", "0"]);
    assert_eq!(
        FeatureCache::open(&cache).expect("cache").split_names(),
        [vggcache::dataset::Split::Train]
    );
    let shown = cache.display().to_string();
    let needles = ["no val split", "--val-fraction 0", shown.as_str()];
    let o = w.run(args![
        "compare-baselines",
        "--features",
        cache,
        "--head",
        run,
        "--val-fraction",
        "0"
    ]);
    assert_refused(&o, &needles);
    // Without --head, the default head's training hits the same check before any training.
    let o = w.run(args![
        "compare-baselines",
        "--features",
        cache,
        "--val-fraction",
        "0"
    ]);
    assert_refused(&o, &needles);
    assert!(!w.path("runs/compare").exists(), "no report written");
}

#[test]
fn predict_with_an_unknown_format_is_a_usage_error() {
    let Some(w) = World::new("predict_with_an_unknown_format_is_a_usage_error") else {
        return;
    };
    let o = w.run(args![
        "predict",
        "--head",
        w.path("runs/x"),
        "--images",
        w.path("data"),
        "--format",
        "nonsense"
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        err.contains("'nonsense'") && err.contains("--format") && err.contains("kaggle"),
        "{}",
        text(&o)
    );
}

/// Model selection never reads the reported val split (issue 29): the same train images with the
/// val folder's classes swapped give the same chosen C, the same kept epoch and the same head
/// weights; and two runs of compare-baselines on one cache write the same compare.json apart from
/// timings and the trained head's timestamped run folder.
#[test]
fn model_selection_ignores_the_val_labels_and_is_reproducible() {
    let Some(w) = World::new("model_selection_ignores_the_val_labels_and_is_reproducible") else {
        return;
    };
    let data = w.path("data");
    image_folder(&data, &["cat", "dog"], 20, 8, 1);
    // The same images with the val labels swapped: val/cat holds the dogs and val/dog the cats.
    let swapped = w.path("swapped");
    for (from, to) in [
        ("train/cat", "train/cat"),
        ("train/dog", "train/dog"),
        ("val/cat", "val/dog"),
        ("val/dog", "val/cat"),
    ] {
        let dst = swapped.join(to);
        std::fs::create_dir_all(&dst).expect("mkdir");
        for e in std::fs::read_dir(data.join(from)).expect("ls") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
        }
    }
    let cache_a = w.extract(&data, "cache_a", &trunk_a(), &[]);
    let cache_b = w.extract(&swapped, "cache_b", &trunk_a(), &[]);
    let fa = FeatureCache::open(&cache_a).expect("cache a");
    let (_, val_a, _) = train_val(&fa, 0.2, 0).expect("split a");
    let fb = FeatureCache::open(&cache_b).expect("cache b");
    let (_, val_b, _) = train_val(&fb, 0.2, 0).expect("split b");
    // Rows pair up by file name: every val label differs, the features do not.
    let by_name = |v: &vggcache::jobs::Labelled| -> BTreeMap<String, (usize, Vec<u32>)> {
        v.paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let name = Path::new(p)
                    .file_name()
                    .expect("file")
                    .to_string_lossy()
                    .into_owned();
                (
                    name,
                    (v.y[i], v.x.row(i).iter().map(|f| f.to_bits()).collect()),
                )
            })
            .collect()
    };
    let (na, nb) = (by_name(&val_a), by_name(&val_b));
    assert_eq!(na.len(), 16);
    for (name, (label, x)) in &na {
        let (lb, xb) = &nb[name];
        assert!(label != lb && x == xb, "{name}: label {label} vs {lb}");
    }

    // The head: kept epoch, selection losses and weights do not depend on the val labels.
    let head_args = |cache: &Path, name: &str| {
        let s = w.ok(args![
            "train-head",
            "--features",
            cache,
            "--name",
            name,
            "--lr",
            "1e-3",
            "--hidden",
            "16,16",
            "--epochs",
            "10",
            "--batch-size",
            "8",
            "--dropout",
            "0.1",
            "--select-fraction",
            "0.25"
        ]);
        assert!(s.contains("selection split of"), "{s}");
        let run = w.path("runs").join(name);
        let csv = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
        let (header, rows) = parse_csv(&csv);
        let col = |n: &str| header.iter().position(|h| h == n).expect(n);
        let kept: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r[col("best")].clone(),
                    r[col("select_loss")].clone(),
                    r[col("val_acc")].clone(),
                )
            })
            .collect();
        (kept, load_head(&run))
    };
    let (ka, ha) = head_args(&cache_a, "a");
    let (kb, hb) = head_args(&cache_b, "b");
    let strip = |k: &[(String, String, String)]| -> Vec<(String, String)> {
        k.iter().map(|(b, s, _)| (b.clone(), s.clone())).collect()
    };
    assert_eq!(strip(&ka), strip(&kb), "kept epoch and selection losses");
    assert_ne!(
        ka.iter().map(|k| &k.2).collect::<Vec<_>>(),
        kb.iter().map(|k| &k.2).collect::<Vec<_>>(),
        "the val accuracies do differ (labels swapped)"
    );
    assert_eq!(ha.mlp().params(), hb.mlp().params(), "the same weights");

    // compare-baselines: the same chosen C on both caches; the same report twice on one cache.
    let compare = |cache: &Path, out: &str| -> serde_json::Value {
        let o = w.path(out);
        w.ok(args!["compare-baselines", "--features", cache, "--out", o]);
        let json = std::fs::read_to_string(o.join("compare.json")).expect("compare.json");
        serde_json::from_str(&json).expect("json")
    };
    // A second of wall clock between the runs: the trained heads' run folders are timestamps.
    let a1 = compare(&cache_a, "cmp_a1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let a2 = compare(&cache_a, "cmp_a2");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = compare(&cache_b, "cmp_b");
    let table = |v: &serde_json::Value| -> Vec<Vec<String>> {
        let s = &v["sections"][0];
        let fit_s = s["header"]
            .as_array()
            .expect("header")
            .iter()
            .position(|h| h == "fit s")
            .expect("a fit s column");
        s["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != fit_s)
                    .map(|(_, c)| c.as_str().expect("cell").to_string())
                    .collect()
            })
            .collect()
    };
    let chosen = |v: &serde_json::Value| -> String {
        table(v)
            .into_iter()
            .find(|r| r.last().is_some_and(|m| m.starts_with("chosen")))
            .expect("a chosen C")[0]
            .clone()
    };
    assert_eq!(
        chosen(&a1),
        chosen(&b),
        "chosen C with the val labels swapped"
    );
    for row in table(&a1) {
        let iters = &row[3];
        assert!(
            !iters.split(' ').any(|n| n == "0"),
            "a scored C ran 0 iterations: {row:?}"
        );
    }
    let normalised = |v: &serde_json::Value| -> serde_json::Value {
        let mut v = v.clone();
        let head_dir = v["rows"][2]["name"]
            .as_str()
            .expect("head name")
            .to_string();
        for row in v["rows"].as_array_mut().expect("rows") {
            row["fit_seconds"] = serde_json::Value::Null;
            row["predict_ms_per_image"] = serde_json::Value::Null;
            if row["name"] == head_dir.as_str() {
                row["name"] = "mlp head".into();
            }
        }
        v["sections"][0]["rows"] = serde_json::json!(table(&v));
        v
    };
    assert_eq!(normalised(&a1), normalised(&a2), "two runs, one report");
}
