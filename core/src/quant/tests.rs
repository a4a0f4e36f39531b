extern crate std;

use std::vec::Vec;

use super::golden;
use super::kernels::tests::all_kernels;
use super::*;
use crate::format::{crc32, FormatError, Header};
use crate::rng::Rng;
use crate::spec::{Activation, Layer, Spec};
use proptest::prelude::*;

/// A word-aligned byte buffer, as the host keeps `.q8` files.
pub(crate) struct Buf {
    words: Vec<u32>,
    len: usize,
}

impl Buf {
    pub(crate) fn new(len: usize) -> Self {
        Buf { words: std::vec![0; len.div_ceil(4) + 1], len }
    }
    pub(crate) fn from(bytes: &[u8]) -> Self {
        let mut b = Buf::new(bytes.len());
        b.bytes_mut().copy_from_slice(bytes);
        b
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: u32 storage of at least `len` bytes; any bits are valid u8.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }
    /// The same bytes one byte past a word boundary.
    fn misaligned(&mut self) -> &[u8] {
        let n = self.len;
        // SAFETY: the storage has one spare word.
        let all = unsafe { core::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, n + 4) };
        all.copy_within(0..n, 1);
        &all[1..n + 1]
    }
}

#[test]
fn golden_values_on_every_kernel() {
    let blob = golden::blob();
    let m = QModel::parse(&blob.0).unwrap();
    assert_eq!(m.spec().dims(), &[10, 5, 3, 2]);
    let (l1, l2) = (m.layer(0), m.layer(1));
    for k in all_kernels() {
        let mut x = Aligned([0i16; 10]);
        widen(&golden::INPUT, &mut x.0);
        let mut acc1 = [0i32; 5];
        l1.accumulate(&k, &x.0, &mut acc1);
        assert_eq!(acc1, golden::EXPECTED_ACC1, "{}", k.name);
        let mut h1 = Aligned([0i16; 5]);
        l1.forward_hidden(&k, &x.0, &mut h1.0);
        assert_eq!(h1.0.map(|v| v as u8), golden::EXPECTED_ACT1);
        let mut acc2 = [0i32; 3];
        l2.accumulate(&k, &h1.0, &mut acc2);
        assert_eq!(acc2, golden::EXPECTED_ACC2);
        let mut h2 = Aligned([0i16; 3]);
        l2.forward_hidden(&k, &h1.0, &mut h2.0);
        assert_eq!(h2.0.map(|v| v as u8), golden::EXPECTED_ACT2);
        let mut logits = [0i32; 2];
        let mut scratch = [0i16; 32];
        assert_eq!(m.classify(&k, &golden::INPUT, &mut scratch, &mut logits), golden::EXPECTED_CLASS);
        assert_eq!(logits, golden::EXPECTED_LOGITS);
    }
    for r in 0..5 {
        for k in 0..10 {
            assert_eq!(l1.weight_at(r, k), golden::W1[r][k]);
        }
    }
}

#[test]
fn rounding_primitives_match_gemmlowp() {
    // Values from an independent arbitrary-precision implementation.
    assert_eq!(rdbp(5, 1), 3);
    assert_eq!(rdbp(-5, 1), -3);
    assert_eq!(rdbp(7, 2), 2);
    assert_eq!(rdbp(-6, 2), -2);
    assert_eq!(rdbp(-7, 2), -2);
    assert_eq!(rdbp(6, 2), 2);
    assert_eq!(rdbp(i32::MIN, 31), -1);
    assert_eq!(rdbp(123, 0), 123);
    assert_eq!(srdhm(1 << 30, 3), 2);
    assert_eq!(srdhm(-(1 << 30), 3), -1);
    assert_eq!(srdhm(123_456_789, 1_518_500_250), 87_297_133);
    assert_eq!(srdhm(-123_456_789, 1_518_500_250), -87_297_133);
    assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
    assert_eq!(srdhm(i32::MAX, i32::MAX), i32::MAX - 1);
    assert_eq!(mbqm(1000, 1 << 30, 0), 500);
    assert_eq!(mbqm(1000, 1 << 30, 1), 1000);
    assert_eq!(mbqm(i32::MAX, 1 << 30, 2), 1 << 30); // saturating left shift, then ×0.5
}

/// `mbqm` computes SRDHM without its sign-dependent nudge; it must equal
/// the composition of the gemmlowp primitives everywhere.
fn mbqm_reference(x: i32, m0: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    rdbp(srdhm(x.saturating_mul(1 << left), m0), right)
}

