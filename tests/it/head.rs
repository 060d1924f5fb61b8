//! Tests of the MLP head: gradients, Adam against a numpy fixture, dropout, training, checkpoints, bad input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use vggcache::events::{Event, Events, Silent};
use vggcache::head::dropout::dropout_in_place;
use vggcache::head::{
    holdout_split, selection_split, summary_table, train, write_run, Adam, AdamConfig, FittedHead,
    HeadConfig, HeadError, Mlp, TrainOutcome, TrainSet, Workspace,
};
use vggcache::metrics::argmax_rows;

fn randn(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| {
        // Box–Muller
        let u1: f32 = rng.random::<f32>().max(1e-7);
        let u2: f32 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    })
}

fn names(c: usize) -> Vec<String> {
    (0..c).map(|i| format!("class{i}")).collect()
}

/// Gaussian blobs, class k centred at `sep` along dimension k.
fn blobs(n_per: usize, classes: usize, d: usize, sep: f32, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut x = randn(n_per * classes, d, seed);
    let y: Vec<usize> = (0..n_per * classes).map(|i| i % classes).collect();
    for (i, &c) in y.iter().enumerate() {
        x[[i, c]] += sep;
    }
    (x, y)
}

fn small_cfg() -> HeadConfig {
    HeadConfig {
        hidden: vec![16, 16],
        dropout: 0.0,
        epochs: 3,
        batch_size: 8,
        lr: 1e-2,
        standardize: false,
        ..HeadConfig::default()
    }
}

/// Counts the epochs training reports; with `stop_after`, asks training to stop once that many
/// were reported.
#[derive(Default)]
struct Epochs {
    seen: AtomicUsize,
    stop_after: Option<usize>,
}

impl Events for Epochs {
    fn event(&self, e: &Event) {
        if matches!(e, Event::Epoch(_)) {
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn cancelled(&self) -> bool {
        self.stop_after
            .is_some_and(|n| self.seen.load(Ordering::SeqCst) >= n)
    }
}

fn loss_at(mlp: &Mlp, x: ArrayView2<f32>, y: &[usize], dropout: f32) -> f64 {
    let mut ws = Workspace::new(mlp.dims(), x.nrows());
    ws.set_batch(x);
    mlp.forward_train(&mut ws, dropout, &mut StdRng::seed_from_u64(7));
    mlp.loss(&mut ws, y).0
}

#[test]
fn every_gradient_matches_finite_differences() {
    let dims = [5, 7, 6, 3];
    let dropout = 0.3;
    let mut mlp = Mlp::new(&dims, 11);
    let x = randn(4, 5, 12);
    let y = [0, 2, 1, 2];
    let mut ws = Workspace::new(&dims, 4);
    ws.set_batch(x.view());
    mlp.forward_train(&mut ws, dropout, &mut StdRng::seed_from_u64(7));
    mlp.loss(&mut ws, &y);
    let mut grads = vec![0.0f32; mlp.n_params()];
    mlp.backward_collect(&mut ws, dropout, &mut grads);

    let h = 3e-3f32;
    let mut worst = 0.0f64;
    for (i, &g) in grads.iter().enumerate() {
        let p0 = mlp.params()[i];
        mlp.params_mut()[i] = p0 + h;
        let lp = loss_at(&mlp, x.view(), &y, dropout);
        mlp.params_mut()[i] = p0 - h;
        let lm = loss_at(&mlp, x.view(), &y, dropout);
        mlp.params_mut()[i] = p0;
        let fd = (lp - lm) / (2.0 * f64::from(h));
        let g = f64::from(g);
        let err = (fd - g).abs() / (1e-3 + 1e-2 * g.abs().max(fd.abs()));
        worst = worst.max(err);
        assert!(
            err <= 1.0,
            "parameter {i}: backward {g:.6e}, finite difference {fd:.6e}"
        );
    }
    eprintln!("worst scaled gradient error {worst:.3}");
}

fn arr2(v: &Value) -> Array2<f32> {
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("num") as f32)
                .collect()
        })
        .collect();
    let (n, m) = (rows.len(), rows[0].len());
    Array2::from_shape_vec((n, m), rows.concat()).expect("rectangular")
}

