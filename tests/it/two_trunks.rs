//! Issue 34 item 3: a head (and the baselines) on two trunks' features at once: two caches of the
//! same images joined by content hash (`--features A --features B`), the head recording both
//! trunks; missing images, split disagreements, and jobs that run one trunk refuse clearly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vggcache::cache::FeatureRow;
use vggcache::cache::{
    CacheIdentity, CacheWriter, FeatureSource, JoinedCache, ModelIdentity, WriteOptions,
};
use vggcache::dataset::Split;
use vggcache::head::FittedHead;
use vggcache::spec::PreprocessSpec;

use crate::common::{text, tiny_trunk};

/// Images of the synthetic set: 40, classes alternating, every 5th pair in val.
const N: usize = 40;

fn identity(tag: &str, dim: usize) -> CacheIdentity {
    CacheIdentity {
        model: ModelIdentity {
            fingerprint: format!("sha256:{tag:0<64}"),
            path: format!("models/{tag}.onnx"),
            provenance: format!("synthetic trunk {tag} (tests/it/two_trunks.rs)"),
            metadata: BTreeMap::new(),
        },
        preprocess: PreprocessSpec::caffe_bgr(),
        dim,
    }
}

/// Image i: its content hash, class and split.
fn hash(i: usize) -> String {
    format!("{:016x}", 0x5eed_0000 + i)
}

fn split_of(i: usize) -> Split {
    if (i / 2).is_multiple_of(5) {
        Split::Val
    } else {
        Split::Train
    }
}

/// Image i's features under trunk `tag`: distinct per (tag, image, dimension), class 1 shifted
/// on the first two dimensions (learnable).
fn features(tag: u8, i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| {
            let base = (tag as usize * 1000 + i * 10 + j) as f32 * 1e-3;
            base + if i % 2 == 1 && j < 2 { 1.0 } else { 0.0 }
        })
        .collect()
}

/// A cache of trunk `tag` (feature width `dim`) in `dir` holding `images` (indices into the
/// synthetic set) in that order, each under the path `{prefix}{i}.jpg`; `split` gives each
/// image's split.
fn cache(
    dir: &Path,
    tag: u8,
    dim: usize,
    images: &[usize],
    prefix: &str,
    split: impl Fn(usize) -> Split,
) -> PathBuf {
    let classes = vec!["cat".to_string(), "dog".to_string()];
    let id = identity(&format!("{tag:02x}"), dim);
    let mut w = CacheWriter::open_with(dir, &id, &classes, false, WriteOptions::default()).unwrap();
    let names: Vec<(String, String)> = images
        .iter()
        .map(|&i| (format!("{prefix}{i:03}.jpg"), hash(i)))
        .collect();
    let feats: Vec<Vec<f32>> = images.iter().map(|&i| features(tag, i, dim)).collect();
    let rows: Vec<FeatureRow> = images
        .iter()
        .enumerate()
        .map(|(k, &i)| FeatureRow {
            path: &names[k].0,
            split: split(i),
            label: Some((i % 2) as u32),
            class: None,
            content_hash: &names[k].1,
            features: &feats[k],
        })
        .collect();
    w.append_shards(&[rows]).unwrap();
    w.finish().unwrap();
    dir.to_path_buf()
}

/// Cache A: trunk 0xa, D = 16, every image in order, paths `img/NNN.jpg`.
fn cache_a(root: &Path) -> PathBuf {
    let all: Vec<usize> = (0..N).collect();
    cache(&root.join("a"), 0xa, 16, &all, "img/", split_of)
}

/// Cache B: trunk 0xb, D = 8, the images `images` in reverse order under other paths (the join
/// is by content hash, not by path or order).
fn cache_b(root: &Path, name: &str, images: &[usize], split: impl Fn(usize) -> Split) -> PathBuf {
    let mut rev = images.to_vec();
    rev.reverse();
    cache(&root.join(name), 0xb, 8, &rev, "copy/", split)
}

fn all() -> Vec<usize> {
    (0..N).collect()
}

fn vggcache(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vggcache"));
    c.args(args);
    for (flag, p) in paths {
        c.arg(flag).arg(p);
    }
    c.output().expect("run vggcache")
}

/// `train-head` on `features` (each as --features) into `runs/NAME` with small settings.
fn train(features: &[&Path], runs: &Path, name: &str, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vggcache"));
    c.arg("train-head");
    for f in features {
        c.arg("--features").arg(f);
    }
    c.arg("--runs-dir")
        .arg(runs)
        .args([
            "--name",
            name,
            "--hidden",
            "8",
            "--epochs",
            "3",
            "--batch-size",
            "8",
        ])
        .args(extra);
    c.output().expect("run vggcache")
}

