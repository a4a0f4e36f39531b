//! The C functions called as C would, on the firmware's trained model:
//! every bad pointer and length is a code, and the results are the core's.

use core::ptr::{null, null_mut};
use std::vec;
use std::vec::Vec;

use tailor_core::quant::{QKernels, QModel};

use crate::model::*;
use crate::status::*;

/// `firmware-sim/models/default.q8` (784-64-64-10, trained), 64-byte aligned.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);
static Q8: &Aligned<[u8]> = &Aligned(*include_bytes!("../../firmware-sim/models/default.q8"));

fn blank() -> TailorModel {
    // SAFETY: plain integers; zero is "not loaded".
    unsafe { core::mem::zeroed() }
}

fn load(bytes: &[u8]) -> (i32, TailorModel) {
    let mut m = blank();
    let r = unsafe { tailor_model_load(&mut m, bytes.as_ptr(), bytes.len()) };
    (r, m)
}

/// Deterministic test inputs: `n` samples of `f` bytes.
fn inputs(n: usize, f: usize) -> Vec<u8> {
    (0..n * f).map(|i| ((i * 37 + i / f * 11) % 256) as u8).collect()
}

#[test]
fn a_loaded_model_classifies_like_the_core() {
    let (r, m) = load(&Q8.0);
    assert_eq!(r, TAILOR_OK);
    let mut info = TailorModelInfo::default();
    assert_eq!(unsafe { tailor_model_info(&m, &mut info) }, TAILOR_OK);
    let q = QModel::parse(&Q8.0).unwrap();
    assert_eq!((info.inputs, info.outputs, info.layers, info.features), (784, 10, 3, 64));
    assert_eq!(info.model_bytes as usize, Q8.0.len());
    assert_eq!(info.payload_crc, q.payload_crc());
    assert_eq!(unsafe { tailor_scratch_size(&m) }, info.scratch_bytes as usize);
    assert_eq!(info.scratch_bytes as usize, 2 * q.scratch_len());
    let n = 40;
    let x = inputs(n, 784);
    let mut scratch = vec![0i16; q.scratch_len()];
    let (mut classes, mut logits) = (vec![0u32; n], vec![0i32; n * 10]);
    let got = unsafe {
        tailor_classify_batch(
            &m,
            x.as_ptr(),
            x.len(),
            n,
            scratch.as_mut_ptr().cast(),
            2 * scratch.len(),
            classes.as_mut_ptr(),
            logits.as_mut_ptr(),
            logits.len(),
        )
    };
    assert_eq!(got, n as i32);
    let mut classes_only = vec![0u32; n];
    let got = unsafe {
        tailor_classify_batch(
            &m,
            x.as_ptr(),
            x.len(),
            n,
            scratch.as_mut_ptr().cast(),
            2 * scratch.len(),
            classes_only.as_mut_ptr(),
            null_mut(),
            0,
        )
    };
    assert_eq!((got, &classes_only), (n as i32, &classes));
    let mut seen = [false; 10];
    for i in 0..n {
        let xi = &x[i * 784..(i + 1) * 784];
        let mut want = [0i32; 10];
        let c = q.classify(&QKernels::NAIVE, xi, &mut scratch, &mut want);
        let mut l = [0i32; 10];
        let r = unsafe {
            tailor_classify(&m, xi.as_ptr(), 784, scratch.as_mut_ptr().cast(), 2 * scratch.len(), l.as_mut_ptr(), 10)
        };
        assert_eq!((r, l), (c as i32, want), "sample {i}");
        assert_eq!((classes[i], &logits[i * 10..(i + 1) * 10]), (c as u32, &want[..]));
        seen[c] = true;
    }
    assert!(seen.iter().filter(|&&s| s).count() >= 2, "a test that sees one class cannot tell much");
    // A copy of the handle works the same (plain data).
    let copy: TailorModel = unsafe { core::ptr::read(&m) };
    assert_eq!(unsafe { tailor_scratch_size(&copy) }, 2 * q.scratch_len());
}

