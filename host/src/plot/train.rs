//! `tailor train --plot`: loss (train and test) and test accuracy per epoch.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{short, Figure, PlotResult, FONT};
use crate::commands::EpochReport;

pub const SIZE: (u32, u32) = (1000, 420);

/// The training curves of one run (the epochs of `TrainReport::history`).
pub struct TrainCurves<'a> {
    pub history: &'a [EpochReport],
    /// The model and data, for the title.
    pub title: String,
}

/// The legend entries, final values included, so a reader (and the tests)
/// can match them with the JSON.
pub fn legend(h: &EpochReport) -> [String; 3] {
    [
        format!("train loss (last {})", short(h.train_loss as f64)),
        format!("test loss (last {})", short(h.test_avg_loss)),
        format!("test accuracy (last {:.2} %)", 100.0 * h.test_accuracy),
    ]
}

fn range(vals: impl Iterator<Item = f64>, pad_to_zero: bool) -> std::ops::Range<f64> {
    let (lo, hi) =
        vals.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let lo = if pad_to_zero { 0.0f64.min(lo) } else { lo };
    let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1e-6));
    (lo - if pad_to_zero { 0.0 } else { pad })..(hi + pad)
}

impl Figure for TrainCurves<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).plot()?;
        let root = root.titled(&self.title, (FONT, 18)).plot()?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        let h = self.history;
        let n = h.len().max(1) as f64;
        let first = h.first().map_or(1.0, |e| e.epoch as f64);
        let x = (first - 0.5)..(first + n - 0.5);
        let Some(last) = h.last() else {
            return Ok(());
        };
        let labels = legend(last);
        let ticks = h.len().min(20) + 2;
        let epoch_tick = |v: &f64| {
            let r = v.round();
            if (v - r).abs() < 1e-6 && r >= first && r < first + n {
                format!("{r:.0}")
            } else {
                String::new()
            }
        };
        let points = |f: fn(&EpochReport) -> f64| h.iter().map(move |e| (e.epoch as f64, f(e))).collect::<Vec<_>>();

        let mut loss = ChartBuilder::on(&left)
            .caption("loss", (FONT, 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x.clone(), range(h.iter().flat_map(|e| [e.train_loss as f64, e.test_avg_loss]), true))
            .plot()?;
        loss.configure_mesh()
            .x_desc("epoch")
            .y_desc("cross-entropy")
            .x_labels(ticks)
            .x_label_formatter(&epoch_tick)
            .light_line_style(WHITE)
            .label_style((FONT, 12))
            .draw()
            .plot()?;
        for (pts, color, label) in
            [(points(|e| e.train_loss as f64), BLUE, &labels[0]), (points(|e| e.test_avg_loss), RED, &labels[1])]
        {
            loss.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .plot()?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            loss.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).plot()?;
        }
        loss.configure_series_labels()
            .label_font((FONT, 12))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .plot()?;

        let pct = points(|e| 100.0 * e.test_accuracy);
        let mut acc = ChartBuilder::on(&right)
            .caption("test accuracy", (FONT, 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x, range(pct.iter().map(|p| p.1), false))
            .plot()?;
        acc.configure_mesh()
            .x_desc("epoch")
            .y_desc("%")
            .x_labels(ticks)
            .x_label_formatter(&epoch_tick)
            .light_line_style(WHITE)
            .label_style((FONT, 12))
            .draw()
            .plot()?;
        let green = RGBColor(0, 140, 60);
        acc.draw_series(LineSeries::new(pct.clone(), green.stroke_width(2)))
            .plot()?
            .label(labels[2].as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2)));
        acc.draw_series(pct.into_iter().map(|p| Circle::new(p, 3, green.filled()))).plot()?;
        acc.configure_series_labels()
            .label_font((FONT, 12))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .plot()?;
        Ok(())
    }
}