fn arr1(v: &Value) -> Array1<f32> {
    v.as_array()
        .expect("vec")
        .iter()
        .map(|x| x.as_f64().expect("num") as f32)
        .collect()
}

fn layers_of(v: &Value) -> Vec<(Array2<f32>, Array1<f32>)> {
    v.as_array()
        .expect("layers")
        .iter()
        .map(|l| (arr2(&l["w"]), arr1(&l["b"])))
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, numpy {w}"
        );
    }
}

/// The fixture's layers `(W: (d_in, d_out), b)` in the head's flat layout: `W` stored
/// `(d_out, d_in)` row-major (PyTorch's order), then `b`, layer after layer.
fn flat(layers: &[(Array2<f32>, Array1<f32>)]) -> Vec<f32> {
    layers
        .iter()
        .flat_map(|(w, b)| w.t().iter().chain(b.iter()).copied().collect::<Vec<_>>())
        .collect()
}

#[test]
fn two_adam_steps_match_the_numpy_fixture() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/head/adam_two_steps.json");
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    let a = &fx["adam"];
    let f = |k: &str| a[k].as_f64().expect("adam field") as f32;
    let cfg = AdamConfig {
        lr: f("lr"),
        beta1: f("beta1"),
        beta2: f("beta2"),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
    };
    let mut mlp = Mlp::from_layers(&layers_of(&fx["init"])).expect("layers chain");
    let mut adam = Adam::new(cfg, mlp.n_params());
    for (t, step) in fx["steps"].as_array().expect("steps").iter().enumerate() {
        let x = arr2(&step["x"]);
        let y: Vec<usize> = step["y"]
            .as_array()
            .expect("y")
            .iter()
            .map(|v| v.as_u64().expect("label") as usize)
            .collect();
        let mut ws = Workspace::new(mlp.dims(), x.nrows());
        // gradients, on a copy
        let mut probe = mlp.clone();
        ws.set_batch(x.view());
        probe.forward_train(&mut ws, 0.0, &mut StdRng::seed_from_u64(0));
        let (loss, _) = probe.loss(&mut ws, &y);
        let want_loss = step["loss"].as_f64().expect("loss");
        assert!(
            (loss - want_loss).abs() < 1e-5,
            "step {t}: loss {loss}, numpy {want_loss}"
        );
        let mut grads = vec![0.0; mlp.n_params()];
        probe.backward_collect(&mut ws, 0.0, &mut grads);
        assert_close(
            &format!("step {t} grads"),
            &grads,
            &flat(&layers_of(&step["grads"])),
            1e-5,
        );
        // the real fused step
        ws.set_batch(x.view());
        let (l2, _) = mlp.train_step(&mut ws, &y, 0.0, &mut adam, &mut StdRng::seed_from_u64(0));
        assert!((l2 - want_loss).abs() < 1e-5);
        assert_close(
            &format!("step {t} params"),
            mlp.params(),
            &flat(&layers_of(&step["params_after"])),
            1e-5,
        );
    }
    assert_eq!(adam.steps(), 2);
}

#[test]
fn dropout_keeps_half_and_scales_by_two_and_eval_is_identity() {
    let mut h = Array2::<f32>::ones((200, 500));
    dropout_in_place(h.view_mut(), 0.5, &mut StdRng::seed_from_u64(3));
    let zeros = h.iter().filter(|&&v| v == 0.0).count() as f64 / h.len() as f64;
    assert!((zeros - 0.5).abs() < 0.01, "dropped fraction {zeros}");
    assert!(
        h.iter().all(|&v| v == 0.0 || v == 2.0),
        "survivors scaled by 1/(1-p)"
    );
    let mean = h.mean().expect("non-empty");
    assert!(
        (mean - 1.0).abs() < 0.02,
        "mean {mean} (inverted dropout keeps the expectation)"
    );
    let mut h2 = Array2::<f32>::ones((10, 10));
    dropout_in_place(h2.view_mut(), 0.0, &mut StdRng::seed_from_u64(3));
    assert!(h2.iter().all(|&v| v == 1.0), "p = 0 is the identity");

    // eval mode: forward_eval equals the train forward with dropout 0, and is repeatable
    let mlp = Mlp::new(&[6, 9, 8, 2], 5);
    let x = randn(10, 6, 4);
    let mut ws = Workspace::new(mlp.dims(), 10);
    ws.set_batch(x.view());
    mlp.forward_train(&mut ws, 0.0, &mut StdRng::seed_from_u64(1));
    let eval = mlp.forward_eval(x.view());
    assert_eq!(ws.logits(), eval.view());
    assert_eq!(mlp.forward_eval(x.view()), eval);
    // and with dropout the train forward differs
    mlp.forward_train(&mut ws, 0.5, &mut StdRng::seed_from_u64(1));
    assert_ne!(ws.logits(), eval.view());
}

