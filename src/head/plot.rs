//! The per-epoch loss/accuracy chart: `loss_acc.png` of a run (text drawn with the embedded
//! DejaVu Sans) and the same chart as SVG for the report (text as `<text>`, drawn by the browser).
//!
//! Top panel: loss per epoch; bottom panel: accuracy. Both with labelled axes, numbered ticks
//! (every epoch up to 10, then a round step) and a vertical line at the kept epoch; right of them
//! one legend naming the series (train, val, the selection split when there is one) and the kept
//! epoch.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{EpochMetrics, HeadError};

/// Legend of [`draw`], for the run's README.txt.
pub const LEGEND: &str = "loss_acc.png: top panel loss per epoch, bottom panel accuracy per \
epoch, each with labelled axes and a legend: train, val and (when the run carved one) the \
selection split; a green vertical line marks the kept epoch.";

/// Width and height of the chart in pixels.
const SIZE: (u32, u32) = (800, 600);

/// The font the chart's text is drawn in (Bitstream Vera licence: assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name the chart asks for; the SVG names it too, so a browser uses its own sans-serif.
const FAMILY: &str = "sans-serif";

const TRAIN: RGBColor = RGBColor(214, 39, 40);
const VAL: RGBColor = RGBColor(31, 119, 180);
const SELECT: RGBColor = RGBColor(255, 127, 14);
const KEPT: RGBColor = RGBColor(44, 160, 44);

/// Registers [`FONT`] with plotters once: it has no font of its own.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary; a failure would show as
        // an error of the first text drawn, never a panic.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Draw the history to a PNG at `path`.
pub fn draw(history: &[EpochMetrics], best_epoch: usize, path: &Path) -> Result<(), HeadError> {
    let err = |message: String| HeadError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        chart(&root, history, best_epoch).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| err("buffer size".into()))?;
    img.save(path).map_err(|e| err(e.to_string()))
}

