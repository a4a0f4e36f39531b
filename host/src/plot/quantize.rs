//! `tailor quantize --plot`: per layer, the f32 weight range inside the
//! int8 grid's reach, and the error the int8 weights make; the logit error
//! on test samples in the title.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{short, Figure, PlotResult, FONT};
use crate::quantize::Int8Error;

pub const SIZE: (u32, u32) = (1000, 440);

pub struct QuantizeFigure<'a> {
    pub error: &'a Int8Error,
    pub title: String,
}

/// The text written on layer `l`'s error bar (the tests look for it).
pub fn bar_label(rms: f64) -> String {
    short(rms)
}

/// The subtitle: the f32-vs-int8 logit error.
pub fn logit_line(e: &Int8Error) -> String {
    format!(
        "logits of {} test samples: RMS error {} (f32 logits' RMS {}), max {}",
        e.logit_samples,
        short(e.logit_rms_error),
        short(e.logit_rms),
        short(e.logit_max_abs_error)
    )
}

impl Figure for QuantizeFigure<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).plot()?;
        let root = root.titled(&self.title, (FONT, 18)).plot()?;
        root.draw(&Text::new(
            logit_line(self.error),
            (SIZE.0 as i32 / 2, 0),
            (FONT, 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .plot()?;
        let (_, body) = root.split_vertically(22);
        let (left, right) = body.split_horizontally(SIZE.0 / 2);
        let layers = &self.error.layers;
        let n = layers.len().max(1) as f64;
        let x = 0.5..n + 0.5;
        let tick = |v: &f64| {
            let l = v.round();
            if (v - l).abs() > 1e-6 || l < 1.0 || l > n {
                String::new()
            } else if l == 1.0 {
                "1 (input folded)".into()
            } else {
                format!("{l:.0}")
            }
        };

        let reach = layers.iter().map(|l| l.grid_max.max(l.f32_max.abs()).max(l.f32_min.abs())).fold(0.0f32, f32::max);
        let reach = if reach > 0.0 { reach as f64 * 1.1 } else { 1.0 };
        let mut ranges = ChartBuilder::on(&left)
            .caption("weight range: f32 (dark) in the int8 grid (light)", (FONT, 14))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x.clone(), -reach..reach)
            .plot()?;
        ranges
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(layers.len() * 2 + 1)
            .x_label_formatter(&tick)
            .x_desc("layer")
            .y_desc("weight")
            .y_label_formatter(&|v| short(if v.abs() < 1e-9 * reach { 0.0 } else { *v }))
            .light_line_style(WHITE)
            .label_style((FONT, 12))
            .draw()
            .plot()?;
        let grid = RGBColor(198, 219, 239);
        let f32c = RGBColor(33, 113, 181);
        for l in layers {
            let c = l.layer as f64;
            let g = l.grid_max as f64;
            ranges.draw_series([Rectangle::new([(c - 0.3, -g), (c + 0.3, g)], grid.filled())]).plot()?;
            ranges
                .draw_series([Rectangle::new(
                    [(c - 0.12, l.f32_min as f64), (c + 0.12, l.f32_max as f64)],
                    f32c.filled(),
                )])
                .plot()?;
            let step = if l.step_min == l.step_max {
                format!("step {}", short(l.step_max as f64))
            } else {
                format!("step {}–{}", short(l.step_min as f64), short(l.step_max as f64))
            };
            ranges
                .draw_series([Text::new(
                    step,
                    (c, g),
                    (FONT, 11).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )])
                .plot()?;
        }

        let top = layers.iter().map(|l| l.rms_error).fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.2 } else { 1.0 };
        let mut err = ChartBuilder::on(&right)
            .caption("int8 weight error: RMS of dequantized − f32", (FONT, 14))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x, 0.0..top)
            .plot()?;
        err.configure_mesh()
            .disable_x_mesh()
            .x_labels(layers.len() * 2 + 1)
            .x_label_formatter(&tick)
            .x_desc("layer")
            .y_desc("RMS error")
            .y_label_formatter(&|v| short(*v))
            .light_line_style(WHITE)
            .label_style((FONT, 12))
            .draw()
            .plot()?;
        let bar = RGBColor(230, 85, 13);
        for l in layers {
            let c = l.layer as f64;
            err.draw_series([Rectangle::new([(c - 0.3, 0.0), (c + 0.3, l.rms_error)], bar.filled())]).plot()?;
            err.draw_series([Text::new(
                bar_label(l.rms_error),
                (c, l.rms_error),
                (FONT, 12).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )])
            .plot()?;
        }
        Ok(())
    }
}
