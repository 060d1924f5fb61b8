//! linfa-logistic (vendored patch) beside scikit-learn's lbfgs on the same features, same C, same
//! standardisation, same split: accuracy, log loss, fit seconds (median of repeats), iterations.
//!
//! ```text
//! python3 scripts/reference/logreg_parity.py OUT --cache CACHE [--train-rows N] --repeats 3   # sklearn side
//! VGGCACHE_PARITY_DIR=OUT cargo bench --locked --bench logreg                      # linfa side
//! scripts/bench/logreg_parity.sh OUT CACHE [MORE_CACHES...]                              # both, in order
//! ```
//! `VGGCACHE_BENCH_REPEATS` (default 3) sets the linfa repeats. Prints one JSON line per case and a
//! Markdown table; linfa's fit time includes its f32 → f64 conversion and standardisation, as
//! sklearn's includes its `StandardScaler`. For each standardised case it then runs what
//! `compare-baselines` runs with no flag (C search on a split of the train rows, refit at the chosen
//! C on all of them) and prints the search and refit times.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use vggcache::baseline::{
    fit_logistic, search_c, CSearchParams, Classifier, FittedLogistic, LogisticParams, StopTest,
};

/// `repeats` (at least 1) fits of `params` on `x: (n, d)`: the last model and each fit's seconds.
fn timed_fits(
    params: &LogisticParams,
    x: ArrayView2<f32>,
    y: &[usize],
    k: usize,
    repeats: usize,
) -> (FittedLogistic, Vec<f64>) {
    let mut secs = Vec::new();
    let mut model = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        model = Some(fit_logistic(params, x, y, k).expect("fit"));
        secs.push(t.elapsed().as_secs_f64());
    }
    (model.expect("at least one fit"), secs)
}

fn read_f32(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn read_labels(p: &Path) -> Vec<usize> {
    std::fs::read(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect()
}

/// `(accuracy, log loss)` of `proba: (n, k)` against `y: (n,)`, log loss clipped at f32 epsilon.
fn scores(proba: ArrayView2<f32>, y: &[usize]) -> (f64, f64) {
    let flat = proba
        .as_standard_layout()
        .iter()
        .copied()
        .collect::<Vec<_>>();
    let k = proba.ncols();
    let pred = vggcache::metrics::argmax_rows(&flat, k);
    (
        vggcache::metrics::accuracy(y, &pred),
        vggcache::metrics::log_loss(y, &flat, k),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(dir) = std::env::var_os("VGGCACHE_PARITY_DIR").map(PathBuf::from) else {
        eprintln!(
            "logreg bench: set VGGCACHE_PARITY_DIR to the output of scripts/reference/logreg_parity.py"
        );
        return;
    };
    let repeats: usize = std::env::var("VGGCACHE_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
            .expect("json");
    let mut table = vec![
        "| case | linfa stop test | n x d | C | linfa acc / log loss | sklearn acc / log loss | linfa fit s (iter) | sklearn fit s (iter) | linfa / sklearn |".to_string(),
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|".to_string(),
    ];
    for case in meta["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let files = case["files"].as_str().unwrap_or(name);
        let n = |k: &str| case[k].as_u64().expect(k) as usize;
        let (n_train, n_val, d, k) = (n("n_train"), n("n_val"), n("d"), n("n_classes"));
        let c = case["C"].as_f64().expect("C");
        let f = |part: &str| dir.join(format!("{files}.{part}.bin"));
        let x_tr = Array2::from_shape_vec((n_train, d), read_f32(&f("x_train"))).expect("x_train");
        let x_va = Array2::from_shape_vec((n_val, d), read_f32(&f("x_val"))).expect("x_val");
        let (y_tr, y_va) = (read_labels(&f("y_train")), read_labels(&f("y_val")));
        let sk = &case["sklearn"];
        let sk_fit = sk["fit_sec"].as_f64().expect("fit_sec");
        // The default test, then scikit-learn's own, on the same rows one after the other.
        for stop in [StopTest::SummedL2, StopTest::ScikitLearn] {
            let params = LogisticParams {
                l2: LogisticParams::l2_from_sklearn_c(c),
                standardize: case["standardize"].as_bool().unwrap_or(false),
                stop,
                ..Default::default()
            };
            let (m, secs) = timed_fits(&params, x_tr.view(), &y_tr, k, repeats);
            let (acc, ll) = scores(m.predict_proba(x_va.view()).view(), &y_va);
            let fit = median(secs.clone());
            let cap = |converged: bool| if converged { "" } else { ", cap" };
            println!(
                "{}",
                serde_json::json!({
                    "case": name, "stop": format!("{stop:?}"), "n_train": n_train, "d": d, "C": c,
                    "standardize": params.standardize, "linfa_acc": acc, "linfa_log_loss": ll,
                    "linfa_fit_s_median": fit, "linfa_fit_s": secs, "linfa_iter": m.n_iter(),
                    "linfa_converged": m.converged(), "sklearn": sk, "fit_ratio": fit / sk_fit,
                })
            );
            table.push(format!(
            "| {name} | {stop:?} | {n_train} x {d} | {c} | {acc:.4} / {ll:.4} | {:.4} / {:.4} | {fit:.3} ({}{}) | {sk_fit:.3} ({}) | {:.2} |",
            sk["val_acc"].as_f64().unwrap_or(f64::NAN),
            sk["val_log_loss"].as_f64().unwrap_or(f64::NAN),
            m.n_iter(),
            cap(m.converged()),
            sk["n_iter"],
            fit / sk_fit
        ));
        }
        if case["standardize"].as_bool().unwrap_or(false) {
            // compare-baselines' default path: the library defaults, C searched, then refitted.
            let base = LogisticParams::default();
            let search =
                search_c(&base, &CSearchParams::default(), x_tr.view(), &y_tr, k).expect("search");
            let refit = LogisticParams {
                l2: LogisticParams::l2_from_sklearn_c(search.chosen_c),
                ..base
            };
            let (m, secs) = timed_fits(&refit, x_tr.view(), &y_tr, k, repeats);
            let (acc, ll) = scores(m.predict_proba(x_va.view()).view(), &y_va);
            println!(
                "{}",
                serde_json::json!({
                    "case": format!("{name}, compare-baselines default (C searched)"),
                    "chosen_C": search.chosen_c, "search_s": search.seconds,
                    "search_points": search.curve.len(), "refit_s_median": median(secs.clone()),
                    "refit_s": secs, "refit_iter": m.n_iter(), "converged": m.converged(),
                    "val_acc": acc, "val_log_loss": ll,
                })
            );
        }
    }
    println!("\n{}", table.join("\n"));
}
