//! Training on real Fashion-MNIST through the `tailor` binary.

use tailor_e2e::{tailor_fails, tailor_json};

fn acc(v: &serde_json::Value) -> f64 {
    v["test_accuracy"].as_f64().expect("test_accuracy")
}

/// The tutorial recipe lands where PyTorch does: 71.18 / 72.33 / 71.37 % for
/// seeds 0 / 1 / 2 (PyTorch 2.15 on this machine kind); every seed of ours
/// must be within ±3 points of 71.2 %.
#[test]
fn tutorial_recipe_matches_pytorch() {
    let seeds = std::env::var("TAILOR_TUTORIAL_SEEDS").unwrap_or_else(|_| "0,1,2".into());
    let dir = tempfile::tempdir().unwrap();
    for seed in seeds.split(',') {
        let out = dir.path().join(format!("tutorial-{seed}.ckpt"));
        let v = tailor_json(&["train", "--recipe", "tutorial", "--seed", seed, "--out", out.to_str().unwrap()]);
        let a = acc(&v);
        eprintln!("tutorial seed {seed}: {:.2}% in {:.1} s", 100.0 * a, v["train_seconds"].as_f64().unwrap());
        assert_eq!(v["epochs"], 10);
        assert!((0.682..=0.742).contains(&a), "seed {seed}: {:.2}% is not within 71.2 ± 3 points", 100.0 * a);
        // The per-epoch curve rises like PyTorch's (49.5 → 71.2 %).
        let h = v["history"].as_array().unwrap();
        assert!(acc_of(&h[0]) < acc_of(&h[9]));
    }
}

fn acc_of(h: &serde_json::Value) -> f64 {
    h["test_accuracy"].as_f64().unwrap()
}

/// The default recipe reaches ≥ 89.5 % final test accuracy within 20 epochs.
#[test]
fn default_recipe_reaches_89_5_percent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("default.ckpt");
    let v = tailor_json(&["train", "--out", out.to_str().unwrap()]);
    let a = acc(&v);
    eprintln!(
        "default recipe: {:.2}% after {} epochs, {:.1} s",
        100.0 * a,
        v["epochs"],
        v["train_seconds"].as_f64().unwrap()
    );
    assert!(v["epochs"].as_u64().unwrap() <= 20);
    assert!(a >= 0.895, "default recipe ended at {:.2}%, below 89.5%", 100.0 * a);
    // eval of the saved checkpoint agrees with the training loop's last test.
    let e = tailor_json(&["eval", out.to_str().unwrap()]);
    assert_eq!(e["test_accuracy"], v["test_accuracy"]);
    let conf = e["confusion"].as_array().unwrap();
    let total: u64 = conf.iter().flat_map(|r| r.as_array().unwrap()).map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(total, 10_000);
    assert_eq!(e["per_class_accuracy"].as_array().unwrap().len(), 10);

    // The same trained model through the rest of the pipeline: int8 within
    // 0.5 points of f32, at most 690,000 bytes, and the emulated Cortex-M4
    // agreeing with the host on every test image at <= 1.5 instructions/MAC.
    let q8 = dir.path().join("default.q8");
    let q = tailor_json(&["quantize", out.to_str().unwrap(), "--out", q8.to_str().unwrap()]);
    let (f32_acc, int8_acc) = (q["f32_accuracy"].as_f64().unwrap(), q["int8_accuracy"].as_f64().unwrap());
    eprintln!("quantized: f32 {:.2}%, int8 {:.2}%, {} bytes", 100.0 * f32_acc, 100.0 * int8_acc, q["model_bytes"]);
    assert_eq!(f32_acc, a);
    assert!((f32_acc - int8_acc).abs() <= 0.005, "int8 {int8_acc} vs f32 {f32_acc}");
    assert!(q["model_bytes"].as_u64().unwrap() <= 690_000);
    let d = tailor_json(&["device", q8.to_str().unwrap()]);
    eprintln!(
        "device: {}/{} agree, accuracy {:.2}%, {:.3} instructions/MAC, {:.0} images/s",
        d["agree"],
        d["total"],
        100.0 * d["device_accuracy"].as_f64().unwrap(),
        d["instructions_per_mac"].as_f64().unwrap(),
        d["images_per_sec"].as_f64().unwrap()
    );
    assert_eq!(d["total"], 10_000);
    assert_eq!(d["agree"], 10_000);
    assert_eq!(d["device_accuracy"], d["host_accuracy"]);
    assert_eq!(d["host_accuracy"].as_f64().unwrap(), int8_acc);
    assert!(d["instructions_per_mac"].as_f64().unwrap() <= 1.5);
}

/// Stopping after epoch 1 and resuming gives exactly the weights of an
/// uninterrupted 2-epoch run (optimizer state, step count and the shuffle
/// order all survive the checkpoint).
#[test]
fn resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = [
        "--optimizer",
        "adam",
        "--shuffle",
        "true",
        "--train-limit",
        "3000",
        "--threads",
        "1",
        "--schedule",
        "constant",
    ];
    let mut a: Vec<&str> = vec!["train", "--epochs", "2"];
    let full = p("full.ckpt");
    a.extend(common);
    a.extend(["--out", &full]);
    let v_full = tailor_json(&a);

    let half = p("half.ckpt");
    let mut b: Vec<&str> = vec!["train", "--epochs", "1"];
    b.extend(common);
    b.extend(["--out", &half]);
    tailor_json(&b);
    let resumed = p("resumed.ckpt");
    let v_res = tailor_json(&[
        "train",
        "--resume",
        &half,
        "--epochs",
        "2",
        "--threads",
        "1",
        "--train-limit",
        "3000",
        "--out",
        &resumed,
    ]);
    assert_eq!(v_res["epochs"], 2);
    assert_eq!(v_res["test_accuracy"], v_full["test_accuracy"]);
    let (f, r) = (std::fs::read(&full).unwrap(), std::fs::read(&resumed).unwrap());
    assert!(f == r, "resumed checkpoint differs from the uninterrupted run");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ckpt");
    std::fs::write(&bad, b"TLRF\x01\x00garbage").unwrap();
    let e = tailor_fails(&["eval", bad.to_str().unwrap()]);
    assert!(e.contains("bad.ckpt") && e.contains("truncated"), "{e}");
    let e = tailor_fails(&["eval", dir.path().join("missing.ckpt").to_str().unwrap()]);
    assert!(e.contains("missing.ckpt"), "{e}");
    // A dataset whose train labels are cut short: the error names the file.
    use tailor::data::{write_idx_images, write_idx_labels, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
    let d = dir.path().join("fm");
    std::fs::create_dir_all(&d).unwrap();
    write_idx_images(&d.join(TRAIN_IMAGES), 10, 28, 28, &[7u8; 7840]).unwrap();
    write_idx_labels(&d.join(TRAIN_LABELS), &[1u8; 9]).unwrap();
    write_idx_images(&d.join(TEST_IMAGES), 10, 28, 28, &[7u8; 7840]).unwrap();
    write_idx_labels(&d.join(TEST_LABELS), &[1u8; 10]).unwrap();
    let e = tailor_fails(&["train", "--data", d.to_str().unwrap(), "--epochs", "1"]);
    assert!(e.contains(TRAIN_LABELS) || e.contains(TRAIN_IMAGES), "{e}");
    let e = tailor_fails(&["train", "--batch-size", "100000", "--epochs", "1"]);
    assert!(e.contains("batch-size"), "{e}");
}