#[test]
fn mbqm_equals_the_primitives_on_edges() {
    let xs =
        [i32::MIN, i32::MIN + 1, -(1 << 30) - 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, 1 << 30, i32::MAX - 1, i32::MAX];
    let ms = [i32::MIN, i32::MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, (1 << 30) + 1, i32::MAX - 1, i32::MAX];
    for &x in &xs {
        for &m in &ms {
            for s in -31..=30 {
                assert_eq!(mbqm(x, m, s), mbqm_reference(x, m, s), "x {x} m0 {m} shift {s}");
            }
        }
    }
}

proptest! {
    #[test]
    fn mbqm_equals_the_primitives(x in any::<i32>(), m in any::<i32>(), s in -31i32..=30, small in 0u32..4) {
        // Also small products, where the rounding ties live.
        let x = if small == 0 { x >> 20 } else { x };
        prop_assert_eq!(mbqm(x, m, s), mbqm_reference(x, m, s));
        if s < 0 {
            prop_assert_eq!(mbqm_shr_model(x, m, -s - 1), mbqm(x, m, s));
        }
    }
}

/// The arithmetic of the Cortex-M4 requantization (`kernels::dsp::mbqm_shr`:
/// `SMLAL`, `QADD`, `ORR`, `ADD`, `ASR`, `SUB`) written out in Rust, so
/// that the identity it rests on is checked on every host too (the
/// instructions themselves are checked against `mbqm` on the device).
fn mbqm_shr_model(acc: i32, m0: i32, e1: i32) -> i32 {
    let t = acc as i64 * m0 as i64 + (1 << 30);
    let (hi, lo) = ((t >> 32) as i32, t as u32);
    let v = hi.saturating_add(hi) | (lo >> 31) as i32;
    let t = v.wrapping_add(v >> 31);
    let s = t >> e1;
    s - (s >> 1)
}

#[test]
fn dsp_requantization_identity_holds_on_edges() {
    let xs =
        [i32::MIN, i32::MIN + 1, -(1 << 30) - 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, 1 << 30, i32::MAX - 1, i32::MAX];
    let ms = [i32::MIN, i32::MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, (1 << 30) + 1, i32::MAX - 1, i32::MAX];
    for &x in &xs {
        for &m in &ms {
            for e1 in 0..=30 {
                assert_eq!(mbqm_shr_model(x, m, e1), mbqm(x, m, -e1 - 1), "x {x} m0 {m} shift {}", -e1 - 1);
            }
        }
    }
}

#[test]
fn quantize_multiplier_is_accurate() {
    for real in [1e-6, 0.00123, 0.3, 0.5, 0.7, 0.999_999_999_9, 1.0, 3.5] {
        let (m, s) = quantize_multiplier(real);
        assert!((1 << 30..=i32::MAX).contains(&m), "{real}");
        let back = m as f64 * libm::pow(2.0, (s - 31) as f64);
        assert!((back - real).abs() <= real * 1e-9, "{real} → {back}");
        // And the integer path agrees with the real product to within 1.
        for x in [-100_000i32, -7, 0, 3, 99_999, 1_000_000] {
            let want = x as f64 * real;
            let got = mbqm(x, m, s) as f64;
            assert!((got - want).abs() <= 0.5 + 1e-6 * want.abs(), "{x}·{real}: {got} vs {want}");
        }
    }
    assert_eq!(quantize_multiplier(0.0), (0, 0));
    assert_eq!(quantize_multiplier(1e-12), (0, 0));
}

/// Exactly TFLite's `QuantizeMultiplier` (`quantization_util.cc`: `frexp`,
/// `std::round` of the mantissa to Q31 — ties away from zero —, the
/// renormalization when it rounds up to 2^31, and the shift limits), on edge
/// values. The expected pairs come from an independent implementation of
/// that C++; a `round` → `floor` change fails the tie cases.
#[test]
fn quantize_multiplier_equals_tflite_on_edge_values() {
    let cases: [(f64, (i32, i32)); 13] = [
        (0.5, (1 << 30, 0)),
        (0.25, (1 << 30, -1)),
        (0.75, (1_610_612_736, 0)),
        // Rounds up to 2^31: renormalized.
        (1.0 - libm::pow(2.0, -40.0), (1 << 30, 1)),
        ((2_147_483_648.0 - 0.5) / 2_147_483_648.0, (1 << 30, 1)),
        // Below 2^-32: zero.
        (libm::pow(2.0, -40.0), (0, 0)),
        (libm::pow(2.0, -31.0), (1 << 30, -30)),
        (libm::pow(2.0, -32.0), (1 << 30, -31)),
        // Mantissa·2^31 ends in exactly .5 and in .75: round, not floor.
        ((1_073_741_824.0 + 0.5) / 2_147_483_648.0 * libm::pow(2.0, -5.0), (1_073_741_825, -5)),
        ((1_073_741_824.0 + 0.75) / 2_147_483_648.0 * libm::pow(2.0, -9.0), (1_073_741_825, -9)),
        (0.1, (1_717_986_918, -3)),
        (0.0123456789, (1_696_777_188, -6)),
        (0.999_999_999, (2_147_483_646, 0)),
    ];
    for (real, want) in cases {
        assert_eq!(quantize_multiplier(real), want, "{real:e}");
    }
}

