//! PyTorch state dicts (safetensors) and ONNX through the `tailor` binary,
//! and the round trip through Python's own libraries (`tests/interop/check.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use tailor::checkpoint::{self, zero_model, Meta};
use tailor_core::optim::{Optimizer, Sgd};
use tailor_core::spec::Spec;
use tailor_e2e::{tailor, tailor_bin, tailor_fails, tailor_json, workspace_root};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `tailor args…`, requires success, returns stdout.
fn tailor_ok(args: &[&str]) -> String {
    let out = tailor(args);
    assert!(out.status.success(), "tailor {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state dict of `model` as `safetensors.torch.save_file` writes it:
/// `format: pt`, none of tailor's metadata.
fn torch_file(model: &checkpoint::Model) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .tensors()
        .map(|t| (t.name.to_string(), t.shape().to_vec(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<_> =
        bytes.iter().map(|(n, sh, b)| (n.as_str(), TensorView::new(Dtype::F32, sh.clone(), b).unwrap())).collect();
    let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn same_eval(a: &serde_json::Value, b: &serde_json::Value) {
    for k in ["test_accuracy", "test_avg_loss", "correct", "confusion", "per_class_accuracy"] {
        assert_eq!(a[k], b[k], "{k}");
    }
}

/// A state dict exported from a 3-layer checkpoint evaluates exactly as the
/// checkpoint does; `train --init` starts from its weights; an ONNX file is
/// written beside it.
#[test]
fn safetensors_export_evaluates_like_the_checkpoint_and_seeds_training() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (ck, st) = (p("m.ckpt"), p("m.safetensors"));
    let trained = tailor_json(&["train", "--hidden", "32,16", "--epochs", "1", "--out", s(&ck)]);
    assert!(tailor_ok(&["export", s(&ck), "--format", "safetensors", "--out", s(&st)]).contains("wrote"));
    let from_ck = tailor_json(&["eval", s(&ck)]);
    let from_st = tailor_json(&["eval", s(&st)]);
    same_eval(&from_ck, &from_st);
    assert_eq!(from_st["test_accuracy"], trained["test_accuracy"]);
    eprintln!("784-32-16-10: checkpoint and safetensors both {}", from_st["test_accuracy"]);

    // A tiny learning rate barely moves the weights: the first epoch's test
    // accuracy is the imported model's (a fresh model would start near 10 %).
    let init = tailor_json(&["train", "--init", s(&st), "--epochs", "1", "--lr", "1e-9", "--out", s(&p("init.ckpt"))]);
    let a0 = from_st["test_accuracy"].as_f64().unwrap();
    let a1 = init["test_accuracy"].as_f64().unwrap();
    eprintln!("train --init at lr 1e-9: {a1} (imported {a0})");
    assert!((a1 - a0).abs() <= 0.002, "{a1} vs {a0}");
    assert_eq!(init["dims"], serde_json::json!([784, 32, 16, 10]));
    let err = tailor_fails(&["train", "--init", s(&st), "--hidden", "64", "--out", s(&p("x.ckpt"))]);
    assert!(err.contains("--hidden") && err.contains("784-32-16-10"), "{err}");

    // Exports read a safetensors file that carries tailor's metadata, too.
    let onnx = p("m.onnx");
    tailor_ok(&["export", s(&st), "--format", "onnx", "--out", s(&onnx)]);
    assert!(std::fs::metadata(&onnx).unwrap().len() > 4 * 784 * 32);
}

/// A state dict as PyTorch writes it (no metadata) gets `ToTensor` alone as
/// its input normalization and the data's class names: it evaluates exactly
/// as a checkpoint of the same weights with that normalization.
#[test]
fn torch_state_dict_without_metadata_gets_the_tutorials_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::mlp(&[784, 24, 12, 10]);
    let mut m = zero_model(spec);
    m.init(7);
    let st = dir.path().join("torch.safetensors");
    std::fs::write(&st, torch_file(&m)).unwrap();
    let ck = dir.path().join("same.ckpt");
    let meta = Meta::fashion(Optimizer::Sgd(Sgd::default()));
    checkpoint::save(&ck, &checkpoint::Saved { model: &m, meta: &meta, optim: &[], batch: 0 }, &[]).unwrap();
    let a = tailor_json(&["eval", s(&st)]);
    same_eval(&a, &tailor_json(&["eval", s(&ck)]));
    assert_eq!(a["per_class_accuracy"][9][0], "Ankle boot");
    // Detected by its bytes as well as by its extension.
    let renamed = dir.path().join("torch.bin");
    std::fs::copy(&st, &renamed).unwrap();
    same_eval(&a, &tailor_json(&["eval", s(&renamed)]));
    let d = tailor_json(&["device", s(&renamed), "--limit", "50"]);
    assert_eq!(d["agree"], 50, "{d}");
    // Quantize reads it too.
    let q8 = dir.path().join("torch.q8");
    let q = tailor_json(&["quantize", s(&st), "--out", s(&q8)]);
    assert_eq!(q["f32_accuracy"], a["test_accuracy"]);
    // And device, quantizing it in memory the same way: the device runs
    // exactly the .q8 that quantize wrote.
    let d = tailor_json(&["device", s(&st), "--limit", "300"]);
    let d8 = tailor_json(&["device", s(&q8), "--limit", "300"]);
    assert_eq!((d["agree"].as_u64(), d["total"].as_u64()), (Some(300), Some(300)), "{d}");
    assert_eq!(d["model_crc"], d8["model_crc"]);
    assert_eq!(d["device_accuracy"], d8["device_accuracy"]);
    // Nothing says how to scale its inputs without data.
    let err = tailor_fails(&["export", s(&st), "--format", "onnx", "--out", s(&dir.path().join("x.onnx"))]);
    assert!(err.contains("torch.safetensors") && err.contains("tailor.norm"), "{err}");
}

/// Broken files and wrong pairings are clear errors that name the file.
#[test]
fn bad_model_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = zero_model(Spec::mlp(&[784, 8, 10]));
    m.init(1);
    let good = torch_file(&m);
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &good[..good.len() - 4]).unwrap();
    let err = tailor_fails(&["eval", s(&cut)]);
    assert!(err.contains("cut.safetensors") && err.contains("lies about offsets"), "{err}");
    let err = tailor_fails(&["quantize", s(&cut), "--out", s(&dir.path().join("x.q8"))]);
    assert!(err.contains("cut.safetensors"), "{err}");
    let err = tailor_fails(&["train", "--init", s(&cut), "--out", s(&dir.path().join("x.ckpt"))]);
    assert!(err.contains("cut.safetensors"), "{err}");

    let mut narrow = zero_model(Spec::mlp(&[5, 3]));
    narrow.init(0);
    let five = dir.path().join("five.safetensors");
    std::fs::write(&five, torch_file(&narrow)).unwrap();
    let err = tailor_fails(&["eval", s(&five)]);
    assert!(err.contains("takes 5 inputs") && err.contains("784"), "{err}");

    let ck = dir.path().join("m.ckpt");
    let meta = Meta::fashion(Optimizer::Sgd(Sgd::default()));
    checkpoint::save(&ck, &checkpoint::Saved { model: &m, meta: &meta, optim: &[], batch: 0 }, &[]).unwrap();
    let err = tailor_fails(&["export", s(&ck), "--format", "c", "--out", s(&dir.path().join("m.h"))]);
    assert!(err.contains("quantize"), "{err}");
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TAILOR_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = workspace_root().join("target/pyenv/bin/python");
    venv.exists().then_some(venv)
}

/// `tests/interop/check.py` with the venv that `scripts/test.sh` makes
/// (safetensors, numpy, onnx, onnxruntime from PyPI). Without one this
/// fails, unless `TAILOR_SKIP_PY=1` says to skip (never in CI).
#[test]
fn python_libraries_round_trip() {
    let Some(py) = python() else {
        let skip = std::env::var("TAILOR_SKIP_PY").is_ok_and(|v| v == "1") && std::env::var_os("CI").is_none();
        assert!(
            skip,
            "no Python venv: run scripts/test.sh (it makes target/pyenv) or set TAILOR_PYTHON; \
             TAILOR_SKIP_PY=1 skips this test outside CI"
        );
        eprintln!("skipped: TAILOR_SKIP_PY=1 and no venv (target/pyenv)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&py)
        .arg(workspace_root().join("tests/interop/check.py"))
        .arg(dir.path())
        .env("TAILOR_BIN", tailor_bin())
        .current_dir(workspace_root())
        .output()
        .expect("starting python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "check.py failed ({})", out.status);
    assert!(text.contains("interop: 3 passed, 0 failed"), "{text}");
}