#[test]
fn bad_models_are_codes_and_leave_the_handle_not_loaded() {
    let good = &Q8.0;
    let flip = |at: usize| {
        let mut b = Aligned([0u8; 65_536]);
        b.0[..good.len()].copy_from_slice(good);
        b.0[at] ^= 0x40;
        b
    };
    let mut cases: Vec<(&str, i32, i32)> = Vec::new();
    let mut m = blank();
    cases.push(("null model", unsafe { tailor_model_load(null_mut(), good.as_ptr(), good.len()) }, TAILOR_ERR_NULL));
    cases.push(("null bytes", unsafe { tailor_model_load(&mut m, null(), 10) }, TAILOR_ERR_NULL));
    let mut shifted = Aligned([0u8; 65_536]);
    shifted.0[1..1 + good.len()].copy_from_slice(good);
    cases.push(("unaligned bytes", load(&shifted.0[1..1 + good.len()]).0, TAILOR_ERR_MISALIGNED));
    cases.push(("empty", load(&good[..0]).0, TAILOR_ERR_TRUNCATED));
    cases.push(("truncated", load(&good[..good.len() - 1]).0, TAILOR_ERR_TRUNCATED));
    cases.push(("magic", load(&flip(0).0[..good.len()]).0, TAILOR_ERR_MAGIC));
    cases.push(("version", load(&flip(4).0[..good.len()]).0, TAILOR_ERR_VERSION));
    cases.push(("header crc", load(&flip(9).0[..good.len()]).0, TAILOR_ERR_CHECKSUM));
    cases.push(("payload crc", load(&flip(good.len() - 100).0[..good.len()]).0, TAILOR_ERR_CHECKSUM));
    // Longer than the model (a flash region): fine, the header says where it ends.
    cases.push(("region", load(&flip(good.len() + 10).0).0, TAILOR_OK));
    for (what, got, want) in &cases {
        assert_eq!(got, want, "{what}");
    }
    // A failed load leaves even a previously loaded handle unusable.
    let (r, mut m) = load(good);
    assert_eq!(r, TAILOR_OK);
    assert_eq!(unsafe { tailor_model_load(&mut m, good.as_ptr(), 8) }, TAILOR_ERR_TRUNCATED);
    let mut info = TailorModelInfo::default();
    assert_eq!(unsafe { tailor_model_info(&m, &mut info) }, TAILOR_ERR_NOT_LOADED);
    assert_eq!(unsafe { tailor_scratch_size(&m) }, 0);
    assert_eq!(unsafe { tailor_scratch_size(null()) }, 0);
}

#[test]
fn bad_buffers_are_codes_not_faults() {
    let (_, m) = load(&Q8.0);
    let x = inputs(2, 784);
    let need = unsafe { tailor_scratch_size(&m) };
    let mut s = vec![0u32; need / 4 + 1];
    let sp = s.as_mut_ptr().cast::<u8>();
    let mut l = [0i32; 20];
    let lp = l.as_mut_ptr();
    let classify = |m: *const TailorModel, x: *const u8, xn: usize, s: *mut u8, sn: usize, l: *mut i32, ln: usize| unsafe {
        tailor_classify(m, x, xn, s.cast(), sn, l, ln)
    };
    let blank = blank();
    let checks = [
        ("fine", classify(&m, x.as_ptr(), 784, sp, need, lp, 10), None),
        ("null model", classify(null(), x.as_ptr(), 784, sp, need, lp, 10), Some(TAILOR_ERR_NULL)),
        ("not loaded", classify(&blank, x.as_ptr(), 784, sp, need, lp, 10), Some(TAILOR_ERR_NOT_LOADED)),
        ("null input", classify(&m, null(), 784, sp, need, lp, 10), Some(TAILOR_ERR_NULL)),
        ("short input", classify(&m, x.as_ptr(), 783, sp, need, lp, 10), Some(TAILOR_ERR_LENGTH)),
        ("long input", classify(&m, x.as_ptr(), 785, sp, need, lp, 10), Some(TAILOR_ERR_LENGTH)),
        ("null scratch", classify(&m, x.as_ptr(), 784, null_mut(), need, lp, 10), Some(TAILOR_ERR_NULL)),
        ("short scratch", classify(&m, x.as_ptr(), 784, sp, need - 2, lp, 10), Some(TAILOR_ERR_LENGTH)),
        ("odd scratch", classify(&m, x.as_ptr(), 784, sp.wrapping_add(1), need, lp, 10), Some(TAILOR_ERR_MISALIGNED)),
        ("2-aligned scratch", classify(&m, x.as_ptr(), 784, sp.wrapping_add(2), need, lp, 10), None),
        ("null logits", classify(&m, x.as_ptr(), 784, sp, need, null_mut(), 10), Some(TAILOR_ERR_NULL)),
        ("short logits", classify(&m, x.as_ptr(), 784, sp, need, lp, 9), Some(TAILOR_ERR_LENGTH)),
        (
            "odd logits",
            classify(&m, x.as_ptr(), 784, sp, need, lp.cast::<u8>().wrapping_add(1).cast(), 10),
            Some(TAILOR_ERR_MISALIGNED),
        ),
        ("huge length", classify(&m, x.as_ptr(), usize::MAX, sp, need, lp, 10), Some(TAILOR_ERR_LENGTH)),
    ];
    for (what, got, want) in checks {
        match want {
            Some(code) => assert_eq!(got, code, "{what}"),
            None => assert!((0..10).contains(&got), "{what}: {got}"),
        }
    }
    let mut c = [0u32; 2];
    let batch = |n: usize, xn: usize, l: *mut i32, ln: usize, c: *mut u32| unsafe {
        tailor_classify_batch(&m, x.as_ptr(), xn, n, sp.cast(), need, c, l, ln)
    };
    let cp = c.as_mut_ptr();
    assert_eq!(batch(2, 2 * 784, lp, 20, cp), 2);
    assert_eq!(batch(0, 0, lp, 0, cp), 0);
    assert_eq!(batch(2, 2 * 784 - 1, lp, 20, cp), TAILOR_ERR_LENGTH);
    assert_eq!(batch(2, 2 * 784, lp, 19, cp), TAILOR_ERR_LENGTH);
    assert_eq!(batch(2, 2 * 784, lp, 20, null_mut()), TAILOR_ERR_NULL);
    assert_eq!(batch(usize::MAX, 2 * 784, lp, 20, cp), TAILOR_ERR_LENGTH);
    let mut info = TailorModelInfo::default();
    assert_eq!(unsafe { tailor_model_info(&m, null_mut()) }, TAILOR_ERR_NULL);
    assert_eq!(unsafe { tailor_model_info(null(), &mut info) }, TAILOR_ERR_NULL);
}