#[test]
fn act_range_qparams() {
    let mut r = ActRange::EMPTY;
    r.observe(&[0.0, 2.55, 1.0]);
    let (s, z) = r.qparams();
    assert!((s - 0.01).abs() < 1e-6 && z == 0);
    let r = ActRange { min: -1.0, max: 3.0 };
    let (s, z) = r.qparams();
    assert!((s - 4.0 / 255.0).abs() < 1e-6);
    assert_eq!(z, 64);
    assert_eq!(ActRange::EMPTY.qparams(), (1.0, 0));
}

/// An f32 MLP of any shape with weights from a seeded [`Rng`].
struct FloatModel {
    spec: Spec,
    params: Vec<(Vec<f32>, Vec<f32>)>,
}

impl FloatModel {
    fn random(spec: Spec, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let params = spec
            .layers()
            .map(|l| {
                let a = 1.0 / libm::sqrtf(l.inputs as f32);
                let w = (0..l.inputs * l.outputs).map(|_| rng.uniform(-a, a)).collect();
                let b = (0..l.outputs).map(|_| rng.uniform(-a, a)).collect();
                (w, b)
            })
            .collect();
        FloatModel { spec, params }
    }

    fn layers(&self) -> Vec<FloatLayer<'_>> {
        self.spec
            .layers()
            .zip(&self.params)
            .map(|(l, (w, b))| FloatLayer {
                inputs: l.inputs,
                outputs: l.outputs,
                activation: l.activation,
                weight: w,
                bias: b,
            })
            .collect()
    }

    /// Logits on normalized pixels; `ranges` observes each hidden output.
    fn forward(&self, px: &[u8], mean: f32, std: f32, mut ranges: Option<&mut [ActRange]>) -> Vec<f32> {
        let mut x: Vec<f32> = px.iter().map(|&p| (p as f32 / 255.0 - mean) / std).collect();
        for (i, (l, (w, b))) in self.spec.layers().zip(&self.params).enumerate() {
            let mut y: Vec<f32> =
                (0..l.outputs).map(|o| b[o] + (0..l.inputs).map(|k| w[o * l.inputs + k] * x[k]).sum::<f32>()).collect();
            if l.activation == Activation::Relu {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            if i + 1 < self.spec.depth() {
                if let Some(r) = ranges.as_deref_mut() {
                    r[i].observe(&y);
                }
            }
            x = y;
        }
        x
    }
}

fn quantize_random(spec: Spec, seed: u64, imgs: &[Vec<u8>]) -> (FloatModel, Buf) {
    let m = FloatModel::random(spec, seed);
    let mut ranges = std::vec![ActRange::EMPTY; spec.depth() - 1];
    for px in imgs {
        m.forward(px, 0.3, 0.35, Some(&mut ranges));
    }
    let mut buf = Buf::new(encoded_len(&spec, InputKind::RawU8));
    let n = quantize(&m.layers(), &InputAffine::pixels(0.3, 0.35), &ranges, buf.bytes_mut()).unwrap();
    assert_eq!(n, buf.len);
    (m, buf)
}

fn images(n: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| (0..len).map(|_| rng.next_u32() as u8).collect()).collect()
}

#[test]
fn quantized_models_of_any_depth_track_f32() {
    for dims in [&[13usize, 4][..], &[13, 9, 4], &[13, 9, 6, 4], &[13, 12, 9, 8, 6, 4]] {
        let spec = Spec::mlp(dims);
        let imgs = images(64, 13, 3);
        let (m, buf) = quantize_random(spec, 7, &imgs);
        let q = QModel::parse(buf.bytes()).unwrap();
        let logit_scale = q.layer(spec.depth() - 1).params.out_scale;
        let mut agree = 0;
        let mut scratch = std::vec![0i16; q.scratch_len()];
        for px in &imgs {
            let f = m.forward(px, 0.3, 0.35, None);
            let mut logits = [0i32; 4];
            let cls = q.classify(&QKernels::NAIVE, px, &mut scratch, &mut logits);
            let fmax = f.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
            // Each layer adds its rounding; deeper models drift more.
            let tol = 0.05 * spec.depth() as f32;
            for o in 0..4 {
                let deq = logits[o] as f32 * logit_scale;
                assert!((deq - f[o]).abs() < tol * fmax + 0.05, "{spec}: logit {o}: int8 {deq} vs f32 {}", f[o]);
            }
            agree += (crate::loss::argmax(&f) == cls) as usize;
        }
        assert!(agree >= 52, "{spec}: argmax agreement {agree}/64");
    }
}

