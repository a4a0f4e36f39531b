use std::path::Path;

use super::confusion::Confusion;
use super::quantize::{bar_label, QuantizeFigure};
use super::train::{legend, TrainCurves};
use super::*;
use crate::commands::EpochReport;
use crate::quantize::{Int8Error, LayerError};

fn history() -> Vec<EpochReport> {
    (1..=4)
        .map(|e| EpochReport {
            epoch: e,
            lr: 1e-3 / e as f32,
            train_loss: 1.0 / e as f32,
            test_accuracy: 0.5 + 0.1 * e as f64,
            test_avg_loss: 1.2 / e as f64,
            train_seconds: 0.5,
        })
        .collect()
}

fn int8_error() -> Int8Error {
    let layer = |i: usize, rms: f64| LayerError {
        layer: i,
        f32_min: -0.3,
        f32_max: 0.25,
        grid_max: 0.3,
        step_min: 0.001,
        step_max: 0.3 / 127.0,
        rms_error: rms,
        max_abs_error: 2.0 * rms,
    };
    Int8Error {
        layers: vec![layer(1, 6.1e-4), layer(2, 3.3e-4), layer(3, 0.0123)],
        logit_samples: 100,
        logit_rms: 3.5,
        logit_rms_error: 0.02,
        logit_max_abs_error: 0.1,
    }
}

/// Parses `svg`, checks the root is `<svg>` of `size`, returns its text
/// nodes in document order.
fn svg_texts(svg: &str, size: (u32, u32)) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let dim = |a: &str| root.attribute(a).and_then(|v| v.parse::<u32>().ok());
    assert_eq!((dim("width"), dim("height")), (Some(size.0), Some(size.1)));
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let r = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a decodable PNG");
    let info = r.info();
    (info.width, info.height)
}

#[test]
fn format_by_extension_and_clean_errors() {
    assert_eq!(Format::of(Path::new("a/b.svg"), "--plot").unwrap(), Format::Svg);
    assert_eq!(Format::of(Path::new("B.PNG"), "--plot").unwrap(), Format::Png);
    for bad in ["curves.jpg", "curves", "svg", "x.svg.txt"] {
        let e = Format::of(Path::new(bad), "--plot").unwrap_err().to_string();
        assert!(e.contains("--plot") && e.contains(bad) && e.contains(".svg or .png"), "{e}");
    }
}

#[test]
fn train_curves_svg_and_png() {
    let h = history();
    let fig = TrainCurves { history: &h, title: "t".into() };
    let texts = svg_texts(&svg(&fig).unwrap(), train::SIZE);
    for l in legend(h.last().unwrap()) {
        assert!(texts.contains(&l), "legend {l:?} not in {texts:?}");
    }
    assert!(texts.iter().any(|t| t == "test accuracy (last 90.00 %)"));
    assert_eq!(png_size(&png(&fig).unwrap()), train::SIZE);
    // No epochs yet: an empty figure, not a panic.
    let empty = TrainCurves { history: &[], title: "t".into() };
    svg_texts(&svg(&empty).unwrap(), train::SIZE);
}

#[test]
fn confusion_cells_are_the_counts() {
    let counts = vec![vec![50, 3, 0], vec![7, 41, 2], vec![0, 1, 99]];
    let names: Vec<String> = ["cat", "dog", "bird/parrot"].iter().map(|s| s.to_string()).collect();
    let fig = Confusion { counts: &counts, class_names: &names, title: "model: 95.0 %".into() };
    let texts = svg_texts(&svg(&fig).unwrap(), fig.size());
    let cells: Vec<u32> = texts.iter().filter_map(|t| t.parse().ok()).collect();
    assert_eq!(cells, counts.concat());
    // Each name twice: the true-class axis and the predicted-class axis.
    for n in &names {
        assert_eq!(texts.iter().filter(|t| *t == n).count(), 2, "{n}");
    }
    assert_eq!(png_size(&png(&fig).unwrap()), fig.size());
    // Many classes keep readable cells.
    let many = vec![vec![1u32; 40]; 40];
    let names: Vec<String> = (0..40).map(|i| format!("class {i}")).collect();
    let big = Confusion { counts: &many, class_names: &names, title: String::new() };
    assert_eq!(confusion::cell_size(40), 22);
    svg_texts(&svg(&big).unwrap(), big.size());
}

#[test]
fn quantize_figure_labels_each_layer() {
    let e = int8_error();
    let fig = QuantizeFigure { error: &e, title: "q".into() };
    let texts = svg_texts(&svg(&fig).unwrap(), quantize::SIZE);
    for l in &e.layers {
        assert!(texts.contains(&bar_label(l.rms_error)), "{} not in {texts:?}", bar_label(l.rms_error));
    }
    assert!(texts.contains(&quantize::logit_line(&e)));
    assert_eq!(png_size(&png(&fig).unwrap()), quantize::SIZE);
}

#[test]
fn save_writes_the_extensions_format() {
    let dir = tempfile::tempdir().unwrap();
    let h = history();
    let fig = TrainCurves { history: &h, title: "t".into() };
    save(&fig, &dir.path().join("c.svg"), "--plot").unwrap();
    save(&fig, &dir.path().join("c.png"), "--plot").unwrap();
    let s = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
    svg_texts(&s, train::SIZE);
    assert_eq!(png_size(&std::fs::read(dir.path().join("c.png")).unwrap()), train::SIZE);
    let bad = dir.path().join("c.gif");
    assert!(save(&fig, &bad, "--plot").unwrap_err().to_string().contains("--plot"));
    assert!(!bad.exists());
}

#[test]
fn short_numbers() {
    assert_eq!(short(0.1), "0.100");
    assert_eq!(short(0.099999994), "0.100");
    assert_eq!(short(4.56789), "4.57");
    assert_eq!(short(1234.5), "1234");
    assert_eq!(short(6.1e-4), "6.10e-4");
    assert_eq!(short(0.0), "0");
}