#[test]
fn pytorch_default_init_bounds() {
    let mlp = Mlp::new(&[400, 100, 3], 1);
    let layers = mlp.layers();
    for ((w, b), d_in) in layers.iter().zip([400f32, 100.0]) {
        let bound = 1.0 / d_in.sqrt();
        let max = w.iter().chain(b.iter()).fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= bound && max > 0.9 * bound,
            "max |w| {max}, bound {bound}"
        );
        // uniform on [-bound, bound): variance bound²/3
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!(
            (var / (bound * bound / 3.0) - 1.0).abs() < 0.05,
            "variance {var}"
        );
    }
    assert_eq!(Mlp::new(&[400, 100, 3], 1), mlp);
    assert_ne!(Mlp::new(&[400, 100, 3], 2), mlp);
}

#[test]
fn tiny_separable_set_reaches_full_train_accuracy() {
    let (x, y) = blobs(30, 3, 10, 4.0, 21);
    let cfg = HeadConfig {
        epochs: 40,
        ..small_cfg()
    };
    let out = train(
        &cfg,
        &names(3),
        TrainSet { x: x.view(), y: &y },
        TrainSet { x: x.view(), y: &y },
        &Silent,
    )
    .expect("trains");
    let last = out.history.last().expect("epochs ran");
    assert_eq!(last.train_acc, 1.0, "history {:?}", out.history);
    let pred = argmax_rows(
        out.head
            .predict_proba(x.view())
            .as_slice()
            .expect("contiguous"),
        3,
    );
    assert_eq!(pred, y);
}

fn history_without_time(o: &TrainOutcome) -> Vec<(f64, f64, f64, f64)> {
    o.history
        .iter()
        .map(|m| (m.train_loss, m.train_acc, m.val_loss, m.val_acc))
        .collect()
}

#[test]
fn same_seed_same_metrics_and_weights() {
    let (x, y) = blobs(20, 2, 12, 1.0, 5);
    let (xv, yv) = blobs(10, 2, 12, 1.0, 6);
    let cfg = HeadConfig {
        dropout: 0.5,
        epochs: 3,
        ..small_cfg()
    };
    let run = |cfg: &HeadConfig| {
        train(
            cfg,
            &names(2),
            TrainSet { x: x.view(), y: &y },
            TrainSet {
                x: xv.view(),
                y: &yv,
            },
            &Silent,
        )
        .expect("trains")
    };
    let (a, b) = (run(&cfg), run(&cfg));
    assert_eq!(history_without_time(&a), history_without_time(&b));
    assert_eq!(a.head, b.head);
    let c = run(&HeadConfig { seed: 1, ..cfg });
    assert_ne!(history_without_time(&a), history_without_time(&c));
}