fn meta(run: &Path) -> (FittedHead, BTreeMap<String, String>) {
    FittedHead::load(&run.join("head.safetensors")).unwrap()
}

#[test]
fn joined_rows_are_each_images_features_side_by_side() {
    let d = tempfile::tempdir().unwrap();
    let a = cache_a(d.path());
    let b = cache_b(d.path(), "b", &all(), split_of);
    let j = JoinedCache::open(&[a, b], false).unwrap();
    assert_eq!(j.dim(), 24);
    assert_eq!(j.len(), N);
    assert_eq!(j.dropped(), 0);
    let rows = [1, 7, 22, 39];
    let data = j.rows(&rows).unwrap();
    for (k, &i) in rows.iter().enumerate() {
        let mut want = features(0xa, i, 16);
        want.extend(features(0xb, i, 8));
        assert_eq!(
            data.features.row(k).to_vec(),
            want,
            "joined row of image {i}"
        );
        assert_eq!(data.paths[k], format!("img/{i:03}.jpg"));
        assert_eq!(data.labels[k], Some((i % 2) as u32));
    }
    assert_eq!(j.row_splits()[10], Split::Val);
}

#[test]
fn a_two_trunk_head_trains_and_records_both_trunks() {
    let d = tempfile::tempdir().unwrap();
    let a = cache_a(d.path());
    let b = cache_b(d.path(), "b", &all(), split_of);
    let runs = d.path().join("runs");
    let o = train(&[&a, &b], &runs, "two", &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("joined 2 caches by content hash") && t.contains("= D 24, 40 images"),
        "{t}"
    );
    let (head, m) = meta(&runs.join("two"));
    assert_eq!(head.dim(), 24);
    let fa = format!("sha256:{:0<64}", "0a");
    let fb = format!("sha256:{:0<64}", "0b");
    assert_eq!(m["trunks"], "2");
    assert_eq!(m["trunk.0.fingerprint"], fa);
    assert_eq!(m["trunk.1.fingerprint"], fb);
    assert_eq!(m["trunk.0.dim"], "16");
    assert_eq!(m["trunk.1.dim"], "8");
    assert_eq!(m["trunk.1.cache"], b.display().to_string());
    assert_eq!(m["trunk_fingerprint"], format!("{fa}+{fb}"));
    // Its page names both trunks; `report` reopens both recorded caches to rebuild it.
    let page = std::fs::read_to_string(runs.join("two/report.html")).unwrap();
    assert!(
        page.contains("trunk 1 fingerprint") && page.contains(&fb),
        "page"
    );
    let html = d.path().join("again.html");
    let o = vggcache(
        &["report", "--folds", "0"],
        &[("--run", &runs.join("two")), ("--out", &html)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("trunk 2 fingerprint"));

    // compare-baselines: linfa on the same joined features, and the head checked against them.
    let out = d.path().join("cmp");
    let o = vggcache(
        &["compare-baselines", "--C", "1"],
        &[
            ("--features", &a),
            ("--features", &b),
            ("--head", &runs.join("two")),
            ("--out", &out),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let json = std::fs::read_to_string(out.join("compare.json")).unwrap();
    assert!(json.contains("\"feature_dim\": 24"), "{json}");
    // A join pairs plain views only: compare-baselines' view flags are refused with the way out.
    for (flag, kind) in [
        (&["--tta"][..], "test-time"),
        (&["--logistic-views", "all"][..], "augmented"),
    ] {
        let o = vggcache(
            &[&["compare-baselines", "--C", "1"][..], flag].concat(),
            &[
                ("--features", &a),
                ("--features", &b),
                ("--head", &runs.join("two")),
                ("--out", &d.path().join("cmp-views")),
            ],
        );
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(
            t.contains(&format!("reads a cache's {kind} views"))
                && t.contains("pair plain views only"),
            "{t}"
        );
    }
    // The same head against one of its caches: another trunk, said clearly.
    let o = vggcache(
        &["compare-baselines", "--C", "1"],
        &[
            ("--features", &a),
            ("--head", &runs.join("two")),
            ("--out", &d.path().join("cmp1")),
        ],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("was trained on features of another trunk"),
        "{t}"
    );
}

#[test]
fn a_two_trunk_head_refuses_a_cache_missing_one_trunks_rows() {
    let d = tempfile::tempdir().unwrap();
    let a = cache_a(d.path());
    let b = cache_b(d.path(), "b", &all(), split_of);
    // B without images 3, 4 and 5.
    let fewer: Vec<usize> = (0..N).filter(|i| !(3..6).contains(i)).collect();
    let b_short = cache_b(d.path(), "b-short", &fewer, split_of);
    let runs = d.path().join("runs");

    let o = train(&[&a, &b_short], &runs, "refused", &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let want = format!(
        "3 image(s) of cache {} have no row of the same content hash in cache {}",
        a.display(),
        b_short.display()
    );
    assert!(t.contains(&want), "{t}");
    assert!(
        t.contains("img/003.jpg") && t.contains("--drop-unmatched"),
        "{t}"
    );
    assert!(!runs.join("refused").exists());
    // The other way round: B holds images A lacks.
    let o = train(&[&b_short, &a], &runs, "refused2", &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!("3 image(s) of cache {}", a.display())),
        "{t}"
    );

    // A head trained on both trunks, given a cache missing rows: the same refusal.
    let o = train(&[&a, &b], &runs, "two", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = vggcache(
        &["compare-baselines", "--C", "1"],
        &[
            ("--features", &a),
            ("--features", &b_short),
            ("--head", &runs.join("two")),
            ("--out", &d.path().join("cmp")),
        ],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains(&want), "{t}");

    // --drop-unmatched trains on the images both hold and says how many it left out.
    let o = train(&[&a, &b_short], &runs, "dropped", &["--drop-unmatched"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("37 images (3 rows dropped"), "{t}");
}

#[test]
fn a_split_disagreement_between_the_caches_errors() {
    let d = tempfile::tempdir().unwrap();
    let a = cache_a(d.path());
    // Image 0 is val in A, train in B.
    let b = cache_b(d.path(), "b", &all(), |i| {
        if i == 0 {
            Split::Train
        } else {
            split_of(i)
        }
    });
    let o = train(&[&a, &b], &d.path().join("runs"), "x", &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("1 image(s) have another split in cache")
            && t.contains("img/000.jpg is val there but copy/000.jpg is train here"),
        "{t}"
    );
}

#[test]
fn predict_and_export_with_trunk_refuse_a_two_trunk_head() {
    let d = tempfile::tempdir().unwrap();
    let a = cache_a(d.path());
    let b = cache_b(d.path(), "b", &all(), split_of);
    let runs = d.path().join("runs");
    let o = train(&[&a, &b], &runs, "two", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let run = runs.join("two");
    let images = d.path().join("images");
    std::fs::create_dir_all(&images).unwrap();

    let o = vggcache(
        &["predict", "--device", "cpu"],
        &[
            ("--head", &run),
            ("--images", &images),
            ("--model", &tiny_trunk()),
        ],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("was trained on the features of 2 trunks joined by content hash")
            && t.contains("predict runs one trunk"),
        "{t}"
    );

    let onnx = d.path().join("two.onnx");
    let o = vggcache(
        &["export", "--with-trunk"],
        &[
            ("--head", &run),
            ("--out", &onnx),
            ("--model", &tiny_trunk()),
        ],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("export --with-trunk runs one trunk"), "{t}");
    assert!(!onnx.exists());
    // The head alone exports: its input is the joined features.
    let o = vggcache(&["export"], &[("--head", &run), ("--out", &onnx)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(onnx.is_file());
}

#[test]
fn one_features_flag_trains_as_before() {
    let d = tempfile::tempdir().unwrap();
    let a = cache_a(d.path());
    let runs = d.path().join("runs");
    let o = train(&[&a], &runs, "one", &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("joined"), "{t}");
    let (head, m) = meta(&runs.join("one"));
    assert_eq!(head.dim(), 16);
    // Exactly the keys a one-trunk head always had (and the head's own).
    let caller: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| {
            ![
                "format",
                "weight_layout",
                "dims",
                "classes",
                "config",
                "standardize",
            ]
            .contains(k)
        })
        .collect();
    assert_eq!(
        caller,
        [
            "cache",
            "trunk_fingerprint",
            "trunk_provenance",
            "val_held_out"
        ]
    );
    assert_eq!(m["trunk_fingerprint"], format!("sha256:{:0<64}", "0a"));
    assert_eq!(m["cache"], a.display().to_string());
}