#[test]
fn every_code_has_its_own_message() {
    let codes = [
        TAILOR_ERR_NULL,
        TAILOR_ERR_MISALIGNED,
        TAILOR_ERR_LENGTH,
        TAILOR_ERR_NOT_LOADED,
        TAILOR_ERR_TRUNCATED,
        TAILOR_ERR_MAGIC,
        TAILOR_ERR_VERSION,
        TAILOR_ERR_CHECKSUM,
        TAILOR_ERR_CORRUPT,
        crate::train::TAILOR_ERR_SETTING,
        crate::train::TAILOR_ERR_LABEL,
    ];
    let msg = |c: i32| unsafe { core::ffi::CStr::from_ptr(tailor_status_str(c)) }.to_str().unwrap();
    let mut all: Vec<&str> = codes.iter().map(|&c| msg(c)).collect();
    all.push(msg(TAILOR_OK));
    all.push(msg(-1000));
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "messages repeat");
    assert_eq!(msg(7), "ok");
}

mod train {
    use super::*;
    use crate::train::*;
    use tailor_core::gemm::Kernels;
    use tailor_core::optim::{Optimizer, Sgd};
    use tailor_core::session::{InputMap, SessionBuffers, SessionSetup, TrainSession};
    use tailor_core::spec::Spec;

    fn head_setup(dims: &[u32; 2], scale: f32, zp: i32) -> TailorTrainSetup {
        TailorTrainSetup {
            dims: dims.as_ptr(),
            n_dims: 2,
            seed: 7,
            optimizer: TAILOR_OPT_SGD,
            momentum: 0.9,
            weight_decay: 0.0,
            input: TAILOR_INPUT_AFFINE,
            mean: 0.0,
            std: 0.0,
            scale,
            zero_point: zp,
        }
    }

