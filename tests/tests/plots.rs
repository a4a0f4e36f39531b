//! `--plot` and `--metrics` through the binary: each file is a valid SVG or
//! PNG of the expected size, and what it shows is what the JSON says.

use std::path::Path;

use serde_json::Value;
use tailor_e2e::{tailor_fails, tailor_json};

/// Three classes of 4 features around their own centres (deterministic).
fn write_data(path: &Path, n: usize, seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("a,b,c,d,label\n");
    for i in 0..n {
        let class = i % 3;
        let row: Vec<String> =
            (0..4).map(|f| format!("{:.5}", (f + class) as f64 % 3.0 + 2.0 * (uniform() - 0.5))).collect();
        out += &format!("{},{class}\n", row.join(","));
    }
    std::fs::write(path, out).unwrap();
}

/// Root `<svg>` of `size`; its text nodes in document order.
fn svg_texts(path: &Path, size: (u32, u32)) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let dim = |a: &str| root.attribute(a).and_then(|v| v.parse::<u32>().ok());
    assert_eq!((dim("width"), dim("height")), (Some(size.0), Some(size.1)), "{}", path.display());
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(|t| t.trim().into()).collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let f = std::fs::File::open(path).unwrap();
    let r = png::Decoder::new(std::io::BufReader::new(f)).read_info().expect("a decodable PNG");
    (r.info().width, r.info().height)
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn plots_and_metrics_show_what_the_json_says() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (train, test) = (p("train.csv"), p("test.csv"));
    write_data(Path::new(&train), 900, 1);
    write_data(Path::new(&test), 300, 2);
    let d = ["--train", &train, "--test", &test, "--classes", "idle,walk,run"];
    let (ck, curves, metrics) = (p("m.ckpt"), p("curves.svg"), p("metrics.csv"));

    let mut args = vec!["train", "--hidden", "8", "--epochs", "4", "--out", &ck, "--plot", &curves];
    args.extend(["--metrics", &metrics]);
    args.extend(d);
    let t = tailor_json(&args);
    let history = t["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    // The CSV's rows are the JSON history, value for value.
    let mut rd = csv::Reader::from_path(&metrics).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["epoch", "lr", "train_loss", "test_loss", "test_accuracy", "seconds"]);
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), history.len());
    for (row, h) in rows.iter().zip(history) {
        let keys = ["epoch", "lr", "train_loss", "test_avg_loss", "test_accuracy", "train_seconds"];
        for (cell, key) in row.iter().zip(keys) {
            assert_eq!(cell.parse::<f64>().unwrap(), f64_of(&h[key]), "{key}: {row:?} vs {h}");
        }
    }
    let texts = svg_texts(Path::new(&curves), tailor::plot::train::SIZE);
    let last = &history[3];
    let acc = format!("test accuracy (last {:.2} %)", 100.0 * f64_of(&last["test_accuracy"]));
    assert!(texts.contains(&acc), "{acc:?} not in {texts:?}");
    let loss = format!("test loss (last {})", tailor::plot::short(f64_of(&last["test_avg_loss"])));
    assert!(texts.contains(&loss), "{loss:?} not in {texts:?}");

    // The heatmap's cells are the JSON confusion counts, row by row.
    let conf = p("confusion.svg");
    let mut args = vec!["eval", &ck, "--plot", &conf];
    args.extend(d);
    let e = tailor_json(&args);
    let counts: Vec<u64> = e["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 9);
    assert_eq!(counts.iter().sum::<u64>(), 300);
    let names: Vec<String> = ["idle", "walk", "run"].map(String::from).to_vec();
    let confusion =
        tailor::plot::confusion::Confusion { counts: &vec![vec![0; 3]; 3], class_names: &names, title: "".into() };
    let size = tailor::plot::Figure::size(&confusion);
    let texts = svg_texts(Path::new(&conf), size);
    let cells: Vec<u64> = texts.iter().filter_map(|t| t.parse().ok()).collect();
    assert_eq!(cells, counts);
    for name in ["idle", "walk", "run"] {
        assert_eq!(texts.iter().filter(|t| *t == name).count(), 2, "{name} on both axes: {texts:?}");
    }
    let conf_png = p("confusion.png");
    let mut args = vec!["eval", &ck, "--plot", &conf_png];
    args.extend(d);
    tailor_json(&args);
    assert_eq!(png_size(Path::new(&conf_png)), size);

    // Quantize: one error bar per layer, labelled with the JSON's RMS.
    let (q8, qsvg, qpng) = (p("m.q8"), p("q.svg"), p("q.png"));
    let mut args = vec!["quantize", &ck, "--out", &q8, "--plot", &qsvg];
    args.extend(d);
    let q = tailor_json(&args);
    let layers = q["int8_error"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let texts = svg_texts(Path::new(&qsvg), tailor::plot::quantize::SIZE);
    for l in layers {
        let label = tailor::plot::quantize::bar_label(f64_of(&l["rms_error"]));
        assert!(texts.contains(&label), "{label:?} not in {texts:?}");
        assert!(f64_of(&l["max_abs_error"]) <= 0.5001 * f64_of(&l["step_max"]), "{l}");
    }
    assert_eq!(q["int8_error"]["logit_samples"].as_u64(), Some(300));
    let mut args = vec!["quantize", &ck, "--out", &q8, "--plot", &qpng];
    args.extend(d);
    tailor_json(&args);
    assert_eq!(png_size(Path::new(&qpng)), tailor::plot::quantize::SIZE);
}

#[test]
fn a_plot_file_that_is_not_svg_or_png_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let data = p("d.csv");
    write_data(Path::new(&data), 60, 3);
    let d = ["--train", data.as_str(), "--test", data.as_str()];
    let ck = p("m.ckpt");
    // Refused before any training: no checkpoint is written.
    let mut args = vec!["train", "--hidden", "4", "--epochs", "1", "--out", &ck, "--plot", "curves.jpg"];
    args.extend(d);
    let e = tailor_fails(&args);
    assert!(e.contains("--plot curves.jpg") && e.contains(".svg or .png"), "{e}");
    assert!(!Path::new(&ck).exists());
    let mut args = vec!["train", "--hidden", "4", "--epochs", "1", "--out", &ck];
    args.extend(d);
    tailor_json(&args);
    let mut args = vec!["eval", &ck, "--plot", "confusion"];
    args.extend(d);
    assert!(tailor_fails(&args).contains("--plot confusion"));
    let q8 = p("m.q8");
    let mut args = vec!["quantize", &ck, "--out", &q8, "--plot", "q.pdf"];
    args.extend(d);
    assert!(tailor_fails(&args).contains("--plot q.pdf"));
    // A plot that cannot be written still leaves the checkpoint.
    let blocked = p("file");
    std::fs::write(&blocked, "").unwrap();
    let inside = format!("{blocked}/curves.svg");
    let ck2 = p("m2.ckpt");
    let mut args = vec!["train", "--hidden", "4", "--epochs", "1", "--out", &ck2, "--plot", &inside];
    args.extend(d);
    let e = tailor_fails(&args);
    assert!(e.contains("--plot") && e.contains("curves.svg"), "{e}");
    assert!(Path::new(&ck2).exists(), "the checkpoint is written before the plot");
}
