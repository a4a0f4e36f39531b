//! The C API end to end: `capi/example/main.c`, compiled by
//! `arm-none-eabi-gcc` against the cbindgen header and
//! `libtailor_capi.a` (built here for thumbv7em-none-eabihf), with the model
//! that `tailor export --format c` writes, classifies all 10,000
//! Fashion-MNIST test images on the emulated Cortex-M4F (QEMU mps2-an386,
//! images and results through semihosting files); every class and every
//! int32 logit must equal the host's int8 path. Then it trains a new f32
//! head on the int8 model's features through the C API (the library's
//! `Kernels::TARGET`: the Cortex-M4 kernels), and the host's replay of that
//! run (the core's `TrainSession` with their twin, `Kernels::M4_TWIN`) must
//! give the same losses and weights, bit for bit, and the same test
//! accuracy.
//!
//! Needs `arm-none-eabi-gcc` (Debian's `gcc-arm-none-eabi`, with newlib),
//! `qemu-system-arm` and the Fashion-MNIST test set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tailor_core::gemm::Kernels;
use tailor_core::optim::{Optimizer, Sgd};
use tailor_core::quant::{QKernels, QModel};
use tailor_core::session::{InputMap, SessionBuffers, SessionSetup, TrainSession};
use tailor_core::spec::Spec;
use tailor_e2e::{tailor, workspace_root};

const CC: &str = "arm-none-eabi-gcc";

/// `libtailor_capi.a` for the Cortex-M4F, built now (a no-op when nothing
/// changed).
fn static_lib() -> PathBuf {
    let root = workspace_root();
    let t = Instant::now();
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "tailor-capi", "--target", "thumbv7em-none-eabihf"])
        .current_dir(&root)
        .status()
        .expect("running cargo build");
    assert!(st.success(), "cargo build -p tailor-capi --target thumbv7em-none-eabihf failed");
    eprintln!("libtailor_capi.a built in {:.1} s", t.elapsed().as_secs_f64());
    root.join("target/thumbv7em-none-eabihf/release/libtailor_capi.a")
}