/// The old typed quantizer's output (`v1-13-9-6-4.q8`, captured before it
/// was removed) converted to version 2 equals the new quantizer's bytes.
#[test]
fn quantize_reproduces_the_old_quantizer_bit_for_bit() {
    let mut rng = Rng::new(41);
    let mut f = |n: usize, a: f32| (0..n).map(|_| rng.uniform(-a, a)).collect::<Vec<f32>>();
    let (w1, b1, w2, b2, w3, b3) = (f(9 * 13, 0.3), f(9, 0.1), f(6 * 9, 0.4), f(6, 0.1), f(4 * 6, 0.5), f(4, 0.1));
    let fl = |i, o, act, w: &'static [f32], b: &'static [f32]| FloatLayer {
        inputs: i,
        outputs: o,
        activation: act,
        weight: w,
        bias: b,
    };
    let (w1, b1, w2, b2, w3, b3) = (w1.leak(), b1.leak(), w2.leak(), b2.leak(), w3.leak(), b3.leak());
    let layers =
        [fl(13, 9, Activation::Relu, w1, b1), fl(9, 6, Activation::Relu, w2, b2), fl(6, 4, Activation::None, w3, b3)];
    let ranges = [ActRange { min: 0.0, max: 2.5 }, ActRange { min: 0.0, max: 1.7 }];
    let spec = Spec::mlp(&[13, 9, 6, 4]);
    let mut new = Buf::new(encoded_len(&spec, InputKind::RawU8));
    quantize(&layers, &InputAffine::pixels(0.2860, 0.3530), &ranges, new.bytes_mut()).unwrap();
    let old = include_bytes!("../../../tests/golden/v1-13-9-6-4.q8");
    let mut conv = Buf::new(legacy::converted_len(&spec));
    assert_eq!(legacy::convert(old, conv.bytes_mut()), Ok(conv.len));
    assert_eq!(conv.bytes(), new.bytes());
}

/// The firmware's old default model (version 1) converts, and gives the
/// logits the old typed code gave (captured before it was removed).
#[test]
fn version_1_model_converts_to_identical_logits() {
    let v1 = include_bytes!("../../../tests/golden/v1-784-64-64-10.q8");
    let expected = include_str!("../../../tests/golden/v1-784-64-64-10.logits");
    assert!(matches!(QModel::parse(Buf::from(v1).bytes()), Err(FormatError::BadVersion { found: 1, .. })));
    let (spec, _) = legacy::detect(v1).unwrap().unwrap();
    assert_eq!(spec.dims(), &[784, 64, 64, 10]);
    let mut buf = Buf::new(legacy::converted_len(&spec));
    legacy::convert(v1, buf.bytes_mut()).unwrap();
    assert!(legacy::detect(buf.bytes()).is_none());
    let q = QModel::parse(buf.bytes()).unwrap();
    assert_eq!(q.input(), QInput::RawU8);
    let mut rng = Rng::new(2024);
    let mut scratch = std::vec![0i16; q.scratch_len()];
    for (i, line) in expected.lines().enumerate() {
        let px: Vec<u8> = (0..784)
            .map(|_| match i {
                0 => 0,
                1 => 255,
                _ if rng.below(3) == 0 => 0,
                _ => rng.below(256) as u8,
            })
            .collect();
        let want: Vec<i32> = line.split_whitespace().map(|v| v.parse().unwrap()).collect();
        for k in all_kernels() {
            let mut l = [0i32; 10];
            let c = q.classify(&k, &px, &mut scratch, &mut l);
            assert_eq!((&l[..], c as i32), (&want[..10], want[10]), "input {i}, {}", k.name);
        }
    }
    // Corrupt version-1 files are reported as such, not converted.
    let mut bad = v1.to_vec();
    bad[100] ^= 1;
    assert!(matches!(legacy::detect(&bad), Some(Err(FormatError::Checksum { .. }))));
}

