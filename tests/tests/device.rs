//! End to end on the emulated Cortex-M4 (QEMU mps2-an386): the firmware in
//! `firmware-sim/` built for a model, driven through `tailor::device`.
//!
//! The model is `firmware-sim/models/default.q8` (784-64-64-10, small so the
//! 10,000 images take seconds), or `$TAILOR_DEVICE_MODEL`. Needs
//! `qemu-system-arm` and the Fashion-MNIST test set.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tailor::device::{self, DeviceArgs, Qemu, Reply, Transport};
use tailor_core::protocol::{self, ErrorCode, Message};

fn model() -> PathBuf {
    std::env::var_os("TAILOR_DEVICE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| tailor_e2e::workspace_root().join("firmware-sim/models/default.q8"))
}

/// The firmware ELF for [`model`], built once per test process.
fn firmware() -> PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| device::build_firmware(&model()).unwrap_or_else(|e| panic!("{e:#}"))).clone()
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
    assert_eq!(r.device_accuracy, r.host_accuracy);
    assert!(r.instructions_per_inference > device::macs(&r.dims) as f64 * 0.5, "{}", r.instructions_per_inference);
    assert_eq!(r.device_stats.images, 10_000);
    assert_eq!(r.device_stats.frames_bad, 0);
    let j = r.to_json();
    for k in ["device_accuracy", "host_accuracy", "agree", "total", "instructions_per_inference", "images_per_sec"] {
        assert!(j.get(k).is_some(), "JSON lacks {k}");
    }
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
    let mut q =
        Qemu::start(&firmware(), Transport::Semihosting, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e:#}"));
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
    let mut q =
        Qemu::start(&firmware(), Transport::Semihosting, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e:#}"));
    let (passed, failed, detail) = q.self_test().unwrap();
    assert_eq!(failed, 0, "{detail}");
    assert!(passed >= 3, "{detail}");
    q.finish().unwrap();
}

#[test]
fn a_wrong_firmware_for_the_model_is_refused() {
    // Another valid model: one weight byte changed, header CRC updated.
    let mut bytes = std::fs::read(model()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let (h, p) = tailor_core::format::Header::parse(&bytes, tailor_core::quant::MAGIC).unwrap();
    let n = h.encoded_len();
    let h = tailor_core::format::Header::new(h.magic, h.spec, p);
    h.encode(&mut bytes[..n]);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.q8");
    std::fs::write(&other, bytes).unwrap();
    let err = device::run_device(&DeviceArgs { model: other, limit: Some(8), ..args(Transport::Semihosting, Some(8)) })
        .unwrap_err();
    assert!(format!("{err:#}").contains("crc"), "{err:#}");
}