/// The example firmware with `model_h` (the export of the model), as the
/// README tells a C project to build it.
fn build_firmware(dir: &Path, lib: &Path) -> PathBuf {
    let root = workspace_root();
    let ex = root.join("capi/example");
    let elf = dir.join("c-firmware.elf");
    let out = Command::new(CC)
        .args(["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"])
        .args(["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections"])
        .arg("-I")
        .arg(root.join("capi/include"))
        .arg("-I")
        .arg(dir)
        .arg(ex.join("main.c"))
        .arg(ex.join("startup.c"))
        .args(["-nostartfiles", "--specs=nano.specs", "-T"])
        .arg(ex.join("mps2-an386.ld"))
        .args(["-Wl,--gc-sections", "-Wl,-z,noexecstack"])
        .arg(lib)
        .args(["-lc", "-lgcc", "-o"])
        .arg(&elf)
        .output()
        .unwrap_or_else(|e| panic!("{CC} not found ({e}): apt-get install gcc-arm-none-eabi (scripts/setup.sh does)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{CC} failed:\n{stderr}");
    assert!(!stderr.contains("warning"), "{CC} warned:\n{stderr}");
    elf
}

/// Runs `elf` under QEMU in `dir` (its semihosting files are there);
/// returns its exit status and console output.
fn run_qemu(dir: &Path, elf: &Path) -> (Option<i32>, String) {
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none", "-serial", "null"])
        .args(["-icount", "shift=0", "-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-arm not found: apt-get install qemu-system-arm");
    let deadline = Instant::now() + Duration::from_secs(240);
    while child.try_wait().expect("waiting for QEMU").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("QEMU did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("QEMU output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn the_c_example_classifies_like_the_host_and_trains_a_head_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace_root().join("firmware-sim/models/default.q8");
    let model_h = dir.path().join("model.h");
    let out = tailor(&["export", model.to_str().unwrap(), "--format", "c", "--out", model_h.to_str().unwrap()]);
    assert!(out.status.success(), "tailor export --format c: {}", String::from_utf8_lossy(&out.stderr));
    let lib = static_lib();
    let t = Instant::now();
    let elf = build_firmware(dir.path(), &lib);
    eprintln!("C firmware built in {:.1} s", t.elapsed().as_secs_f64());

    let q8 = tailor::q8::load(&model).unwrap();
    let q = QModel::parse(q8.bytes()).unwrap();
    let data = tailor::data::load_default().expect("Fashion-MNIST");
    let test = &data.test;
    let inputs = tailor::quantize::device_inputs(&q, test).unwrap();
    let n = test.len();
    assert_eq!(n, 10_000);
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    write("images.u8", &inputs);
    write("labels.u8", &test.labels);
    let train_x = &tailor::quantize::device_inputs(&q, &data.train).unwrap()[..HEAD_IMAGES * 784];
    let train_y = &data.train.labels[..HEAD_IMAGES];
    write("head-train.u8", train_x);
    write("head-train-labels.u8", train_y);

    let t = Instant::now();
    let (status, console) = run_qemu(dir.path(), &elf);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("{console}");
    assert_eq!(status, Some(0), "the C firmware failed:\n{console}");
    assert!(console.contains("C API 1, .q8 version 2 layout 3"), "{console}");
    assert!(console.contains(&format!("classified {n} images")), "{console}");
    assert!(!console.contains("FAIL"), "{console}");

    // Every class and logit against the host's int8 path (the one `tailor
    // device` and `tailor quantize` use).
    let (host_classes, host_logits) = tailor::quantize::int8_predict_logits(&q, &inputs);
    let classes = std::fs::read(dir.path().join("classes.u8")).unwrap();
    let logits: Vec<i32> = std::fs::read(dir.path().join("logits.i32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!((classes.len(), logits.len()), (n, n * 10), "the firmware wrote too few results");
    let agree = classes.iter().zip(&host_classes).filter(|(a, b)| a == b).count();
    let logits_agree = logits.chunks_exact(10).zip(host_logits.chunks_exact(10)).filter(|(a, b)| a == b).count();
    let correct = classes.iter().zip(&test.labels).filter(|(a, b)| a == b).count();
    eprintln!(
        "C API on the Cortex-M4: {agree}/{n} classes and {logits_agree}/{n} logits equal the host's; \
         accuracy {:.2} %; QEMU {secs:.1} s",
        100.0 * correct as f64 / n as f64
    );
    let first: Vec<usize> = (0..n).filter(|&i| classes[i] != host_classes[i]).take(5).collect();
    assert_eq!(agree, n, "first disagreements: {first:?}");
    assert_eq!(logits_agree, n);
    // Not a constant: the model is the trained one.
    assert!(correct > n * 8 / 10, "accuracy {correct}/{n}");

    // The head the device trained, replayed on the host.
    let read_f32 = |name: &str| -> Vec<u32> {
        let b = std::fs::read(dir.path().join(name)).unwrap();
        b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let (dev_losses, dev_params) = (read_f32("head-losses.f32"), read_f32("head.f32"));
    let (host_losses, host_params, host_correct) = replay_head(&q, train_x, train_y, &inputs, &test.labels);
    let dev_correct: usize = console
        .lines()
        .find_map(|l| l.split_once("test: ")?.1.split_once(" / ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no head accuracy in the console:\n{console}"));
    let step_instructions: u64 = console
        .lines()
        .find_map(|l| l.strip_prefix("head training: ")?.split_once(' ')?.0.parse().ok())
        .unwrap_or_else(|| panic!("no training instruction count in the console:\n{console}"));
    // A step multiplies each sample's features by the head's weights, then
    // its outputs' gradients by the features (the first layer has no input
    // gradient).
    let step_macs = 2 * HEAD_BATCH * q.layer(q.spec().depth() - 1).inputs * q.spec().outputs();
    eprintln!(
        "head 64x10 trained by the C API on the Cortex-M4 ({HEAD_IMAGES} images, {} steps): test {:.2} % \
         (host's replay {:.2} %); losses bit-identical: {}, weights bit-identical: {}; \
         {step_instructions} instructions per step ({:.2} per MAC)",
        dev_losses.len(),
        100.0 * dev_correct as f64 / n as f64,
        100.0 * host_correct as f64 / n as f64,
        dev_losses == host_losses,
        dev_params == host_params,
        step_instructions as f64 / step_macs as f64
    );
    assert_eq!(dev_losses.len(), HEAD_IMAGES / HEAD_BATCH);
    assert_eq!(dev_losses, host_losses, "the device's losses differ from the host's replay");
    assert_eq!(dev_params, host_params, "the device's head differs from the host's replay");
    assert_eq!(dev_correct, host_correct);
    assert!(host_correct > n * 7 / 10, "a trained head: {host_correct}/{n}");
}

/// Training images for the head, and the settings `capi/example/main.c`
/// uses (`HEAD_BATCH`, `HEAD_LR`, `HEAD_SEED`, momentum 0.9; its
/// workspace holds `BATCH` = 25 samples).
const HEAD_IMAGES: usize = 2000;
const HEAD_BATCH: usize = 10;

/// The host's replay of the device's head training: each batch's loss and
/// the final weights (as bits), and how many test images the head gets right.
fn replay_head(q: &QModel<'_>, x: &[u8], y: &[u8], test_x: &[u8], test_y: &[u8]) -> (Vec<u32>, Vec<u32>, usize) {
    let last = q.layer(q.spec().depth() - 1);
    let nf = last.inputs;
    let setup = SessionSetup {
        spec: Spec::mlp(&[nf, q.spec().outputs()]),
        optimizer: Optimizer::Sgd(Sgd { momentum: 0.9, ..Sgd::default() }),
        seed: 1,
        input: InputMap::Affine { scale: last.params.in_scale, zero_point: last.params.in_zp },
    };
    let p = setup.spec.params();
    let (mut params, mut state) = (vec![0f32; p], vec![0f32; p]);
    let mut scratch = vec![0f32; setup.spec.train_scratch(1)];
    let mut ws = vec![0f32; setup.spec.activations(25)];
    let bufs = SessionBuffers { params: &mut params, state: &mut state, scratch: &mut scratch, workspace: &mut ws };
    let mut s = TrainSession::new(&setup, bufs).unwrap();
    let mut qs = vec![0i16; q.scratch_len()];
    let mut features = |imgs: &[u8]| -> Vec<u8> {
        let mut f = vec![0u8; imgs.len() / 784 * nf];
        for (img, out) in imgs.chunks_exact(784).zip(f.chunks_exact_mut(nf)) {
            q.features(&QKernels::BEST, img, &mut qs, out);
        }
        f
    };
    let mut losses = Vec::new();
    for (imgs, labels) in x.chunks(HEAD_BATCH * 784).zip(y.chunks(HEAD_BATCH)) {
        let f = features(imgs);
        losses.push(s.train_batch(&Kernels::M4_TWIN, 0.01, labels, &f).unwrap().to_bits());
    }
    let mut correct = 0;
    for (imgs, labels) in test_x.chunks(25 * 784).zip(test_y.chunks(25)) {
        let f = features(imgs);
        correct += s.evaluate(&Kernels::M4_TWIN, labels, &f).unwrap().correct as usize;
    }
    (losses, s.params().iter().map(|v| v.to_bits()).collect(), correct)
}
