//! The training loop: input checks, seeded shuffling, per-epoch metrics, and the kept epoch chosen
//! on a selection split carved from train (never on the reported val split), with early stopping.

use std::time::Instant;

use ndarray::{s, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::adam::Adam;
use super::feed::{Feed, InMemory};
use super::loss::softmax_cross_entropy;
use super::mlp::{mix, Mlp};
use super::scaler::Standardizer;
use super::workspace::Workspace;
use crate::events::{Event, Events};

use super::{EpochMetrics, FittedHead, HeadConfig, HeadError, TrainOutcome, TrainSet, EVAL_ROWS};

/// First non-finite value of `x: (n, d)`, as an error naming the split, row and column.
pub(crate) fn check_finite(x: ArrayView2<f32>, split: &'static str) -> Result<(), HeadError> {
    for (row, r) in x.axis_iter(Axis(0)).enumerate() {
        if let Some((col, &value)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(HeadError::NonFinite {
                split,
                row,
                col,
                value,
            });
        }
    }
    Ok(())
}

fn check_split(set: &TrainSet, split: &'static str, classes: usize) -> Result<(), HeadError> {
    let rows = set.x.nrows();
    if rows != set.y.len() {
        return Err(HeadError::LengthMismatch {
            split,
            rows,
            labels: set.y.len(),
        });
    }
    if let Some((row, &label)) = set.y.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(HeadError::LabelOutOfRange {
            split,
            row,
            label,
            classes,
        });
    }
    check_finite(set.x, split)
}

/// A deterministic stratified hold-out: per class, a seeded shuffle of its rows, of which
/// `round(n_c · fraction)` (at most `n_c - 1`) go to validation. Returns `(train, val)` row
/// indices, each sorted.
pub fn holdout_split(y: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    stratified(y, fraction, mix(seed, 2, 0))
}

/// The selection split of `cfg` ([`HeadConfig::select_fraction`]) carved from training rows with
/// labels `y`: `Some((fit, select))` row indices into `y`, each sorted, stratified as
/// [`holdout_split`] but drawn from another stream of `cfg.seed`; `None` when `select_fraction`
/// is 0, or when the train split is too small for the fraction to hold out a single row (then the
/// last epoch is kept, and early stopping, which needs the split, is refused).
pub fn selection_split(y: &[usize], cfg: &HeadConfig) -> Option<(Vec<usize>, Vec<usize>)> {
    if cfg.select_fraction <= 0.0 {
        return None;
    }
    let (fit, select) = stratified(y, cfg.select_fraction, mix(cfg.seed, 3, 0));
    (!select.is_empty()).then_some((fit, select))
}