/// The kept epoch is the one with the lowest loss on the selection split carved from train, and
/// patience counts on that split; the val split only reports (issue 29).
#[test]
fn early_stopping_keeps_the_best_epoch_of_the_selection_split() {
    // random labels: the selection loss soon rises, patience 2 stops the run
    let x = randn(64, 8, 1);
    let y: Vec<usize> = (0..64).map(|i| (i * 7 + i / 3) % 2).collect();
    let xv = randn(32, 8, 2);
    let yv: Vec<usize> = (0..32).map(|i| (i * 5 + 1) % 2).collect();
    let cfg = HeadConfig {
        epochs: 60,
        patience: Some(2),
        lr: 3e-2,
        select_fraction: 0.25,
        ..small_cfg()
    };
    let run = |yv: &[usize]| {
        let seen = Epochs::default();
        let out = train(
            &cfg,
            &names(2),
            TrainSet { x: x.view(), y: &y },
            TrainSet {
                x: xv.view(),
                y: yv,
            },
            &seen,
        )
        .expect("trains");
        assert_eq!(seen.seen.load(Ordering::SeqCst), out.history.len());
        out
    };
    let out = run(&yv);
    assert!(out.history.len() < 60, "patience never triggered");
    let best = out
        .history
        .iter()
        .min_by(|a, b| {
            a.select_loss
                .expect("a selection split")
                .total_cmp(&b.select_loss.expect("a selection split"))
        })
        .expect("epochs");
    assert_eq!(out.best_epoch, best.epoch);
    assert_eq!(out.history.len(), out.best_epoch + 2);
    let (fit, select) = selection_split(&y, &cfg).expect("select_fraction > 0");
    assert_eq!((fit.len(), select.len(), out.select_rows), (48, 16, 16));
    // the kept head is the best epoch's: its selection loss is reproduced on the selection rows
    let xs = x.select(ndarray::Axis(0), &select);
    let ys: Vec<usize> = select.iter().map(|&i| y[i]).collect();
    let proba = out.head.predict_proba(xs.view());
    let ll = vggcache::metrics::log_loss(&ys, proba.as_slice().expect("contiguous"), 2);
    let want = best.select_loss.expect("selection loss");
    assert!(
        (ll - want).abs() < 1e-4,
        "kept head loss {ll} vs best {want}"
    );
    // The val labels change nothing that is chosen: same epochs run, same kept epoch, same weights.
    let flipped: Vec<usize> = yv.iter().map(|&l| 1 - l).collect();
    let other = run(&flipped);
    assert_eq!(
        (other.best_epoch, other.history.len()),
        (out.best_epoch, out.history.len())
    );
    assert_eq!(other.head, out.head);
    assert_ne!(other.history[0].val_loss, out.history[0].val_loss);
}

/// The caller's stop (`Events::cancelled`) ends training at the next epoch or mini-batch with a
/// typed error, after the epochs already reported (issue 31).
#[test]
fn cancelled_events_stop_training_with_interrupted() {
    let (x, y) = blobs(20, 2, 8, 2.0, 3);
    let cfg = HeadConfig {
        epochs: 10,
        ..small_cfg()
    };
    let stop = Epochs {
        stop_after: Some(2),
        ..Epochs::default()
    };
    let e = train(
        &cfg,
        &names(2),
        TrainSet { x: x.view(), y: &y },
        TrainSet { x: x.view(), y: &y },
        &stop,
    )
    .expect_err("a cancelled run does not finish");
    assert!(
        matches!(e, HeadError::Interrupted { epoch: 3 }),
        "stopped before epoch 3: {e}"
    );
    assert_eq!(stop.seen.load(Ordering::SeqCst), 2, "two epochs ran");
    assert!(e.to_string().contains("run it again"), "{e}");
}

/// Without a selection split the last epoch is kept and early stopping is refused.
#[test]
fn no_selection_keeps_the_last_epoch() {
    let (x, y) = blobs(20, 2, 6, 3.0, 4);
    let cfg = HeadConfig {
        epochs: 4,
        select_fraction: 0.0,
        ..small_cfg()
    };
    let out = train(
        &cfg,
        &names(2),
        TrainSet { x: x.view(), y: &y },
        TrainSet { x: x.view(), y: &y },
        &Silent,
    )
    .expect("trains");
    assert_eq!((out.best_epoch, out.select_rows), (4, 0));
    assert!(out.history.iter().all(|m| m.select_loss.is_none()));
    let err = HeadConfig {
        patience: Some(2),
        ..cfg
    }
    .check()
    .expect_err("patience without a selection split");
    assert!(err.to_string().contains("select"), "{err}");
}