    /// A head on the int8 model's features trains through the C calls
    /// exactly as the core's session does, and refuses bad batches.
    #[test]
    fn a_head_trains_like_the_core_session() {
        let (_, m) = load(&Q8.0);
        let q = QModel::parse(&Q8.0).unwrap();
        let (mut scale, mut zp) = (0f32, 0i32);
        assert_eq!(unsafe { tailor_model_feature_grid(&m, &mut scale, &mut zp) }, TAILOR_OK);
        let n = 32;
        let x = inputs(n, 784);
        let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
        let mut s = vec![0i16; q.scratch_len()];
        let mut feats = vec![0u8; n * 64];
        for i in 0..n {
            let f = &mut feats[i * 64..(i + 1) * 64];
            let r = unsafe {
                tailor_model_features(
                    &m,
                    x[i * 784..].as_ptr(),
                    784,
                    s.as_mut_ptr().cast(),
                    2 * s.len(),
                    f.as_mut_ptr(),
                    64,
                )
            };
            assert_eq!(r, 64);
        }
        assert!(feats.iter().any(|&b| b as i32 != zp), "features all at the zero point");

        let dims = [64u32, 10];
        let setup = head_setup(&dims, scale, zp);
        let mut sz = TailorTrainSizes::default();
        assert_eq!(unsafe { tailor_train_sizes(&setup, 8, &mut sz) }, TAILOR_OK);
        assert_eq!(sz, TailorTrainSizes { params: 650, state: 650, scratch: sz.scratch, workspace: sz.workspace });
        let (mut p, mut st, mut sc, mut ws) =
            (vec![0f32; sz.params], vec![0f32; sz.state], vec![0f32; sz.scratch], vec![0f32; sz.workspace]);
        let mut t: TailorTrain = unsafe { core::mem::zeroed() };
        let r = unsafe {
            tailor_train_start(
                &mut t,
                &setup,
                p.as_mut_ptr(),
                p.len(),
                st.as_mut_ptr(),
                st.len(),
                sc.as_mut_ptr(),
                sc.len(),
                ws.as_mut_ptr(),
                ws.len(),
            )
        };
        assert_eq!(r, TAILOR_OK);
        // The core's session on its own buffers.
        let core_setup = SessionSetup {
            spec: Spec::mlp(&[64, 10]),
            optimizer: Optimizer::Sgd(Sgd { momentum: 0.9, ..Sgd::default() }),
            seed: 7,
            input: InputMap::Affine { scale, zero_point: zp },
        };
        let (mut p2, mut st2, mut sc2, mut ws2) = (p.clone(), st.clone(), sc.clone(), ws.clone());
        let bufs = SessionBuffers { params: &mut p2, state: &mut st2, scratch: &mut sc2, workspace: &mut ws2 };
        let mut core = TrainSession::new(&core_setup, bufs).unwrap();
        for b in 0..4 {
            let (l, f) = (&labels[b * 8..(b + 1) * 8], &feats[b * 8 * 64..(b + 1) * 8 * 64]);
            let mut loss = 0f32;
            let r = unsafe { tailor_train_batch(&mut t, 0.05, l.as_ptr(), 8, f.as_ptr(), f.len(), &mut loss) };
            assert_eq!(r, TAILOR_OK);
            let want = core.train_batch(&Kernels::TARGET, 0.05, l, f).unwrap();
            assert_eq!(loss.to_bits(), want.to_bits(), "batch {b}");
        }
        assert_eq!(unsafe { tailor_train_steps(&mut t) }, 4);
        let (mut pp, mut pl) = (null(), 0usize);
        assert_eq!(unsafe { tailor_train_params(&mut t, &mut pp, &mut pl) }, TAILOR_OK);
        let got = unsafe { core::slice::from_raw_parts(pp, pl) };
        assert!(got.iter().zip(core.params()).all(|(a, b)| a.to_bits() == b.to_bits()), "parameters differ");
        let (mut correct, mut sum) = (0u32, 0f32);
        let r = unsafe {
            tailor_train_evaluate(&mut t, labels.as_ptr(), 8, feats.as_ptr(), 8 * 64, &mut correct, &mut sum)
        };
        assert_eq!(r, TAILOR_OK);
        let e = core.evaluate(&Kernels::TARGET, &labels[..8], &feats[..8 * 64]).unwrap();
        assert_eq!((correct, sum), (e.correct, e.loss_sum));

        // Refused batches change nothing.
        let before = got.to_vec();
        let mut bad_labels = labels[..8].to_vec();
        bad_labels[3] = 10;
        let f = feats.as_ptr();
        let batch = |t: &mut TailorTrain, lr: f32, l: &[u8], n: usize, len: usize| unsafe {
            tailor_train_batch(t, lr, l.as_ptr(), n, f, len, null_mut())
        };
        assert_eq!(batch(&mut t, 0.05, &bad_labels, 8, 8 * 64), TAILOR_ERR_LABEL);
        assert_eq!(batch(&mut t, 0.05, &labels, 9, 9 * 64), TAILOR_ERR_LENGTH);
        assert_eq!(batch(&mut t, 0.05, &labels, 8, 8 * 64 - 1), TAILOR_ERR_LENGTH);
        assert_eq!(batch(&mut t, f32::NAN, &labels, 8, 8 * 64), TAILOR_ERR_SETTING);
        assert_eq!(unsafe { tailor_train_batch(&mut t, 0.05, null(), 8, f, 8 * 64, null_mut()) }, TAILOR_ERR_NULL);
        let mut fresh: TailorTrain = unsafe { core::mem::zeroed() };
        assert_eq!(batch(&mut fresh, 0.05, &labels, 8, 8 * 64), TAILOR_ERR_NOT_LOADED);
        assert_eq!(unsafe { tailor_train_steps(&mut t) }, 4);
        assert!(got == &before[..]);
    }