fn stratified(y: &[usize], fraction: f64, stream: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = y.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = StdRng::seed_from_u64(stream);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for c in 0..classes {
        let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        shuffle(&mut rows, &mut rng);
        let k = ((rows.len() as f64 * fraction).round() as usize).min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..k]);
        train.extend_from_slice(&rows[k..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Fisher–Yates with a `u64` draw per position (modulo bias < 2⁻³² for our sizes).
pub(crate) fn shuffle(v: &mut [usize], rng: &mut dyn RngCore) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Eval-mode mean loss and accuracy of `mlp` on every row of `feed`, `EVAL_ROWS` at a time.
fn evaluate(
    mlp: &Mlp,
    scaler: Option<&Standardizer>,
    feed: &mut dyn Feed,
) -> Result<(f64, f64), HeadError> {
    let classes = *mlp.dims().last().expect("dims");
    let mut dl = ndarray::Array2::<f32>::zeros((EVAL_ROWS.min(feed.len()).max(1), classes));
    let (mut loss, mut correct) = (0.0f64, 0usize);
    feed.chunks(EVAL_ROWS, scaler, &mut |x, y| {
        let rows = x.nrows();
        let logits = mlp.forward_eval(x);
        let (l, c) = softmax_cross_entropy(logits.view(), y, dl.slice_mut(s![..rows, ..]));
        loss += l * rows as f64;
        correct += c;
    })?;
    let n = feed.len().max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// Train the head on `train` and report on `val`; the kept epoch is chosen on a selection split
/// carved from `train` ([`selection_split`]), never on `val`.
///
/// `train.x: (n, d)`, `val.x: (n_val, d)`; labels index `classes`. When `val` has no rows, a
/// stratified `cfg.val_fraction` of `train` is held out ([`holdout_split`]). Checks first: the
/// config, non-empty splits, labels in range, at least two classes present in train, every
/// feature finite (the error names the row), the same D in both splits. Reports each epoch to
/// `events` ([`Event::Epoch`]) and stops with [`HeadError::Interrupted`] once
/// [`Events::cancelled`] says so (polled before each epoch and each mini-batch). Same seed and
/// thread count give identical metrics.
pub fn train(
    cfg: &HeadConfig,
    classes: &[String],
    train: TrainSet,
    val: TrainSet,
    events: &dyn Events,
) -> Result<TrainOutcome, HeadError> {
    cfg.check()?;
    // reborrow both splits with one local lifetime (ndarray views are invariant)
    let (train, val) = (
        TrainSet {
            x: train.x.view(),
            y: train.y,
        },
        TrainSet {
            x: val.x.view(),
            y: val.y,
        },
    );
    let c = classes.len();
    if c < 2 {
        return Err(HeadError::TooFewClasses { found: c });
    }
    if train.x.nrows() == 0 || train.y.is_empty() {
        return Err(HeadError::Empty { split: "train" });
    }
    check_split(&train, "train", c)?;
    let d = train.x.ncols();
    if d == 0 {
        return Err(HeadError::DimMismatch {
            what: "train features".into(),
            expected: 1,
            found: 0,
        });
    }
    let (train_idx, val_set, val_idx) = if val.y.is_empty() && val.x.nrows() == 0 {
        let (tr, va) = holdout_split(train.y, cfg.val_fraction, cfg.seed);
        if va.is_empty() {
            return Err(HeadError::Empty { split: "val" });
        }
        (tr, train, va)
    } else {
        check_split(&val, "val", c)?;
        if val.x.ncols() != d {
            return Err(HeadError::DimMismatch {
                what: "val features vs train features".into(),
                expected: d,
                found: val.x.ncols(),
            });
        }
        (
            (0..train.y.len()).collect(),
            val,
            (0..val.y.len()).collect(),
        )
    };
    let train_labels: Vec<usize> = train_idx.iter().map(|&i| train.y[i]).collect();
    let mut val_feed = InMemory::new(val_set.x, val_set.y, val_idx);
    let pick = |v: &[usize]| -> Vec<usize> { v.iter().map(|&i| train_idx[i]).collect() };
    let (fit_idx, select_idx) = match selection_split(&train_labels, cfg) {
        Some((fit, select)) => (pick(&fit), Some(pick(&select))),
        None => (train_idx.clone(), None),
    };
    let mut train_feed = InMemory::new(train.x, train.y, fit_idx);
    let mut select_feed = select_idx.map(|idx| InMemory::new(train.x, train.y, idx));
    train_feed_with(
        cfg,
        classes,
        &mut train_feed,
        select_feed.as_mut().map(|f| f as &mut dyn Feed),
        &mut val_feed,
        events,
    )
}

/// [`train`] on any [`Feed`] (a matrix in memory or a stream): the same seeded shuffle, steps
/// and kept-epoch choice. `select` is the selection split carved from train (the caller carves
/// it with [`selection_split`]; `None` keeps the last epoch); `val` is only reported, never used
/// to choose. `train: len` rows, `val: len_val` rows, all of D features and labels
/// below `classes.len()` (an in-memory caller checks finiteness first; a stream's reader refuses
/// non-finite values). The standardizer comes from one pass over `train`; val is read once per
/// epoch in `EVAL_ROWS`-row chunks. Same seed and thread count give identical weights whichever
/// feed delivers the same rows in the same order. Epochs and cancellation: as [`train`].
pub fn train_feed_with(
    cfg: &HeadConfig,
    classes: &[String],
    train: &mut dyn Feed,
    mut select: Option<&mut dyn Feed>,
    val: &mut dyn Feed,
    events: &dyn Events,
) -> Result<TrainOutcome, HeadError> {
    cfg.check()?;
    let c = classes.len();
    if c < 2 {
        return Err(HeadError::TooFewClasses { found: c });
    }
    if train.is_empty() {
        return Err(HeadError::Empty { split: "train" });
    }
    if val.is_empty() {
        return Err(HeadError::Empty { split: "val" });
    }
    if select.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(HeadError::Empty { split: "selection" });
    }
    if select.is_none() && cfg.patience.is_some() {
        return Err(HeadError::Config {
            field: "patience",
            message: format!(
                "early stopping needs a selection split carved from train, and \
                 select_fraction {} of these {} train rows holds out none: give a larger \
                 --select-fraction or leave --patience out",
                cfg.select_fraction,
                train.len()
            ),
        });
    }
    let d = train.dim();
    for (what, other) in [("val", Some(&*val)), ("selection", select.as_deref())] {
        if let Some(f) = other.filter(|f| f.dim() != d) {
            return Err(HeadError::DimMismatch {
                what: format!("{what} features vs train features"),
                expected: d,
                found: f.dim(),
            });
        }
    }
    for (split, feed) in [
        ("train", Some(&*train)),
        ("val", Some(&*val)),
        ("selection", select.as_deref()),
    ] {
        let Some(feed) = feed else { continue };
        if let Some((row, &label)) = feed.labels().iter().enumerate().find(|(_, &l)| l >= c) {
            return Err(HeadError::LabelOutOfRange {
                split,
                row,
                label,
                classes: c,
            });
        }
    }
    let mut present = vec![false; c];
    for &l in train.labels() {
        present[l] = true;
    }
    if present.iter().filter(|&&p| p).count() < 2 {
        let only = present.iter().position(|&p| p).unwrap_or(0);
        return Err(HeadError::OneClass {
            class: classes[only].clone(),
            classes: c,
        });
    }

    let scaler = if cfg.standardize {
        Some(train.standardizer()?)
    } else {
        None
    };
    let n_train = train.len();
    let mut dims = vec![d];
    dims.extend_from_slice(&cfg.hidden);
    dims.push(c);
    cfg.check_memory(d, c, Some(n_train))?;
    let mut mlp = Mlp::new(&dims, cfg.seed);
    let mut adam = Adam::new(cfg.adam(), mlp.n_params());
    let mut ws = Workspace::new(&dims, cfg.batch_size.min(n_train));
    let mut rng = StdRng::seed_from_u64(mix(cfg.seed, 1, 0));
    // The epoch's permutation is drawn from the same generator as dropout, before the epoch's
    // steps, whatever the feed: a stream therefore consumes the same draws as memory.
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut best_params: Vec<f32> = Vec::new();
    let (mut best_epoch, mut best_loss, mut since_best) = (0usize, f64::INFINITY, 0usize);
    let mut history = Vec::new(); // grows per epoch: --epochs may be far more than are run

    for epoch in 1..=cfg.epochs {
        if events.cancelled() {
            return Err(HeadError::Interrupted { epoch });
        }
        let t0 = Instant::now();
        shuffle(&mut order, &mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        train.epoch(
            &order,
            cfg.batch_size,
            scaler.as_ref(),
            &mut ws,
            &mut |ws, yb| {
                if events.cancelled() {
                    return Err(HeadError::Interrupted { epoch });
                }
                let (l, k) = mlp.train_step(ws, yb, cfg.dropout, &mut adam, &mut rng);
                loss_sum += l * yb.len() as f64;
                correct += k;
                seen += yb.len();
                Ok(())
            },
        )?;
        assert_eq!(
            seen, n_train,
            "the feed delivered every train row once per epoch"
        );
        let seconds = t0.elapsed().as_secs_f64();
        let n = n_train as f64;
        let train_loss = loss_sum / n;
        if !train_loss.is_finite() {
            return Err(HeadError::Diverged {
                epoch,
                what: "train loss",
                value: train_loss,
            });
        }
        let (val_loss, val_acc) = evaluate(&mlp, scaler.as_ref(), val)?;
        let selected = match select.as_deref_mut() {
            Some(f) => Some(evaluate(&mlp, scaler.as_ref(), f)?),
            None => None,
        };
        for (what, value) in [
            ("val loss", Some(val_loss)),
            ("selection loss", selected.map(|s| s.0)),
        ] {
            if let Some(value) = value.filter(|v| !v.is_finite()) {
                return Err(HeadError::Diverged { epoch, what, value });
            }
        }
        let m = EpochMetrics {
            epoch,
            train_loss,
            train_acc: correct as f64 / n,
            val_loss,
            val_acc,
            select_loss: selected.map(|s| s.0),
            select_acc: selected.map(|s| s.1),
            seconds,
        };
        events.event(&Event::Epoch(m.clone()));
        history.push(m);
        // Without a selection split every epoch counts as better: the last one is kept.
        if selected.is_none_or(|(loss, _)| loss < best_loss) {
            best_loss = selected.map_or(best_loss, |(loss, _)| loss);
            best_epoch = epoch;
            since_best = 0;
            // the last epoch's parameters stay in `mlp`: no copy needed
            if epoch < cfg.epochs && selected.is_some() {
                best_params.clear();
                best_params.extend_from_slice(mlp.params());
            }
        } else {
            since_best += 1;
            if cfg.patience.is_some_and(|p| since_best >= p) {
                break;
            }
        }
    }
    drop(adam);
    drop(ws);
    if best_epoch != history.len() {
        mlp.params_mut().copy_from_slice(&best_params);
    }
    drop(best_params);
    let head = FittedHead::new(mlp, scaler, classes.to_vec(), cfg.clone())?;
    Ok(TrainOutcome {
        head,
        history,
        best_epoch,
        select_rows: select.map_or(0, |f| f.len()),
    })
}

/// How training reads the views of a training image ([`train_views`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewSampling {
    /// One view per image per epoch, drawn anew each epoch: an epoch costs one row per image.
    #[default]
    OnePerEpoch,
    /// Every view is a row of its own (an epoch costs one row per view).
    All,
}

impl ViewSampling {
    /// "sample" or "all", as the run's metadata records it.
    pub fn name(self) -> &'static str {
        match self {
            ViewSampling::OnePerEpoch => "sample",
            ViewSampling::All => "all",
        }
    }
}

/// The selection split of images seen through views: image k's rows are `groups[k]` (plain
/// view first), its class `y[k]`. The IMAGES are split as [`selection_split`] splits rows, so an
/// image's views are all on one side. Returns `(fit groups, selection rows)`: the fit images
/// with all their rows, and the plain row of each selection image; `None` for the selection
/// rows as [`selection_split`] (every image fits).
pub fn view_selection_split(
    groups: &[Vec<usize>],
    y: &[usize],
    cfg: &HeadConfig,
) -> (Vec<Vec<usize>>, Vec<usize>, Option<Vec<usize>>) {
    let (fit, select) = match selection_split(y, cfg) {
        Some((fit, select)) => (fit, Some(select)),
        None => ((0..y.len()).collect(), None),
    };
    let fit_groups = fit.iter().map(|&k| groups[k].clone()).collect();
    let fit_labels = fit.iter().map(|&k| y[k]).collect();
    let select_rows = select.map(|s| s.iter().map(|&k| groups[k][0]).collect());
    (fit_groups, fit_labels, select_rows)
}

/// [`train`] on training images given as views: `x: (n, d)` holds every view row, image k's rows
/// are `groups[k]` (its plain view first), its class `y[k]`; `val: (n_val, d)` is scored on the
/// rows given (plain views). The selection split is carved BY IMAGE
/// ([`view_selection_split`]) and reads the plain views of its images; the fit images are fed as
/// `sampling` says ([`ViewFeed`](super::feed::ViewFeed): one view per image per epoch, or every
/// view as a row). Checks as [`train`]: the config, labels in range, finite features.
#[allow(clippy::too_many_arguments)]
pub fn train_views(
    cfg: &HeadConfig,
    classes: &[String],
    x: ArrayView2<f32>,
    groups: &[Vec<usize>],
    y: &[usize],
    val: TrainSet,
    sampling: ViewSampling,
    events: &dyn Events,
) -> Result<TrainOutcome, HeadError> {
    cfg.check()?;
    if groups.len() != y.len() {
        return Err(HeadError::LengthMismatch {
            split: "train",
            rows: groups.len(),
            labels: y.len(),
        });
    }
    if groups.is_empty() || groups.iter().any(|g| g.is_empty()) {
        return Err(HeadError::Empty { split: "train" });
    }
    if let Some(&r) = groups.iter().flatten().find(|&&r| r >= x.nrows()) {
        return Err(HeadError::DimMismatch {
            what: "train view rows".into(),
            expected: x.nrows(),
            found: r + 1,
        });
    }
    check_finite(x, "train")?;
    check_split(&val, "val", classes.len())?;
    let mut row_y = vec![0; x.nrows()];
    for (g, &l) in groups.iter().zip(y) {
        for &r in g {
            row_y[r] = l;
        }
    }
    let (fit_groups, fit_labels, select) = view_selection_split(groups, y, cfg);
    let mut train_feed: Box<dyn Feed> = match sampling {
        ViewSampling::OnePerEpoch => Box::new(super::feed::ViewFeed::new(
            x,
            fit_groups,
            fit_labels,
            mix(cfg.seed, 4, 0),
        )),
        ViewSampling::All => {
            let rows: Vec<usize> = fit_groups.iter().flatten().copied().collect();
            Box::new(InMemory::new(x, &row_y, rows))
        }
    };
    let mut select_feed = select.map(|rows| InMemory::new(x, &row_y, rows));
    let mut val_feed = InMemory::new(val.x, val.y, (0..val.y.len()).collect());
    train_feed_with(
        cfg,
        classes,
        train_feed.as_mut(),
        select_feed.as_mut().map(|f| f as &mut dyn Feed),
        &mut val_feed,
        events,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::feed::ViewFeed;
    use std::collections::HashSet;

    /// 40 images of 2 classes, each with rows 3k (plain), 3k+1, 3k+2.
    fn images() -> (Vec<Vec<usize>>, Vec<usize>) {
        let groups = (0..40).map(|k| vec![3 * k, 3 * k + 1, 3 * k + 2]).collect();
        (groups, (0..40).map(|k| k % 2).collect())
    }

    #[test]
    fn the_selection_split_of_views_is_by_image_and_reads_plain_views() {
        let (groups, y) = images();
        let cfg = HeadConfig {
            select_fraction: 0.25,
            ..HeadConfig::default()
        };
        let (fit, fit_y, select) = view_selection_split(&groups, &y, &cfg);
        let select = select.expect("a quarter of 40 images");
        assert_eq!(select.len(), 10);
        assert_eq!(fit.len() + select.len(), 40);
        assert_eq!(fit_y.len(), fit.len());
        let fit_rows: HashSet<usize> = fit.iter().flatten().copied().collect();
        for g in &groups {
            let inside = g.iter().filter(|r| fit_rows.contains(r)).count();
            assert!(
                inside == 0 || inside == g.len(),
                "image {g:?} straddles fit and selection"
            );
            if inside == 0 {
                assert!(select.contains(&g[0]), "{g:?}: selected by its plain view");
            }
        }
        assert!(
            select.iter().all(|r| r % 3 == 0),
            "selection reads plain views"
        );
        assert_eq!(fit.iter().map(|g| g.len()).sum::<usize>(), 30 * 3);
    }

    #[test]
    fn a_view_feed_reads_one_view_per_image_drawn_anew_each_epoch() {
        let (groups, y) = images();
        let x = ndarray::Array2::<f32>::zeros((120, 2));
        let feed = ViewFeed::new(x.view(), groups.clone(), y, 9);
        assert_eq!(Feed::len(&feed), 40);
        let mut seen: Vec<HashSet<usize>> = vec![HashSet::new(); 40];
        for epoch in 0..20 {
            for (k, g) in groups.iter().enumerate() {
                let r = feed.view_of(k, epoch);
                assert!(g.contains(&r));
                assert_eq!(r, feed.view_of(k, epoch), "seeded");
                seen[k].insert(r);
            }
        }
        assert!(
            seen.iter().all(|s| s.len() == 3),
            "every view drawn in 20 epochs"
        );
    }
}