#[test]
fn empty_val_uses_a_deterministic_stratified_holdout() {
    let y: Vec<usize> = (0..50).map(|i| usize::from(i % 5 == 0)).collect();
    let (tr, va) = holdout_split(&y, 0.2, 9);
    assert_eq!(holdout_split(&y, 0.2, 9), (tr.clone(), va.clone()));
    assert_eq!(tr.len() + va.len(), 50);
    // Disjoint and covering: every row index lands in exactly one split.
    let mut seen = [0u8; 50];
    for &i in tr.iter().chain(&va) {
        seen[i] += 1;
    }
    assert!(seen.iter().all(|&k| k == 1), "each row once: {seen:?}");
    assert!(
        tr.iter().all(|i| !va.contains(i)),
        "train and hold-out overlap"
    );
    // Another seed draws another hold-out (the split is seeded, not fixed).
    assert_ne!(holdout_split(&y, 0.2, 10).1, va, "seed changes the draw");
    assert_eq!(va.iter().filter(|&&i| y[i] == 1).count(), 2);
    assert_eq!(va.len(), 10);
    let (x, y) = blobs(20, 2, 6, 3.0, 3);
    let empty = Array2::<f32>::zeros((0, 6));
    let out = train(
        &small_cfg(),
        &names(2),
        TrainSet { x: x.view(), y: &y },
        TrainSet {
            x: empty.view(),
            y: &[],
        },
        &Silent,
    )
    .expect("trains with a hold-out");
    assert!(out.history[0].val_loss.is_finite());
}

