//! End to end on the emulated Cortex-M4 (QEMU mps2-an386): the firmware in
//! `firmware-sim/`, built once, with a model flashed into its model region,
//! driven through `tailor::device`.
//!
//! The model is `firmware-sim/models/default.q8` (784-64-64-10, small so the
//! 10,000 images take seconds), or `$TAILOR_DEVICE_MODEL`. Needs
//! `qemu-system-arm` and the Fashion-MNIST test set.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tailor::device::{self, DeviceArgs, Qemu, Reply, Transport};
use tailor_core::protocol::{self, ErrorCode, Message, ModelState};
use tailor_core::quant::{ActRange, FloatLayer};
use tailor_core::spec::Activation;

fn model() -> PathBuf {
    std::env::var_os("TAILOR_DEVICE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| tailor_e2e::workspace_root().join("firmware-sim/models/default.q8"))
}

/// The firmware ELF (one for every model), built once per test process.
fn firmware() -> PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| device::build_firmware().unwrap_or_else(|e| panic!("{e:#}")).0).clone()
}

/// [`model`]'s bytes (converted if it is a version-1 file).
fn model_bytes() -> Vec<u8> {
    tailor::q8::load(&model()).unwrap().bytes().to_vec()
}

fn test_split() -> &'static tailor::data::Split {
    static TEST: OnceLock<tailor::data::Split> = OnceLock::new();
    TEST.get_or_init(|| tailor::data::load_default().expect("Fashion-MNIST test set").test)
}

fn args(transport: Transport, limit: Option<usize>) -> DeviceArgs {
    DeviceArgs { limit, transport, timeout_secs: 240.0, firmware: Some(firmware()), ..DeviceArgs::new(model()) }
}

#[test]
fn all_10000_test_images_agree_with_the_host_over_semihosting() {
    let r = device::run_device(&args(Transport::Semihosting, None)).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{r}");
    assert_eq!(r.total, 10_000);
    assert_eq!(r.agree, r.total, "first disagreements: {:?}", r.first_disagreements);
    assert_eq!(r.logits_agree, r.total, "every int32 logit equals the host's");
    assert_eq!(r.device_accuracy, r.host_accuracy);
    assert!(r.instructions_per_inference > device::macs(&r.dims) as f64 * 0.5, "{}", r.instructions_per_inference);
    assert_eq!(r.device_stats.images, 10_000);
    assert_eq!(r.device_stats.frames_bad, 0);
    // Every prediction comes with a confidence, the one the host computes
    // from the same logits; a model this good is surer when it is right.
    let c = &r.confidence;
    assert_eq!(c.agree, r.total, "device confidences equal the host's");
    assert!(c.mean_correct > c.mean_wrong + 0.1, "{c:?}");
    assert!(c.calibration_error >= 0.0 && c.calibration_error < 0.2, "{c:?}");
    let j = r.to_json();
    assert!(j["confidence"].get("per_image").is_none(), "per-image confidences only on request");
    for k in [
        "device_accuracy",
        "host_accuracy",
        "agree",
        "total",
        "instructions_per_inference",
        "images_per_sec",
        "firmware",
        "firmware_build_secs",
    ] {
        assert!(j.get(k).is_some(), "JSON lacks {k}");
    }
}

/// `--per-image`: every image's confidence, in percent, in the JSON.
#[test]
fn per_image_confidences_on_request() {
    let r = device::run_device(&DeviceArgs { per_image: true, ..args(Transport::Semihosting, Some(50)) })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let per = r.to_json()["confidence"]["per_image"].as_array().expect("per_image").clone();
    assert_eq!(per.len(), 50);
    assert!(per.iter().all(|c| (10..=100).contains(&c.as_u64().unwrap())), "{per:?}");
    assert_eq!(r.confidence.agree, 50);
}

#[test]
fn uart_classifies_64_images_like_the_host() {
    let r = device::run_device(&DeviceArgs { batch: Some(32), ..args(Transport::Uart, Some(64)) })
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{r}");
    assert_eq!((r.agree, r.total), (64, 64), "first disagreements: {:?}", r.first_disagreements);
    assert!(r.instructions_per_inference > 0.0);
}

