//! Results as pictures: each figure kind in its own module, drawn once with
//! plotters onto any backend and saved as SVG or PNG by the extension.
//!
//! Text is laid out (and, for PNG, rasterized) with DejaVu Sans compiled
//! into the binary, so no system font or library is needed.

pub mod confusion;
pub mod quantize;
pub mod train;

use std::fmt::Display;
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::checkpoint::atomic_write;

/// The font family every figure asks for; [`register_font`] maps it to
/// the embedded DejaVu Sans.
pub const FONT: &str = "sans-serif";

/// The file kind of a plot, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// `.svg` or `.png` (any case); anything else is an error naming `flag`,
    /// so a typo fails before any work is done.
    pub fn of(path: &Path, flag: &str) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => bail!("{flag} {}: expected a file name ending in .svg or .png", path.display()),
        }
    }
}

/// A figure that draws itself on any plotters backend.
pub trait Figure {
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// plotters' errors are generic over the backend; this turns any of them
/// into an `anyhow` error.
pub(crate) trait PlotResult<T> {
    fn plot(self) -> Result<T>;
}

impl<T, E: Display> PlotResult<T> for std::result::Result<T, E> {
    fn plot(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing: {e}"))
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a well-formed TTF shipped by the `dejavu` crate;
        // a failure would leave plotters without a font, reported when
        // text is drawn.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// The figure as SVG text.
pub fn svg(fig: &impl Figure) -> Result<String> {
    register_font();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, fig.size()).into_drawing_area();
        fig.draw(&root)?;
        root.present().plot()?;
    }
    Ok(s)
}

/// The figure as PNG bytes (8-bit RGB).
pub fn png(fig: &impl Figure) -> Result<Vec<u8>> {
    register_font();
    let (w, h) = fig.size();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        fig.draw(&root)?;
        root.present().plot()?;
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().context("encoding PNG")?;
    writer.write_image_data(&rgb).context("encoding PNG")?;
    writer.finish().context("encoding PNG")?;
    Ok(out)
}

/// Renders `fig` in the format `path`'s extension names and writes it
/// atomically; `flag` names the option in errors.
pub fn save(fig: &impl Figure, path: &Path, flag: &str) -> Result<()> {
    let bytes = match Format::of(path, flag)? {
        Format::Svg => svg(fig)?.into_bytes(),
        Format::Png => png(fig)?,
    };
    atomic_write(path, &bytes).with_context(|| format!("{flag} {}", path.display()))
}

/// A short number for a label: 3 significant digits, scientific outside
/// `[1e-3, 1e4)`.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else {
        // The nudge keeps 0.1 as an f32 (0.099999994) at 3 digits, not 4.
        let decimals = (2 - (a * (1.0 + 1e-6)).log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests;