/// Re-seals a modified payload (payload and header CRCs) so only the
/// intended defect remains.
fn reseal(bytes: &mut [u8], payload_len: usize) {
    let depth = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let hl = Header::len_for(depth);
    let o = 12 + 8 * depth;
    bytes[o..o + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let c = crc32(&bytes[hl..hl + payload_len]);
    bytes[o + 4..o + 8].copy_from_slice(&c.to_le_bytes());
    let hc = crc32(&bytes[..hl - 4]);
    bytes[hl - 4..hl].copy_from_slice(&hc.to_le_bytes());
}

#[test]
fn parse_reports_each_malformed_file() {
    let spec = Spec::mlp(&[13, 9, 6, 4]);
    let (_, good) = quantize_random(spec, 1, &images(8, 13, 1));
    let n = good.len;
    let hl = Header::len_for(3);
    let parse = |b: &Buf| QModel::parse(b.bytes()).map(|_| ());
    assert_eq!(parse(&good), Ok(()));
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.bytes().to_vec();
        f(&mut v);
        Buf::from(&v)
    };
    // Truncated anywhere: an error, never a panic.
    for cut in 0..n {
        assert!(QModel::parse(&good.bytes()[..cut]).is_err(), "cut at {cut}");
    }
    assert!(matches!(parse(&with(&|v| v.truncate(10))), Err(FormatError::Truncated { .. })));
    assert!(matches!(parse(&with(&|v| v[0] = b'X')), Err(FormatError::BadMagic { .. })));
    assert!(matches!(parse(&with(&|v| v[4] = 9)), Err(FormatError::BadVersion { found: 9, .. })));
    assert!(matches!(parse(&with(&|v| v[12] ^= 1)), Err(FormatError::HeaderChecksum { .. })));
    assert!(matches!(parse(&with(&|v| v[n - 9] ^= 1)), Err(FormatError::Checksum { .. })));
    // Section lengths that disagree with the layer table (CRCs valid).
    let short = with(&|v| {
        v.truncate(n - 4);
        reseal(v, n - 4 - hl)
    });
    assert!(matches!(parse(&short), Err(FormatError::PayloadLength { .. })), "{:?}", parse(&short));
    let long = with(&|v| {
        v.extend_from_slice(&[0; 8]);
        reseal(v, n + 8 - hl)
    });
    assert_eq!(parse(&long), Err(FormatError::PayloadLength { expected: n - hl, found: n + 8 - hl }));
    // Input section says "affine" but has no lo/step.
    let kind_at = n - 4;
    let affine = with(&|v| {
        v[kind_at] = 1;
        reseal(v, n - hl)
    });
    assert!(matches!(parse(&affine), Err(FormatError::PayloadLength { .. })));
    let unknown = with(&|v| {
        v[kind_at] = 7;
        reseal(v, n - hl)
    });
    assert_eq!(parse(&unknown), Err(FormatError::InputKind { code: 7 }));
    let layout = with(&|v| {
        v[hl] = 2;
        reseal(v, n - hl)
    });
    assert_eq!(parse(&layout), Err(FormatError::Layout { found: 2 }));
    // A hidden layer whose outputs are not u8 values, a shift out of range.
    let out_max = with(&|v| {
        let at = hl + layout::layer_offset(&spec, 0) + layout::scalars_at(13, 9) + 20;
        v[at..at + 4].copy_from_slice(&256i32.to_le_bytes());
        reseal(v, n - hl)
    });
    assert!(matches!(parse(&out_max), Err(FormatError::Field { layer: 0, .. })));
    let shift = with(&|v| {
        let at = hl + layout::layer_offset(&spec, 0) + layout::shift_at(13, 9);
        v[at..at + 4].copy_from_slice(&40i32.to_le_bytes());
        reseal(v, n - hl)
    });
    assert!(matches!(parse(&shift), Err(FormatError::Field { layer: 0, .. })));
    // In a larger region (flash), the header says where the file ends.
    let mut region = good.bytes().to_vec();
    region.extend_from_slice(&[0xff; 100]);
    assert_eq!(QModel::announced_len(&region), Ok(n));
    assert!(matches!(QModel::announced_len(&[0; 64]), Err(FormatError::BadMagic { .. })));
    let mut m = Buf::from(good.bytes());
    assert_eq!(QModel::parse(m.misaligned()).map(|_| ()), Err(FormatError::Misaligned));
}