/// Each malformed frame gets an `Error`, and the device then still
/// classifies correctly (same classes and logits as before).
#[test]
fn malformed_frames_are_answered_and_the_device_keeps_serving() {
    let split = test_split();
    let imgs = &split.features.as_u8().unwrap()[..4 * 784];
    let mut q = Qemu::start(&firmware(), Some(&model_bytes()), Transport::Semihosting, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let reference = q.classify(1, imgs, true).unwrap();
    assert_eq!(reference.classes.len(), 4);

    let good = {
        let mut b = vec![0u8; 64];
        let n = protocol::encode_to_slice(&Message::Ping { nonce: 1 }, &mut b).unwrap();
        b.truncate(n);
        b
    };
    let mut bad_crc = good.clone();
    bad_crc[2] ^= 0x20;
    let mut unknown_tag = Vec::new();
    protocol::send_raw_body(&mut unknown_tag, &[99, 1, 2, 3]).unwrap();
    let mut classify = vec![0u8; 8192];
    let n = protocol::encode_to_slice(
        &Message::Classify { seq: 5, want_logits: false, images: &imgs[..784] },
        &mut classify,
    )
    .unwrap();
    classify.truncate(n);
    // Cut inside the last COBS block (the delimiter re-added).
    let mut truncated = classify[..classify.len() - 40].to_vec();
    truncated.push(0);
    let oversized: Vec<u8> = std::iter::repeat_n(0x5Au8, q.hello.frame_capacity + 100).chain([0]).collect();
    let cases = [
        ("bad crc", bad_crc, ErrorCode::BadCrc),
        ("truncated", truncated, ErrorCode::Cobs),
        ("unknown tag", unknown_tag, ErrorCode::UnknownTag),
        ("oversized", oversized, ErrorCode::Oversized),
    ];
    for (i, (name, bytes, code)) in cases.iter().enumerate() {
        q.send_raw(bytes).unwrap();
        match q.recv().unwrap() {
            // A frame cut at a COBS block boundary decodes, then fails its CRC.
            Reply::Error { code: c, detail, .. } => {
                assert!(c == *code || (*name == "truncated" && c == ErrorCode::BadCrc), "{name}: {c:?} {detail}")
            }
            other => panic!("{name}: expected an Error, got {other:?}"),
        }
        let again = q.classify(10 + i as u32, imgs, true).unwrap_or_else(|e| panic!("after {name}: {e:#}"));
        assert_eq!(again.classes, reference.classes, "after {name}");
        assert_eq!(again.logits, reference.logits, "after {name}");
    }
    let stats = q.finish().unwrap();
    assert_eq!(stats.frames_bad, 4);
}

#[test]
fn golden_int8_values_and_kernels_on_device() {
    let mut q = Qemu::start(&firmware(), Some(&model_bytes()), Transport::Semihosting, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (passed, failed, detail) = q.self_test().unwrap();
    assert_eq!(failed, 0, "{detail}");
    assert!(passed >= 3, "{detail}");
    q.finish().unwrap();
}

/// A random (untrained) 784-32-10 model: another depth and width than
/// the default one, quantized with the core's API.
fn second_model(dir: &std::path::Path) -> PathBuf {
    let mut rng = tailor_core::rng::Rng::new(12);
    let mut v = |n: usize, a: f32| (0..n).map(|_| rng.uniform(-a, a)).collect::<Vec<f32>>();
    let (w1, b1, w2, b2) = (v(32 * 784, 0.05), v(32, 0.05), v(10 * 32, 0.2), v(10, 0.2));
    let layers = [
        FloatLayer { inputs: 784, outputs: 32, activation: Activation::Relu, weight: &w1, bias: &b1 },
        FloatLayer { inputs: 32, outputs: 10, activation: Activation::None, weight: &w2, bias: &b2 },
    ];
    let q8 = tailor::quantize::quantize_layers(
        &layers,
        &tailor_core::quant::InputAffine::pixels(0.2860, 0.3530),
        tailor_core::quant::InputKind::RawU8,
        &[ActRange { min: 0.0, max: 3.0 }],
    )
    .unwrap();
    let p = dir.join("second.q8");
    std::fs::write(&p, q8.bytes()).unwrap();
    p
}

/// Two different models through the same firmware ELF: nothing is rebuilt
/// for the second, and both agree with the host to the last logit.
#[test]
fn two_models_run_on_the_same_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let second = second_model(dir.path());
    let run = |m: PathBuf| {
        let a = DeviceArgs {
            limit: Some(300),
            transport: Transport::Semihosting,
            timeout_secs: 240.0,
            ..DeviceArgs::new(m)
        };
        device::run_device(&a).unwrap_or_else(|e| panic!("{e:#}"))
    };
    let (a, b) = (run(model()), run(second));
    eprintln!("{a}\n{b}");
    assert_eq!(a.firmware, b.firmware, "one ELF for both models");
    assert_ne!(a.model_crc, b.model_crc);
    assert_eq!((a.dims.len(), &b.dims[..]), (4, &[784, 32, 10][..]));
    for r in [&a, &b] {
        assert_eq!((r.agree, r.logits_agree), (r.total, r.total), "{}", r.model.display());
    }
    assert!(b.firmware_build_secs < 5.0, "the second model rebuilt the firmware ({:.1} s)", b.firmware_build_secs);
}

/// A model that does not fit the board is refused before QEMU starts, with
/// the sizes; a corrupt or missing model is reported by the device itself.
#[test]
fn models_the_device_cannot_run_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    // 16-8200-10: 0.2 MB, but its scratch (2·8200+2 i16) exceeds the firmware's 16 Ki.
    let (w1, b1, w2, b2) = (vec![0.01f32; 8200 * 16], vec![0.0f32; 8200], vec![0.01f32; 10 * 8200], vec![0.0f32; 10]);
    let layers = [
        FloatLayer { inputs: 16, outputs: 8200, activation: Activation::Relu, weight: &w1, bias: &b1 },
        FloatLayer { inputs: 8200, outputs: 10, activation: Activation::None, weight: &w2, bias: &b2 },
    ];
    let big = tailor::quantize::quantize_layers(
        &layers,
        &tailor_core::quant::InputAffine::pixels(0.0, 1.0),
        tailor_core::quant::InputKind::RawU8,
        &[ActRange { min: 0.0, max: 1.0 }],
    )
    .unwrap();
    let p = dir.path().join("big.q8");
    std::fs::write(&p, big.bytes()).unwrap();
    let err = device::run_device(&DeviceArgs { limit: Some(4), firmware: Some(firmware()), ..DeviceArgs::new(&p) })
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("does not fit mps2-an386") && msg.contains("16384 i16"), "{msg}");

    // Flipped payload bits with the header intact: the device's CRC check.
    let mut bad = model_bytes();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    let q = Qemu::start(&firmware(), Some(&bad), Transport::Semihosting, Duration::from_secs(60)).unwrap();
    assert_eq!(q.hello.model_state, ModelState::Invalid, "{:?}", q.hello);
    assert!(q.hello.model_detail.contains("checksum"), "{}", q.hello.model_detail);
    q.finish().unwrap();

    let mut q = Qemu::start(&firmware(), None, Transport::Semihosting, Duration::from_secs(60)).unwrap();
    assert_eq!(q.hello.model_state, ModelState::Missing, "{:?}", q.hello);
    q.send(&Message::Classify { seq: 1, want_logits: false, images: &[0; 784] }).unwrap();
    assert!(matches!(q.recv().unwrap(), Reply::Error { code: ErrorCode::NoModel, .. }));
    q.finish().unwrap();
}

#[test]
fn devices_streaming_at_once_give_what_one_device_gives() {
    let one =
        device::run_device(&DeviceArgs { jobs: Some(1), batch: Some(50), ..args(Transport::Semihosting, Some(301)) })
            .unwrap_or_else(|e| panic!("{e:#}"));
    let three =
        device::run_device(&DeviceArgs { jobs: Some(3), batch: Some(50), ..args(Transport::Semihosting, Some(301)) })
            .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((one.jobs, three.jobs), (1, 3));
    for r in [&one, &three] {
        assert_eq!((r.total, r.agree, r.logits_agree), (301, 301, 301), "{r}");
        assert_eq!(r.device_stats.images, 301);
    }
    assert_eq!(one.device_accuracy, three.device_accuracy);
    // Each device counts its own instructions, to one SysTick tick (40
    // instructions) per request: 7 requests of ≤ 50 images either way.
    let (a, b) = (one.instructions_per_inference, three.instructions_per_inference);
    assert!((a - b).abs() < 40.0 * 14.0 / 301.0, "{a} vs {b}");
}