    #[test]
    fn bad_settings_and_buffers_are_codes() {
        let dims = [6u32, 5, 3];
        let ok = TailorTrainSetup {
            dims: dims.as_ptr(),
            n_dims: 3,
            optimizer: TAILOR_OPT_ADAM,
            input: TAILOR_INPUT_PIXELS,
            mean: 0.25,
            std: 0.5,
            ..head_setup(&[1, 1], 1.0, 0)
        };
        let sizes = |s: &TailorTrainSetup| {
            let mut z = TailorTrainSizes::default();
            (unsafe { tailor_train_sizes(s, 4, &mut z) }, z)
        };
        let (r, z) = sizes(&ok);
        assert_eq!(r, TAILOR_OK);
        assert_eq!((z.params, z.state), (53, 106));
        let zero = [6u32, 0, 3];
        for (what, s) in [
            ("one width", TailorTrainSetup { n_dims: 1, ..ok }),
            ("a zero width", TailorTrainSetup { dims: zero.as_ptr(), ..ok }),
            ("optimizer", TailorTrainSetup { optimizer: 9, ..ok }),
            ("input", TailorTrainSetup { input: 9, ..ok }),
            ("momentum", TailorTrainSetup { momentum: f32::INFINITY, ..ok }),
        ] {
            assert_eq!(sizes(&s).0, TAILOR_ERR_SETTING, "{what}");
        }
        assert_eq!(sizes(&TailorTrainSetup { dims: null(), ..ok }).0, TAILOR_ERR_NULL);
        let start = |s: &TailorTrainSetup, state: usize, ws: usize| {
            let (mut p, mut st, mut sc, mut w) =
                (vec![0f32; z.params], vec![0f32; 106], vec![0f32; z.scratch], vec![0f32; ws]);
            let mut t: TailorTrain = unsafe { core::mem::zeroed() };
            let stp = if state == usize::MAX { null_mut() } else { st.as_mut_ptr() };
            let stl = if state == usize::MAX { 106 } else { state };
            unsafe {
                tailor_train_start(
                    &mut t,
                    s,
                    p.as_mut_ptr(),
                    p.len(),
                    stp,
                    stl,
                    sc.as_mut_ptr(),
                    sc.len(),
                    w.as_mut_ptr(),
                    w.len(),
                )
            }
        };
        assert_eq!(start(&ok, 106, z.workspace), TAILOR_OK);
        assert_eq!(start(&ok, 105, z.workspace), TAILOR_ERR_LENGTH);
        assert_eq!(start(&ok, usize::MAX, z.workspace), TAILOR_ERR_NULL);
        assert_eq!(start(&ok, 106, 3), TAILOR_ERR_LENGTH);
        assert_eq!(start(&TailorTrainSetup { std: 0.0, ..ok }, 106, z.workspace), TAILOR_ERR_SETTING);
        // Plain SGD needs no state: NULL is fine.
        let sgd = TailorTrainSetup { optimizer: TAILOR_OPT_SGD, momentum: 0.0, ..ok };
        assert_eq!(sizes(&sgd).1.state, 0);
        let mut t: TailorTrain = unsafe { core::mem::zeroed() };
        let (mut p, mut sc, mut w) = (vec![0f32; z.params], vec![0f32; z.scratch], vec![0f32; z.workspace]);
        let r = unsafe {
            tailor_train_start(
                &mut t,
                &sgd,
                p.as_mut_ptr(),
                p.len(),
                null_mut(),
                0,
                sc.as_mut_ptr(),
                sc.len(),
                w.as_mut_ptr(),
                w.len(),
            )
        };
        assert_eq!(r, TAILOR_OK);
    }
}