#[test]
fn input_section_roundtrips_and_quantizes_features() {
    let spec = Spec::mlp(&[3, 2]);
    let m = FloatModel::random(spec, 5);
    let (lo, step, mean, std) =
        ([-1.0f32, 0.0, 10.0], [0.01f32, 0.5, 2.0], [0.0f32, 60.0, 200.0], [1.0f32, 30.0, 100.0]);
    let offset: Vec<f32> = mean.iter().zip(&lo).map(|(m, l)| m - l).collect();
    let a = InputAffine {
        in_scale: 1.0,
        gain: PerFeature::Each(&step),
        offset: PerFeature::Each(&offset),
        std: PerFeature::Each(&std),
        section: QInput::AffineU8 { lo: &lo, step: &step },
    };
    let mut buf = Buf::new(encoded_len(&spec, InputKind::AffineU8));
    quantize(&m.layers(), &a, &[], buf.bytes_mut()).unwrap();
    let q = QModel::parse(buf.bytes()).unwrap();
    assert_eq!(q.input(), QInput::AffineU8 { lo: &lo, step: &step });
    let mut bytes = [0u8; 3];
    q.input().quantize_features(&[-0.5, 1000.0, 9.0], &mut bytes);
    assert_eq!(bytes, [50, 255, 0]);
    // The folded model on those bytes tracks the f32 one on the features
    // they stand for.
    let feats = [-0.5f32, 60.0, 300.0];
    q.input().quantize_features(&feats, &mut bytes);
    let x: Vec<f32> = feats.iter().zip(mean.iter().zip(&std)).map(|(r, (m, s))| (r - m) / s).collect();
    let (w, b) = &m.params[0];
    let f: Vec<f32> = (0..2).map(|o| b[o] + (0..3).map(|k| w[o * 3 + k] * x[k]).sum::<f32>()).collect();
    let mut logits = [0i32; 2];
    let mut scratch = [0i16; 16];
    q.classify(&QKernels::BEST, &bytes, &mut scratch, &mut logits);
    let s = q.layer(0).params.out_scale;
    for o in 0..2 {
        assert!((logits[o] as f32 * s - f[o]).abs() < 0.05, "{o}: {} vs {}", logits[o] as f32 * s, f[o]);
    }
    // Slices of the wrong length are refused.
    let bad = InputAffine { std: PerFeature::Each(&std[..2]), ..a };
    assert!(matches!(
        quantize(&m.layers(), &bad, &[], buf.bytes_mut()),
        Err(EncodeError::Input { field: "std", features: 3, found: 2 })
    ));
}

#[test]
fn hidden_layer_without_relu_uses_the_whole_u8_range() {
    let layers = [
        Layer { inputs: 4, outputs: 3, activation: Activation::None },
        Layer { inputs: 3, outputs: 2, activation: Activation::None },
    ];
    let spec = Spec::from_layers(&layers).unwrap();
    let mut m = FloatModel::random(Spec::mlp(&[4, 3, 2]), 3);
    m.spec = spec;
    let ranges = [ActRange { min: -2.0, max: 2.0 }];
    let mut buf = Buf::new(encoded_len(&spec, InputKind::RawU8));
    quantize(&m.layers(), &InputAffine::pixels(0.0, 1.0), &ranges, buf.bytes_mut()).unwrap();
    let q = QModel::parse(buf.bytes()).unwrap();
    let p = q.layer(0).params;
    assert!((127..=128).contains(&p.out_zp) && (p.out_min, p.out_max) == (0, 255), "{p:?}");
    assert_eq!(q.layer(1).params.in_zp, p.out_zp);
}

#[test]
fn sizes_and_scratch() {
    let seed = Spec::mlp(&[784, 512, 512, 10]);
    assert_eq!(scratch_len(&seed), 2 * 784 + 2);
    let weights = 784 * 512 + 512 * 512 + 512 * 10;
    let fields = weights + 16 * (512 + 512 + 10) + 3 * 24;
    // The layout word, then each layer at a 64-byte file offset.
    let len = encoded_len(&seed, InputKind::RawU8);
    assert!(len >= Header::len_for(3) + 4 + fields + 4 && len <= Header::len_for(3) + 4 + fields + 4 + 4 * 64, "{len}");
    let spec = Spec::mlp(&[13, 9, 6, 4]);
    for i in 0..3 {
        assert_eq!((Header::len_for(3) + layout::layer_offset(&spec, i)) % layout::ALIGN, 0);
    }
    assert_eq!(batch_acts_len(&seed, 12), 2 * 12 * 512);
    assert_eq!(batch_acc_len(&seed, 12), 12 * 512);
    assert_eq!(batch_acts_len(&Spec::mlp(&[5, 3]), 4), 0);
}

