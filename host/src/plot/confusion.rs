//! `tailor eval --plot`: the confusion matrix as a heatmap, class names on
//! both axes, the count in every cell.
//!
//! Drawn cell by cell in pixels (not on a chart) so the names fit whatever
//! their length. A cell's shade is its share of its row (the true class),
//! so a class's mistakes stand out however many samples it has.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Figure, PlotResult, FONT};

pub struct Confusion<'a> {
    /// `counts[true][predicted]`.
    pub counts: &'a [Vec<u32>],
    pub class_names: &'a [String],
    pub title: String,
}

/// Pixels per cell: large for a few classes, at least 22 for many.
pub fn cell_size(classes: usize) -> u32 {
    (640 / classes.max(1) as u32).clamp(22, 64)
}

/// Room for the class names, from the longest (about 7 px per character at
/// the label size).
fn label_room(names: &[String]) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as u32;
    (longest * 7 + 16).clamp(40, 200)
}

const TITLE: u32 = 44;
const AXIS: u32 = 28;
const PAD: u32 = 16;

impl Confusion<'_> {
    fn geometry(&self) -> (u32, u32, u32) {
        let n = self.counts.len() as u32;
        (cell_size(self.counts.len()), label_room(self.class_names), n)
    }

    fn name(&self, c: usize) -> &str {
        self.class_names.get(c).map_or("?", String::as_str)
    }
}

/// A white-to-blue shade for a share in `[0, 1]`.
fn shade(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0).sqrt();
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

impl Figure for Confusion<'_> {
    fn size(&self) -> (u32, u32) {
        let (cell, names, n) = self.geometry();
        let grid = cell * n;
        let w = AXIS + names + grid + PAD;
        let h = TITLE + grid + names + AXIS;
        (w.max(360), h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (cell, names, n) = self.geometry();
        let (cell, names, n) = (cell as i32, names as i32, n as usize);
        let (x0, y0) = ((AXIS as i32) + names, TITLE as i32);
        root.fill(&WHITE).plot()?;
        let center = Pos::new(HPos::Center, VPos::Center);
        let w = self.size().0 as i32;
        root.draw(&Text::new(
            self.title.clone(),
            (w / 2, 14),
            (FONT, 18).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .plot()?;
        let grid = cell * n as i32;
        let font = ((cell as f64 * 0.32).clamp(9.0, 15.0), 12.0);
        for (t, row) in self.counts.iter().enumerate() {
            let total: u32 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / total.max(1) as f64;
                let (x, y) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], shade(share).filled())).plot()?;
                let ink = if share > 0.45 { WHITE } else { BLACK };
                let style = (FONT, font.0).into_font().color(&ink).pos(center);
                root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), style)).plot()?;
            }
        }
        root.draw(&Rectangle::new([(x0, y0), (x0 + grid, y0 + grid)], BLACK.stroke_width(1))).plot()?;
        let label = (FONT, font.1).into_font();
        for c in 0..n {
            let mid = c as i32 * cell + cell / 2;
            // True classes on the left, right-aligned against the grid.
            root.draw(&Text::new(
                self.name(c).to_string(),
                (x0 - 6, y0 + mid),
                label.clone().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .plot()?;
            // Predicted classes below, read bottom to top.
            root.draw(&Text::new(
                self.name(c).to_string(),
                (x0 + mid, y0 + grid + 6),
                label
                    .clone()
                    .transform(FontTransform::Rotate270)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .plot()?;
        }
        let axis = (FONT, 14).into_font();
        root.draw(&Text::new(
            "predicted class",
            (x0 + grid / 2, y0 + grid + names + AXIS as i32 / 2),
            axis.clone().color(&BLACK).pos(center),
        ))
        .plot()?;
        root.draw(&Text::new(
            "true class",
            (AXIS as i32 / 2, y0 + grid / 2),
            axis.transform(FontTransform::Rotate270).color(&BLACK).pos(center),
        ))
        .plot()?;
        Ok(())
    }
}