/// Little-endian f32 tensor bytes as numbers.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn standardized_checkpoint_round_trips() {
    let (mut x, y) = blobs(20, 2, 6, 3.0, 8);
    x.mapv_inplace(|v| v * 300.0 + 50.0);
    // Every train row trained on (no selection split), so the scaler holds all of train's statistics.
    let cfg = HeadConfig {
        standardize: true,
        select_fraction: 0.0,
        ..small_cfg()
    };
    let out = train(
        &cfg,
        &names(2),
        TrainSet { x: x.view(), y: &y },
        TrainSet { x: x.view(), y: &y },
        &Silent,
    )
    .expect("trains");
    let (mean, std) = out.head.scaler().expect("standardizing");
    let col = x.column(0);
    let m0 = col.mean().expect("rows");
    let s0 = (col.mapv(|v| (v - m0) * (v - m0)).mean().expect("rows")).sqrt();
    assert!(
        (mean[0] - m0).abs() < 1e-2 * s0 && (std[0] / s0 - 1.0).abs() < 1e-3,
        "{} {}",
        mean[0],
        std[0]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.safetensors");
    let meta = BTreeMap::from([("trunk_fingerprint".to_string(), "abc123".to_string())]);
    out.head.save(&path, &meta).expect("saves");
    let (back, meta_back) = FittedHead::load(&path).expect("loads");
    assert_eq!(back, out.head);
    assert_eq!(meta_back["trunk_fingerprint"], "abc123");
    assert_eq!(
        back.predict_proba(x.view()),
        out.head.predict_proba(x.view())
    );
    assert_eq!(back.layers().len(), 3);
    assert_eq!(back.layers()[0].0.dim(), (6, 16));

    // On disk the weights are in PyTorch's order (d_out, d_in): W of layers() transposed.
    let bytes = std::fs::read(&path).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let meta = header.metadata().as_ref().expect("metadata");
    assert_eq!(meta["weight_layout"], "(d_out, d_in)");
    let t = st.tensor("layers.0.weight").expect("layer 0");
    assert_eq!(t.shape(), [16, 6]);
    let on_disk = f32s(t.data());
    let w0 = back.layers()[0].0.to_owned();
    assert_eq!(on_disk, w0.t().iter().copied().collect::<Vec<_>>());

    // A head written before the change ((d_in, d_out) tensors) still loads to the same head.
    let mut old_meta: std::collections::HashMap<String, String> = meta.clone();
    old_meta.insert("weight_layout".into(), "(d_in, d_out)".into());
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in st.names() {
        let t = st.tensor(name).expect("tensor");
        let (shape, data) = if name.ends_with(".weight") {
            let (r, c) = (t.shape()[0], t.shape()[1]);
            let wt = Array2::from_shape_vec((r, c), f32s(t.data())).expect("shape");
            let data = wt.t().iter().flat_map(|v| v.to_le_bytes()).collect();
            (vec![c, r], data)
        } else {
            (t.shape().to_vec(), t.data().to_vec())
        };
        owned.push((name.to_string(), shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, shape, data)| {
            let v = safetensors::tensor::TensorView::new(
                safetensors::tensor::Dtype::F32,
                shape.clone(),
                data,
            )
            .expect("view");
            (n.clone(), v)
        })
        .collect();
    let old = dir.path().join("old.safetensors");
    safetensors::serialize_to_file(views, Some(old_meta), &old).expect("write old layout");
    let (from_old, _) = FittedHead::load(&old).expect("old layout loads");
    assert_eq!(from_old, out.head);
}

#[test]
fn write_run_writes_everything_or_nothing() {
    let (x, y) = blobs(10, 2, 4, 3.0, 1);
    let out = train(
        &small_cfg(),
        &names(2),
        TrainSet { x: x.view(), y: &y },
        TrainSet { x: x.view(), y: &y },
        &Silent,
    )
    .expect("trains");
    let runs = tempfile::tempdir().expect("tempdir");
    let dir = runs.path().join("r1");
    write_run(&dir, &out, &BTreeMap::new()).expect("writes");
    for f in [
        "head.safetensors",
        "metrics.csv",
        "loss_acc.png",
        "README.txt",
    ] {
        assert!(dir.join(f).metadata().expect(f).len() > 0, "{f} written");
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + out.history.len());
    assert!(csv.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,seconds,best"));
    let png = image::open(dir.join("loss_acc.png")).expect("png decodes");
    assert_eq!((png.width(), png.height()), (800, 600));
    // an existing run is not overwritten
    assert!(matches!(
        write_run(&dir, &out, &BTreeMap::new()),
        Err(HeadError::RunExists { .. })
    ));
    // a failure part-way (a reserved metadata key makes the checkpoint fail) leaves nothing
    let bad_meta = BTreeMap::from([("classes".to_string(), "x".to_string())]);
    let err = write_run(&runs.path().join("r2"), &out, &bad_meta).expect_err("reserved key");
    assert!(err.to_string().contains("reserved"), "{err}");
    let left: Vec<_> = std::fs::read_dir(runs.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("r1")],
        "nothing half-written"
    );
    let table = summary_table(
        &out,
        &y,
        &argmax_rows(out.head.predict_proba(x.view()).as_slice().expect("c"), 2),
    );
    assert!(
        table.contains("best epoch")
            && table.contains("confusion matrix")
            && table.contains("class1"),
        "{table}"
    );
}

fn expect_err<'a, 'b>(
    cfg: &HeadConfig,
    classes: usize,
    x: ArrayView2<'a, f32>,
    y: &'a [usize],
    xv: ArrayView2<'b, f32>,
    yv: &'b [usize],
) -> String {
    let e = train(
        cfg,
        &names(classes),
        TrainSet { x, y },
        TrainSet { x: xv, y: yv },
        &Silent,
    )
    .expect_err("must fail");
    e.to_string()
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (x, y) = blobs(5, 2, 4, 3.0, 1);
    let cfg = small_cfg();
    let empty = Array2::<f32>::zeros((0, 4));
    let msg = expect_err(&cfg, 2, empty.view(), &[], x.view(), &y);
    assert!(msg.contains("train split is empty"), "{msg}");
    let ones = vec![1usize; 10];
    let msg = expect_err(&cfg, 2, x.view(), &ones, x.view(), &y);
    assert!(
        msg.contains("only one class") && msg.contains("class1"),
        "{msg}"
    );
    let msg = expect_err(&cfg, 1, x.view(), &[0; 10], x.view(), &[0; 10]);
    assert!(msg.contains("at least 2"), "{msg}");
    let mut xn = x.clone();
    xn[[3, 2]] = f32::NAN;
    let msg = expect_err(&cfg, 2, xn.view(), &y, x.view(), &y);
    assert!(
        msg.contains("train row 3, dimension 2") && msg.contains("NaN"),
        "{msg}"
    );
    let mut xi = x.clone();
    xi[[7, 0]] = f32::INFINITY;
    let msg = expect_err(&cfg, 2, x.view(), &y, xi.view(), &y);
    assert!(msg.contains("val row 7") && msg.contains("inf"), "{msg}");
    let mut yb = y.clone();
    yb[4] = 5;
    let msg = expect_err(&cfg, 2, x.view(), &yb, x.view(), &y);
    assert!(
        msg.contains("row 4: label 5 is out of range for 2"),
        "{msg}"
    );
    let msg = expect_err(&cfg, 2, x.view(), &y[..9], x.view(), &y);
    assert!(msg.contains("10 feature rows but 9 labels"), "{msg}");
    let x5 = randn(10, 5, 1);
    let msg = expect_err(&cfg, 2, x.view(), &y, x5.view(), &y);
    assert!(msg.contains("expected 4, found 5"), "{msg}");

    let cases: [(HeadConfig, &str); 9] = [
        (
            HeadConfig {
                batch_size: 0,
                ..cfg.clone()
            },
            "batch_size",
        ),
        (
            HeadConfig {
                lr: -1e-3,
                ..cfg.clone()
            },
            "lr",
        ),
        (
            HeadConfig {
                lr: f32::NAN,
                ..cfg.clone()
            },
            "lr",
        ),
        (
            HeadConfig {
                dropout: 1.0,
                ..cfg.clone()
            },
            "dropout",
        ),
        (
            HeadConfig {
                dropout: -0.1,
                ..cfg.clone()
            },
            "dropout",
        ),
        (
            HeadConfig {
                epochs: 0,
                ..cfg.clone()
            },
            "epochs",
        ),
        (
            HeadConfig {
                patience: Some(0),
                ..cfg.clone()
            },
            "patience",
        ),
        (
            HeadConfig {
                hidden: vec![16, 0],
                ..cfg.clone()
            },
            "hidden",
        ),
        (
            HeadConfig {
                val_fraction: 1.5,
                ..cfg.clone()
            },
            "val_fraction",
        ),
    ];
    for (bad, field) in cases {
        let err = bad.check().expect_err(field);
        assert!(
            matches!(err, HeadError::Config { field: f, .. } if f == field),
            "{err}"
        );
        let msg = expect_err(&bad, 2, x.view(), &y, x.view(), &y);
        assert!(msg.contains(field), "{msg}");
    }
    assert!(HeadConfig::default().check().is_ok());
}

#[test]
fn checkpoint_with_other_dimension_or_classes_is_refused() {
    let (x, y) = blobs(5, 2, 8, 3.0, 1);
    let out = train(
        &small_cfg(),
        &names(2),
        TrainSet { x: x.view(), y: &y },
        TrainSet { x: x.view(), y: &y },
        &Silent,
    )
    .expect("trains");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.safetensors");
    out.head.save(&path, &BTreeMap::new()).expect("saves");
    let (head, _) = FittedHead::load(&path).expect("loads");
    let other = randn(3, 10, 2);
    let e = head.check_compatible(10, &names(2)).expect_err("D differs");
    assert!(e.to_string().contains("expected 8, found 10"), "{e}");
    let e = head.try_predict_proba(other.view()).expect_err("D differs");
    assert!(
        matches!(
            e,
            HeadError::DimMismatch {
                expected: 8,
                found: 10,
                ..
            }
        ),
        "{e}"
    );
    let e = head
        .check_compatible(8, &["cat".into(), "dog".into()])
        .expect_err("classes differ");
    assert!(e.to_string().contains("cat"), "{e}");
    assert!(head.check_compatible(8, &names(2)).is_ok());
    let r = std::panic::catch_unwind(|| head.predict_proba(other.view()));
    assert!(r.is_err(), "predict_proba with the wrong D panics");
    // a file that is not a checkpoint
    std::fs::write(dir.path().join("junk"), b"not safetensors").expect("write");
    let e = FittedHead::load(&dir.path().join("junk")).expect_err("junk");
    assert!(e.to_string().contains("junk"), "{e}");
}