#[test]
fn rust_module_and_c_header_text() {
    struct W<const N: usize>(heapless::String<N>);
    impl<const N: usize> core::fmt::Write for W<N> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.push_str(s).map_err(|_| core::fmt::Error)
        }
    }
    let blob = golden::blob();
    let g = QModel::parse(&blob.0).unwrap();
    let mut w = W::<2048>(heapless::String::new());
    export::write_rust_module(&g, "model.q8", &mut w).unwrap();
    let s = w.0.as_str();
    assert!(s.contains("pub const MODEL_DIMS: [u32; 4] = [10, 5, 3, 2];"), "{s}");
    assert!(s.contains(&std::format!("pub const MODEL_CRC: u32 = {:#010x};", g.payload_crc())));
    assert!(s.contains(r#"Aligned(*include_bytes!("model.q8"))"#));
    let mut c = W::<8192>(heapless::String::new());
    export::write_c_header(&g, &blob.0, &mut c).unwrap();
    let s = c.0.as_str();
    assert!(
        s.contains(&std::format!(
            "static const uint8_t tailor_model_q8[{}] __attribute__((aligned(64))) = {{\n  84,76,81,56,2,0,3,0,",
            golden::BYTES
        )),
        "{s}"
    );
    assert!(s.contains("#define TAILOR_MODEL_INPUTS 10\n#define TAILOR_MODEL_OUTPUTS 2\n"), "{s}");
    assert!(s.contains(&std::format!("#define TAILOR_MODEL_SCRATCH_BYTES {}\n", 2 * g.scratch_len())), "{s}");
}

/// A random integer model: `(layers, row-major weights, params)` as owned data.
struct RandomQ {
    spec: Spec,
    w: Vec<Vec<i8>>,
    bias: Vec<Vec<i32>>,
    mult: Vec<Vec<i32>>,
    shift: Vec<Vec<i32>>,
    params: Vec<QParams>,
}

impl RandomQ {
    fn new(layers: &[Layer], seed: u64) -> Self {
        let spec = Spec::from_layers(layers).unwrap();
        let mut rng = Rng::new(seed);
        let mut r =
            RandomQ { spec, w: Vec::new(), bias: Vec::new(), mult: Vec::new(), shift: Vec::new(), params: Vec::new() };
        for (i, l) in spec.layers().enumerate() {
            let hidden = i + 1 < spec.depth();
            let o = l.outputs;
            r.w.push((0..o * l.inputs).map(|_| (rng.below(255) as i32 - 127) as i8).collect());
            r.bias.push((0..o).map(|_| rng.below(20_001) as i32 - 10_000).collect());
            r.mult.push((0..o).map(|_| if hidden { (1 << 30) + (rng.next_u32() >> 2) as i32 } else { 0 }).collect());
            r.shift.push((0..o).map(|_| if hidden { rng.below(12) as i32 - 10 } else { 0 }).collect());
            let zp = rng.below(5) as i32;
            let out_min = if l.activation == Activation::Relu { zp } else { 0 };
            r.params.push(QParams { in_scale: 1.0, in_zp: 0, out_scale: 1.0, out_zp: zp, out_min, out_max: 255 });
        }
        r
    }

    fn encode(&self) -> Buf {
        let ones: Vec<Vec<f32>> = self.spec.layers().map(|l| std::vec![1.0; l.outputs]).collect();
        let raw: Vec<RawLayer<'_>> = self
            .spec
            .layers()
            .enumerate()
            .map(|(i, layer)| RawLayer {
                layer,
                params: self.params[i],
                w_scale: &ones[i],
                bias: &self.bias[i],
                multiplier: &self.mult[i],
                shift: &self.shift[i],
                weight: &self.w[i],
            })
            .collect();
        let mut buf = Buf::new(encoded_len(&self.spec, InputKind::RawU8));
        encode_raw(&raw, &QInput::RawU8, buf.bytes_mut()).unwrap();
        buf
    }

    /// The integer math written out directly on row-major weights.
    fn reference(&self, input: &[u8]) -> (usize, Vec<i32>) {
        let mut x: Vec<i64> = input.iter().map(|&v| v as i64).collect();
        for (i, l) in self.spec.layers().enumerate() {
            let acc: Vec<i32> = (0..l.outputs)
                .map(|o| {
                    let s: i64 = (0..l.inputs).map(|k| x[k] * self.w[i][o * l.inputs + k] as i64).sum();
                    (s as i32).wrapping_add(self.bias[i][o])
                })
                .collect();
            if i + 1 == self.spec.depth() {
                let acc: Vec<i32> =
                    acc.into_iter().map(|a| if l.activation == Activation::Relu { a.max(0) } else { a }).collect();
                return (crate::loss::argmax(&acc), acc);
            }
            let p = self.params[i];
            x = acc
                .iter()
                .enumerate()
                .map(|(o, &a)| {
                    (p.out_zp + mbqm(a, self.mult[i][o], self.shift[i][o])).clamp(p.out_min, p.out_max) as i64
                })
                .collect();
        }
        unreachable!()
    }
}

fn random_layers(dims: &[usize], acts: &[bool]) -> Vec<Layer> {
    dims.windows(2)
        .zip(acts)
        .map(|(w, &relu)| Layer {
            inputs: w[0],
            outputs: w[1],
            activation: if relu { Activation::Relu } else { Activation::None },
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `classify` (every kernel) and `classify_batch` (every kernel, two
    /// batch sizes) equal the integer math written out, for depths 1, 2,
    /// 3 and 5 with random widths and activations.
    #[test]
    fn classify_equals_naive_reference(
        depth in prop::sample::select(std::vec![1usize, 2, 3, 5]),
        widths in prop::collection::vec(1usize..=19, 6),
        acts in prop::collection::vec(any::<bool>(), 5),
        seed in any::<u64>(),
    ) {
        let layers = random_layers(&widths[..depth + 1], &acts[..depth]);
        let r = RandomQ::new(&layers, seed);
        let buf = r.encode();
        let q = QModel::parse(buf.bytes()).unwrap();
        let n_in = widths[0];
        let n = 9;
        let inputs: Vec<u8> = images(1, n * n_in, seed ^ 1).remove(0);
        let want: Vec<(usize, Vec<i32>)> = (0..n).map(|i| r.reference(&inputs[i * n_in..][..n_in])).collect();
        let mut scratch = std::vec![0i16; q.scratch_len() + 1];
        let n_out = widths[depth];
        for k in all_kernels() {
            for (i, w) in want.iter().enumerate() {
                let mut l = [0i32; 19];
                let c = q.classify(&k, &inputs[i * n_in..][..n_in], &mut scratch[i % 2..], &mut l);
                prop_assert_eq!((c, &l[..n_out]), (w.0, &w.1[..]), "{} sample {}", k.name, i);
            }
            for batch in [1usize, 4] {
                let mut acts = std::vec![0u8; batch_acts_len(q.spec(), batch)];
                let mut acc = std::vec![0i32; batch_acc_len(q.spec(), batch)];
                let mut seen = 0;
                q.classify_batch(&k, &inputs, n, QBatchScratch { acts: &mut acts, acc: &mut acc }, |i, c, l| {
                    assert_eq!((i, c, l), (seen, want[i].0, &want[i].1[..]), "{} batch {}", k.name, batch);
                    seen += 1;
                });
                prop_assert_eq!(seen, n);
            }
        }
    }
}

/// A head's features are the last layer's input: running the last layer on
/// them gives `classify`'s logits.
#[test]
fn features_feed_the_last_layer() {
    let spec = Spec::mlp(&[13, 9, 6, 4]);
    let imgs = images(8, 13, 2);
    let (_, buf) = quantize_random(spec, 3, &imgs);
    let m = QModel::parse(buf.bytes()).unwrap();
    let mut scratch = std::vec![0i16; m.scratch_len() + 1];
    for img in &imgs {
        let mut want = [0i32; 4];
        m.classify(&QKernels::NAIVE, img, &mut scratch, &mut want);
        let mut f = [0u8; 6];
        assert_eq!(m.features(&QKernels::NAIVE, img, &mut scratch[1..], &mut f), 6);
        let x: std::vec::Vec<i16> = f.iter().map(|&v| v as i16).collect();
        let mut got = [0i32; 4];
        m.layer(2).accumulate(&QKernels::NAIVE, &x, &mut got);
        assert_eq!(got, want);
    }
    let one = Spec::mlp(&[13, 4]);
    let (_, buf) = quantize_random(one, 3, &imgs);
    assert_eq!(QModel::parse(buf.bytes()).unwrap().features(&QKernels::NAIVE, &imgs[0], &mut scratch, &mut [0; 4]), 0);
}

/// Found by the `q8` fuzz target: a model that parses, with a hidden
/// layer's output zero point near `i32::MAX`, made `classify` panic on
/// `out_zp + mbqm(…)` overflowing (debug and test builds). Every kernel set
/// now gives the same classes as the naive one, without a panic.
#[test]
fn an_extreme_zero_point_does_not_overflow() {
    let bytes = include_bytes!("../../../fuzz/regressions/q8/out-zp-overflow");
    let buf = Buf::from(bytes);
    let m = QModel::parse(buf.bytes()).unwrap();
    let spec = *m.spec();
    let input: Vec<u8> = (0..spec.inputs()).map(|i| (i * 37) as u8).collect();
    let mut scratch = std::vec![0i16; m.scratch_len()];
    let mut want = std::vec![0i32; spec.outputs()];
    let class = m.classify(&QKernels::NAIVE, &input, &mut scratch, &mut want);
    for k in all_kernels() {
        let mut logits = std::vec![0i32; spec.outputs()];
        assert_eq!(m.classify(&k, &input, &mut scratch, &mut logits), class);
        assert_eq!(logits, want);
    }
}
