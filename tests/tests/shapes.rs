//! The model's shape is data: train → quantize → device for models of 0 to
//! 3 hidden layers on Fashion-MNIST, every one served by the same firmware
//! image, agreeing with the host on all 10,000 test images.

use tailor_e2e::tailor_json;

#[test]
fn any_depth_trains_quantizes_and_runs_on_one_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let mut firmware = None;
    for (hidden, min_acc) in [("", 0.80), ("128", 0.83), ("256,128", 0.83), ("512,256,128", 0.83)] {
        let tag = if hidden.is_empty() { "none".to_string() } else { hidden.replace(',', "-") };
        let ck = dir.path().join(format!("{tag}.ckpt"));
        let q8 = dir.path().join(format!("{tag}.q8"));
        let (ck, q8) = (ck.to_str().unwrap(), q8.to_str().unwrap());
        let t = tailor_json(&["train", "--hidden", hidden, "--epochs", "2", "--out", ck]);
        let q = tailor_json(&["quantize", ck, "--out", q8]);
        let d = tailor_json(&["device", q8]);
        eprintln!(
            "--hidden {hidden:?}: dims {}, f32 {:.2}%, int8 {:.2}%, {} bytes; device {}/{} agree, {:.3} instructions/MAC, firmware built in {:.1} s",
            t["dims"],
            100.0 * t["test_accuracy"].as_f64().unwrap(),
            100.0 * q["int8_accuracy"].as_f64().unwrap(),
            q["model_bytes"],
            d["agree"],
            d["total"],
            d["instructions_per_mac"].as_f64().unwrap_or(f64::NAN),
            d["firmware_build_secs"].as_f64().unwrap_or(f64::NAN),
        );
        let depth = if hidden.is_empty() { 0 } else { hidden.split(',').count() };
        assert_eq!(t["dims"].as_array().unwrap().len(), depth + 2);
        assert!(t["test_accuracy"].as_f64().unwrap() >= min_acc, "{hidden:?}: {t}");
        assert_eq!(d["total"], 10_000);
        assert_eq!(d["agree"], 10_000, "{hidden:?}: device and host disagree");
        assert_eq!(d["device_accuracy"], d["host_accuracy"]);
        assert_eq!(d["host_accuracy"], q["int8_accuracy"]);
        // One firmware image for every model.
        let fw = d["firmware"].as_str().expect("firmware path in the JSON").to_string();
        assert_eq!(firmware.get_or_insert_with(|| fw.clone()), &fw);
    }
}