/// The learning curves of the run folder `run` (read from its `metrics.csv`) as an `<svg>`
/// element whose labels are `<text>`, for inlining in HTML.
pub fn svg_of_run(run: &Path) -> Result<String, HeadError> {
    let csv = run.join("metrics.csv");
    let (history, best_epoch) = read_metrics(&csv)?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        let err = |message: String| HeadError::Plot {
            path: csv.clone(),
            message,
        };
        chart(&root, &history, best_epoch).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// One row of `metrics.csv` as [`super::run`] writes it; runs written before the selection split
/// have no `select_*` columns.
#[derive(serde::Deserialize)]
struct MetricsRow {
    epoch: usize,
    train_loss: f64,
    train_acc: f64,
    val_loss: f64,
    val_acc: f64,
    seconds: f64,
    best: u8,
    #[serde(default)]
    select_loss: Option<f64>,
    #[serde(default)]
    select_acc: Option<f64>,
}

/// The history and kept epoch (the row with `best` = 1; 0 when none is marked) of a run's
/// `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<(Vec<EpochMetrics>, usize), HeadError> {
    let bad = |source: csv::Error| HeadError::MetricsCsv {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| HeadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut history = Vec::new();
    let mut best_epoch = 0;
    for row in csv::Reader::from_reader(file).deserialize::<MetricsRow>() {
        let r = row.map_err(bad)?;
        if r.best == 1 {
            best_epoch = r.epoch;
        }
        history.push(EpochMetrics {
            epoch: r.epoch,
            train_loss: r.train_loss,
            train_acc: r.train_acc,
            val_loss: r.val_loss,
            val_acc: r.val_acc,
            select_loss: r.select_loss,
            select_acc: r.select_acc,
            seconds: r.seconds,
        });
    }
    Ok((history, best_epoch))
}

/// A value label with as many decimals as the axis' scale needs.
fn value_label(v: f64, top: f64) -> String {
    match top {
        t if t >= 10.0 => format!("{v:.0}"),
        t if t >= 1.0 => format!("{v:.1}"),
        t if t >= 0.1 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// One series of a panel: its name, colour and value of an epoch (`None`: not measured).
type Series = (&'static str, RGBColor, fn(&EpochMetrics) -> Option<f64>);

/// Width of the legend strip right of the panels, in pixels.
const LEGEND_W: u32 = 130;

/// Draws both panels on `root` and one legend right of them; the error says what failed.
fn chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    history: &[EpochMetrics],
    best_epoch: usize,
) -> Result<(), String> {
    register_font();
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let last = history.iter().map(|m| m.epoch).max().unwrap_or(1).max(1);
    let with_selection = history.iter().any(|m| m.select_loss.is_some());
    let (panels_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND_W);
    let (top, bottom) = panels_area.split_vertically(SIZE.1 / 2);
    let loss: [Series; 3] = [
        ("train", TRAIN, |m| Some(m.train_loss)),
        ("val", VAL, |m| Some(m.val_loss)),
        ("selection", SELECT, |m| m.select_loss),
    ];
    let acc: [Series; 3] = [
        ("train", TRAIN, |m| Some(m.train_acc)),
        ("val", VAL, |m| Some(m.val_acc)),
        ("selection", SELECT, |m| m.select_acc),
    ];
    let shown = |s: &[Series; 3]| -> Vec<Series> {
        s.iter()
            .filter(|(name, ..)| with_selection || *name != "selection")
            .copied()
            .collect()
    };
    let finite_max = history
        .iter()
        .flat_map(|m| loss.iter().filter_map(move |(_, _, get)| get(m)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let loss_top = if finite_max > 0.0 {
        finite_max * 1.08
    } else {
        1.0
    };
    for (area, what, y_top, series) in [
        (&top, "loss", loss_top, shown(&loss)),
        (&bottom, "accuracy", 1.0, shown(&acc)),
    ] {
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.5f64..last as f64 + 0.5, 0.0f64..y_top)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc(what)
            // At most one tick per epoch: plotters' round steps (1, 2, 5, 10, ...) stay whole.
            .x_labels(last.min(10))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| value_label(*y, y_top))
            .y_labels(6)
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 17))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(e)?;
        if best_epoch > 0 {
            let x = best_epoch as f64;
            c.draw_series(LineSeries::new(
                [(x, 0.0), (x, y_top)],
                KEPT.stroke_width(2),
            ))
            .map_err(e)?;
        }
        for (_, color, get) in series {
            // Values that are not finite (a diverged epoch) are left out, not drawn at the edge.
            let pts: Vec<(f64, f64)> = history
                .iter()
                .filter_map(|m| Some((m.epoch as f64, get(m)?)))
                .filter(|(_, v)| v.is_finite())
                .map(|(x, v)| (x, v.clamp(0.0, y_top)))
                .collect();
            c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(e)?;
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(e)?;
        }
    }
    // One legend for both panels, in its own strip so it never hides a curve.
    let mut entries: Vec<(String, RGBColor, bool)> = shown(&loss)
        .iter()
        .map(|(name, color, _)| (name.to_string(), *color, false))
        .collect();
    if best_epoch > 0 {
        entries.push((format!("kept epoch {best_epoch}"), KEPT, true));
    }
    let font = TextStyle::from((FAMILY, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let row = 26;
    let y0 = SIZE.1 as i32 / 2 - row * entries.len() as i32 / 2;
    for (i, (label, color, vertical)) in entries.into_iter().enumerate() {
        let y = y0 + row * i as i32 + row / 2;
        let sample = if vertical {
            [(14, y - 9), (14, y + 9)]
        } else {
            [(4, y), (24, y)]
        };
        legend_area
            .draw(&PathElement::new(sample, color.stroke_width(2)))
            .map_err(e)?;
        legend_area
            .draw(&Text::new(label, (32, y), font.clone()))
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(epochs: usize, selection: bool) -> Vec<EpochMetrics> {
        (1..=epochs)
            .map(|e| {
                let t = e as f64;
                EpochMetrics {
                    epoch: e,
                    train_loss: 1.2 / t,
                    train_acc: 0.5 + 0.4 * (1.0 - 1.0 / t),
                    val_loss: 1.0 / t + 0.02 * t,
                    val_acc: 0.55 + 0.3 * (1.0 - 1.0 / t),
                    select_loss: selection.then_some(1.1 / t + 0.01 * t),
                    select_acc: selection.then_some(0.5 + 0.35 * (1.0 - 1.0 / t)),
                    seconds: 0.1,
                }
            })
            .collect()
    }

    /// Columns (or rows) of `img` in `xs × ys` holding a dark pixel.
    fn inked(img: &image::RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> usize {
        xs.filter(|&x| {
            ys.clone()
                .any(|y| img.get_pixel(x, y).0.iter().all(|&c| c < 110))
        })
        .count()
    }

    /// The PNG carries text: the y-axis label area left of each panel's axis, the x-axis label
    /// area under the bottom panel and the legend strip hold glyphs (many dark columns/rows), where
    /// a plot without text has at most its one-pixel frame line there.
    #[test]
    fn png_has_axis_numbers_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("loss_acc.png");
        draw(&history(12, true), 7, &png).unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        let (w, h) = SIZE;
        // Left label areas: tick numbers and the rotated "loss"/"accuracy" span many columns.
        for ys in [20..h / 2 - 50, h / 2 + 20..h - 50] {
            let cols = inked(&img, 0..70, ys.clone());
            assert!(
                cols >= 25,
                "{cols} inked columns left of the axis in rows {ys:?}"
            );
        }
        // Under the bottom panel: epoch numbers and "epoch", many inked rows (transpose).
        let rows = (h - 54..h)
            .filter(|&y| (80..w - LEGEND_W).any(|x| img.get_pixel(x, y).0.iter().all(|&c| c < 110)))
            .count();
        assert!(rows >= 15, "{rows} inked rows under the bottom axis");
        // The legend strip right of the panels: its words span many columns.
        let cols = inked(&img, w - LEGEND_W + 30..w, 0..h);
        assert!(cols >= 40, "{cols} inked columns in the legend strip");
    }

    #[test]
    fn svg_labels_are_text_and_read_back_from_metrics_csv() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(4, true);
        let mut w = csv::Writer::from_path(dir.path().join("metrics.csv")).unwrap();
        w.write_record(crate::head::run::METRICS_HEADER).unwrap();
        for m in &h {
            w.write_record([
                m.epoch.to_string(),
                m.train_loss.to_string(),
                m.train_acc.to_string(),
                m.val_loss.to_string(),
                m.val_acc.to_string(),
                m.seconds.to_string(),
                u8::from(m.epoch == 3).to_string(),
                m.select_loss.unwrap().to_string(),
                m.select_acc.unwrap().to_string(),
            ])
            .unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let (back, best) = read_metrics(&dir.path().join("metrics.csv")).unwrap();
        assert_eq!((back.len(), best), (4, 3));
        assert_eq!(back[1].select_loss, h[1].select_loss);
        let svg = svg_of_run(dir.path()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>').and_then(|(_, r)| r.split_once("</text>")))
            .map(|(inner, _)| inner.trim())
            .collect();
        for want in [
            "epoch",
            "loss",
            "accuracy",
            "train",
            "val",
            "selection",
            "kept epoch 3",
            "1",
            "4",
        ] {
            assert!(texts.contains(&want), "no <text>{want}</text> in {texts:?}");
        }
    }

    /// Old runs (no selection columns), a missing or malformed file: read or a clear error.
    #[test]
    fn metrics_csv_old_and_bad() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("metrics.csv");
        std::fs::write(
            &f,
            "epoch,train_loss,train_acc,val_loss,val_acc,seconds,best\n1,0.5,0.7,0.6,0.6,0.1,0\n2,0.4,0.8,0.5,0.7,0.1,1\n",
        )
        .unwrap();
        let (h, best) = read_metrics(&f).unwrap();
        assert_eq!((h.len(), best, h[0].select_loss), (2, 2, None));
        let svg = svg_of_run(dir.path()).unwrap();
        assert!(
            !svg.contains(">selection<"),
            "no selection series without one"
        );
        std::fs::write(&f, "epoch,train_loss\n1,x\n").unwrap();
        let e = read_metrics(&f).unwrap_err().to_string();
        assert!(e.contains("metrics.csv"), "{e}");
        let e = svg_of_run(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    /// Diverged values and an empty history draw without error.
    #[test]
    fn odd_histories_draw() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = history(3, false);
        h[1].val_loss = f64::INFINITY;
        h[2].train_loss = f64::NAN;
        draw(&h, 1, &dir.path().join("a.png")).unwrap();
        draw(&[], 0, &dir.path().join("b.png")).unwrap();
    }
}
