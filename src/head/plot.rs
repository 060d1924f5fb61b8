//! The per-epoch loss/accuracy plot as a PNG, drawn without text (plotters here has no font backend).
//!
//! Top panel: loss (y from 0 to the largest loss); bottom panel: accuracy (y from 0 to 1, grey
//! lines at 0.5 and 0.9). Red = train, blue = val; one dot per epoch; a green vertical line marks
//! the best epoch. The same legend is written to the run's README.txt.

use std::path::Path;

use plotters::prelude::*;

use super::{EpochMetrics, HeadError};

/// Legend of [`draw`], for the run's README.txt.
pub const LEGEND: &str = "loss_acc.png: top panel loss per epoch (y from 0 to the largest loss), \
bottom panel accuracy (y from 0 to 1, grey guides at 0.5 and 0.9); red = train, blue = val, \
one dot per epoch, green vertical line = best epoch (lowest val loss).";

const W: u32 = 800;

/// One panel: its area, the top of its y range, the (train, val) getters, grey guide lines.
type Panel<'a, A> = (&'a A, f64, [fn(&EpochMetrics) -> f64; 2], &'a [f64]);
const H: u32 = 600;

/// Draw the history to a PNG at `path`.
pub fn draw(history: &[EpochMetrics], best_epoch: usize, path: &Path) -> Result<(), HeadError> {
    let err = |message: String| HeadError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let mut buf = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (top, bottom) = root.split_vertically(H / 2);
        let n = history.len().max(1) as f64;
        let max_loss = history
            .iter()
            .flat_map(|m| [m.train_loss, m.val_loss])
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.05;
        let panels: [Panel<'_, _>; 2] = [
            (&top, max_loss, [|m| m.train_loss, |m| m.val_loss], &[]),
            (&bottom, 1.0, [|m| m.train_acc, |m| m.val_acc], &[0.5, 0.9]),
        ];
        for (area, y_max, getters, guides) in panels {
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .build_cartesian_2d(0.5f64..n + 0.5, 0.0f64..y_max)
                .map_err(|e| err(e.to_string()))?;
            let frame = [
                (0.5, 0.0),
                (n + 0.5, 0.0),
                (n + 0.5, y_max),
                (0.5, y_max),
                (0.5, 0.0),
            ];
            chart
                .draw_series(LineSeries::new(frame, BLACK.stroke_width(1)))
                .map_err(|e| err(e.to_string()))?;
            for &g in guides {
                chart
                    .draw_series(LineSeries::new(
                        [(0.5, g), (n + 0.5, g)],
                        RGBColor(200, 200, 200),
                    ))
                    .map_err(|e| err(e.to_string()))?;
            }
            if best_epoch > 0 {
                let x = best_epoch as f64;
                chart
                    .draw_series(LineSeries::new(
                        [(x, 0.0), (x, y_max)],
                        GREEN.stroke_width(1),
                    ))
                    .map_err(|e| err(e.to_string()))?;
            }
            for (get, color) in getters.iter().zip([RED, BLUE]) {
                let pts: Vec<(f64, f64)> = history
                    .iter()
                    .map(|m| (m.epoch as f64, get(m).min(y_max)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?;
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(W, H, buf).ok_or_else(|| err("buffer size".into()))?;
    img.save(path).map_err(|e| err(e.to_string()))
}
