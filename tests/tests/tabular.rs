//! Users' own tabular data: a CSV of sensor-like features, trained,
//! evaluated and checked for the errors a user will meet.

use std::fmt::Write;
use std::path::Path;

use tailor_e2e::{tailor_fails, tailor_json};

/// Three classes of 6 features: each class a Gaussian blob around its own
/// centre, features on very different scales (as raw sensor readings are),
/// so standardization matters. Deterministic (xorshift + Box-Muller).
fn write_blobs(path: &Path, n: usize, seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let scale = [1.0, 100.0, 0.01, 5.0, 1000.0, 0.5];
    let mut out = String::from("temp,pressure,humidity,accel_x,light,vibration,activity\n");
    for i in 0..n {
        let class = i % 3;
        let mut row = Vec::new();
        for (f, sc) in scale.iter().enumerate() {
            let z = (-2.0 * uniform().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
            let centre = [
                [0.0, 2.0, -1.0],
                [1.0, -1.0, 2.0],
                [-2.0, 0.5, 0.0],
                [0.0, 0.0, 2.0],
                [1.5, -1.5, 0.0],
                [-1.0, 1.0, 1.0],
            ][f][class];
            row.push(format!("{:.6}", (centre + 0.7 * z) * sc));
        }
        writeln!(out, "{},{class}", row.join(",")).unwrap();
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn csv_trains_evaluates_and_names_its_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    write_blobs(&train, 3000, 1);
    write_blobs(&test, 600, 2);
    let ck = dir.path().join("blobs.ckpt");
    let (tr, te, out) = (train.to_str().unwrap(), test.to_str().unwrap(), ck.to_str().unwrap());
    let v = tailor_json(&[
        "train",
        "--train",
        tr,
        "--test",
        te,
        "--hidden",
        "16",
        "--epochs",
        "5",
        "--classes",
        "idle,walk,run",
        "--out",
        out,
    ]);
    eprintln!("CSV 6-16-3: {:.2}% after {} epochs", 100.0 * v["test_accuracy"].as_f64().unwrap(), v["epochs"]);
    assert_eq!(v["dims"], serde_json::json!([6, 16, 3]));
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.95, "{v}");
    let e = tailor_json(&["eval", out, "--train", tr, "--test", te]);
    assert_eq!(e["test_accuracy"], v["test_accuracy"]);
    let names: Vec<&str> = e["per_class_accuracy"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap()).collect();
    assert_eq!(names, ["idle", "walk", "run"]);
    // Quantized: features go to the device as bytes on a per-feature grid;
    // the emulated Cortex-M4 agrees with the host on every test sample.
    let q8 = dir.path().join("blobs.q8");
    let q8 = q8.to_str().unwrap();
    let q = tailor_json(&["quantize", out, "--train", tr, "--test", te, "--out", q8]);
    eprintln!(
        "CSV int8: {:.2}% (f32 {:.2}%)",
        100.0 * q["int8_accuracy"].as_f64().unwrap(),
        100.0 * q["f32_accuracy"].as_f64().unwrap()
    );
    assert!(q["int8_accuracy"].as_f64().unwrap() > 0.95, "{q}");
    let d = tailor_json(&["device", q8, "--train", tr, "--test", te]);
    assert_eq!((d["agree"].as_u64(), d["total"].as_u64()), (Some(600), Some(600)), "{d}");
    assert_eq!(d["device_accuracy"], q["int8_accuracy"]);
    // Multinomial logistic regression (no hidden layer) on the same data.
    let v = tailor_json(&["train", "--train", tr, "--test", te, "--hidden", "", "--epochs", "5", "--out", out]);
    assert_eq!(v["dims"], serde_json::json!([6, 3]));
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.9, "{v}");
}

#[test]
fn bad_tabular_input_fails_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    write_blobs(&good, 30, 3);
    let g = good.to_str().unwrap();
    let cases: [(&str, &str); 4] = [
        ("ragged.csv", "a,b,label\n1,2,0\n1,0\n"),
        ("text.csv", "a,b,label\n1,x,0\n"),
        ("nan.csv", "a,b,label\n1,NaN,0\n"),
        ("neg.csv", "a,b,label\n1,2,-1\n"),
    ];
    for (name, body) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        let e = tailor_fails(&["train", "--train", p.to_str().unwrap(), "--test", g, "--epochs", "1"]);
        assert!(e.contains(name), "{name}: {e}");
    }
    // An explicit directory that lacks its files never falls back to the
    // system Fashion-MNIST.
    let e = tailor_fails(&["train", "--data", dir.path().join("nowhere").to_str().unwrap(), "--epochs", "1"]);
    assert!(e.contains("nowhere"), "{e}");
    // Resuming with a contradicting --hidden is refused.
    let ck = dir.path().join("m.ckpt");
    tailor_json(&["train", "--train", g, "--test", g, "--hidden", "4", "--epochs", "1", "--out", ck.to_str().unwrap()]);
    let e = tailor_fails(&[
        "train",
        "--resume",
        ck.to_str().unwrap(),
        "--train",
        g,
        "--test",
        g,
        "--hidden",
        "8",
        "--epochs",
        "2",
    ]);
    assert!(e.contains("--hidden"), "{e}");
}
