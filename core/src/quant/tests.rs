extern crate std;
use super::golden::{self, Golden};
use super::*;
use crate::format::{FormatError, Header};
const HEADER_LEN: usize = Header::len_for(3);
use crate::rng::Rng;

fn all_kernels() -> [QKernels; 3] {
    [QKernels::NAIVE, QKernels::PORTABLE, QKernels::BEST]
}

#[test]
fn golden_values_on_every_kernel() {
    let m = golden::model();
    for k in all_kernels() {
        let mut x = Aligned([0i16; 10]);
        widen(&golden::INPUT, &mut x.0);
        let mut acc1 = [0i32; 5];
        m.l1.accumulate(&k, &x.0, &mut acc1);
        assert_eq!(acc1, golden::EXPECTED_ACC1, "{}", k.name);
        let mut h1 = Aligned([0i16; 5]);
        m.l1.forward_hidden(&k, &x.0, &mut h1.0);
        assert_eq!(h1.0.map(|v| v as u8), golden::EXPECTED_ACT1);
        let mut acc2 = [0i32; 3];
        m.l2.accumulate(&k, &h1.0, &mut acc2);
        assert_eq!(acc2, golden::EXPECTED_ACC2);
        let mut h2 = Aligned([0i16; 3]);
        m.l2.forward_hidden(&k, &h1.0, &mut h2.0);
        assert_eq!(h2.0.map(|v| v as u8), golden::EXPECTED_ACT2);
        let mut logits = [0i32; 2];
        assert_eq!(m.classify_with(&k, &golden::INPUT, &mut logits), golden::EXPECTED_CLASS);
        assert_eq!(logits, golden::EXPECTED_LOGITS);
    }
    let mut logits = [0i32; 2];
    assert_eq!(m.classify(&golden::INPUT, &mut logits), golden::EXPECTED_CLASS);
    assert_eq!(m.dims(), &[10, 5, 3, 2]);
    for r in 0..5 {
        for k in 0..10 {
            assert_eq!(m.l1.weight_at(r, k), golden::W1[r][k]);
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

type Small = crate::mlp::Mlp<std::vec::Vec<f32>>;
type QSmall = QMlp<13, 9, 6, 4>;

/// f32 reference forward on normalized pixels, returning logits.
fn f32_logits(m: &Small, c: &Calibration, px: &[u8; 13], calib: Option<&mut Calibration>) -> [f32; 4] {
    let x: [f32; 13] = core::array::from_fn(|i| (px[i] as f32 / 255.0 - c.mean) / c.std);
    let (l1, l2, l3) = (m.layer(0), m.layer(1), m.layer(2));
    let h1: [f32; 9] =
        core::array::from_fn(|o| (l1.bias[o] + (0..13).map(|k| l1.weight[o * 13 + k] * x[k]).sum::<f32>()).max(0.0));
    let h2: [f32; 6] =
        core::array::from_fn(|o| (l2.bias[o] + (0..9).map(|k| l2.weight[o * 9 + k] * h1[k]).sum::<f32>()).max(0.0));
    if let Some(cal) = calib {
        cal.h1.observe(&h1);
        cal.h2.observe(&h2);
    }
    core::array::from_fn(|o| l3.bias[o] + (0..6).map(|k| l3.weight[o * 6 + k] * h2[k]).sum::<f32>())
}

fn small_model() -> (Small, QSmall, Calibration, [[u8; 13]; 64]) {
    let spec = crate::spec::Spec::mlp(&[13, 9, 6, 4]);
    let mut m = Small::new(spec, std::vec![0.0; spec.params()]).unwrap();
    m.init(7);
    let mut rng = Rng::new(3);
    let imgs: [[u8; 13]; 64] = core::array::from_fn(|_| core::array::from_fn(|_| rng.next_u32() as u8));
    let mut c = Calibration::new(0.3, 0.35);
    let c0 = c;
    for px in &imgs {
        f32_logits(&m, &c0, px, Some(&mut c));
    }
    let mut q = QSmall::ZERO;
    q.quantize(&m, &c);
    (m, q, c, imgs)
}

#[test]
fn quantized_model_tracks_f32() {
    let (m, q, c, imgs) = small_model();
    assert_eq!(q.l1.in_zp, 0);
    assert_eq!(q.l1.out_zp, 0, "after ReLU the zero point is 0");
    let logit_scale = q.l3.out_scale;
    let mut agree = 0;
    for px in &imgs {
        let f = f32_logits(&m, &c, px, None);
        let mut logits = [0i32; 4];
        let cls = q.classify_with(&QKernels::NAIVE, px, &mut logits);
        for k in all_kernels() {
            let mut l2 = [0i32; 4];
            assert_eq!(q.classify_with(&k, px, &mut l2), cls);
            assert_eq!(l2, logits);
        }
        let mut l4 = [[0i32; 4]; 4];
        let c4 = q.classify4([px, &imgs[0], px, &imgs[1]], &mut l4);
        assert_eq!((c4[0], c4[2], l4[0], l4[2]), (cls, cls, logits, logits));
        let fmax = f.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        for o in 0..4 {
            let deq = logits[o] as f32 * logit_scale;
            assert!((deq - f[o]).abs() < 0.05 * fmax + 0.05, "logit {o}: int8 {deq} vs f32 {}", f[o]);
        }
        let fcls = (0..4).fold(0, |b, i| if f[i] > f[b] { i } else { b });
        agree += (fcls == cls) as usize;
    }
    assert!(agree >= 60, "argmax agreement {agree}/64");
}

#[test]
fn q8_roundtrip_and_every_error() {
    let (_, q, _, _) = small_model();
    let mut buf = [0u8; 2048];
    let n = q.to_bytes(&mut buf);
    assert_eq!(n, q.encoded_len());
    let bytes = &buf[..n];
    let mut back = QSmall::ZERO;
    back.read(bytes).unwrap();
    assert!(back == q);
    assert_eq!(q.payload_crc(), crate::format::crc32(&bytes[HEADER_LEN..]));
    assert_eq!(&bytes[..4], b"TLQ8");

    let mut t = QSmall::ZERO;
    assert!(matches!(t.read(&bytes[..10]), Err(FormatError::Truncated { needed: 48, found: 10 })));
    assert!(matches!(t.read(&bytes[..n - 1]), Err(FormatError::Truncated { .. })));
    let mut bad = [0u8; 2048];
    bad[..n].copy_from_slice(bytes);
    bad[0] = b'X';
    assert!(matches!(t.read(&bad[..n]), Err(FormatError::BadMagic { .. })));
    bad[..n].copy_from_slice(bytes);
    bad[4] = 9;
    assert!(matches!(t.read(&bad[..n]), Err(FormatError::BadVersion { found: 9, .. })));
    let mut other = QMlp::<13, 9, 7, 4>::ZERO;
    assert!(matches!(other.read(bytes), Err(FormatError::ShapeMismatch)));
    let mut one = QMlp1::<13, 9, 4>::ZERO;
    assert!(matches!(one.read(bytes), Err(FormatError::ShapeMismatch)));
    bad[..n].copy_from_slice(bytes);
    bad[n - 5] ^= 0x40;
    assert!(matches!(t.read(&bad[..n]), Err(FormatError::Checksum { .. })));
    bad[..n].copy_from_slice(bytes);
    assert!(matches!(t.read(&bad[..n + 3]), Err(FormatError::TrailingBytes { count: 3 })));
    // A CRC-valid payload with the wrong layout id: rejected, not misread.
    bad[..n].copy_from_slice(bytes);
    bad[HEADER_LEN] = 7;
    let h = Header::new(MAGIC, crate::spec::Spec::mlp(&QSmall::DIMS.map(|d| d as usize)), &bad[HEADER_LEN..n]);
    h.encode(&mut bad);
    assert_eq!(t.read(&bad[..n]), Err(FormatError::Payload));
    // Every truncation is an error, never a panic.
    for cut in 0..n {
        assert!(t.read(&bytes[..cut]).is_err());
    }
}

#[test]
fn payload_is_postcard() {
    #[derive(serde::Deserialize)]
    struct Layer<'a> {
        in_scale: f32,
        in_zp: i32,
        _out_scale: f32,
        out_zp: i32,
        _out_min: i32,
        out_max: i32,
        w_scale: heapless::Vec<f32, 16>,
        bias: heapless::Vec<i32, 16>,
        multiplier: heapless::Vec<i32, 16>,
        shift: heapless::Vec<i32, 16>,
        #[serde(borrow)]
        weight: &'a [u8],
    }
    #[derive(serde::Deserialize)]
    struct Payload<'a> {
        layout: u32,
        #[serde(borrow)]
        l1: Layer<'a>,
        #[serde(borrow)]
        _l2: Layer<'a>,
        #[serde(borrow)]
        l3: Layer<'a>,
    }
    let (_, q, _, _) = small_model();
    let mut buf = [0u8; 2048];
    let n = q.to_bytes(&mut buf);
    let p: Payload = postcard::from_bytes(&buf[HEADER_LEN..n]).unwrap();
    assert_eq!(p.layout, LAYOUT_ID);
    assert_eq!((p.l1.in_scale, p.l1.in_zp, p.l1.out_zp, p.l1.out_max), (q.l1.in_scale, 0, q.l1.out_zp, 255));
    assert_eq!(&p.l1.w_scale[..], &q.l1.w_scale[..]);
    assert_eq!(&p.l1.bias[..], &q.l1.bias[..]);
    assert_eq!(&p.l1.multiplier[..], &q.l1.multiplier[..]);
    assert_eq!(&p.l1.shift[..], &q.l1.shift[..]);
    assert_eq!(p.l3.weight.len(), 24);
    assert!(p.l3.weight.iter().zip(q.l3.packed()).all(|(&a, &b)| a as i8 == b));
}

#[test]
fn bin_image_is_the_memory_layout() {
    let g = golden::model();
    let mut buf = [0u8; 512];
    let n = g.write_bin(&mut buf);
    assert_eq!(n, Golden::BIN_BYTES);
    assert_eq!(n, core::mem::size_of::<Golden>());
    let mut arr = [0u8; core::mem::size_of::<Golden>()];
    arr.copy_from_slice(&buf[..n]);
    // What the generated firmware module does.
    let back: Golden = unsafe { core::mem::transmute(arr) };
    assert!(back == g);
    let mut logits = [0i32; 2];
    assert_eq!(back.classify(&golden::INPUT, &mut logits), golden::EXPECTED_CLASS);
}

#[test]
fn seed_sizes_and_scratch() {
    assert_eq!(<SeedQMlp as Classifier>::SCRATCH_BYTES, 2 * 512 + 2 * 784);
    assert_eq!(<QMlp1<784, 128, 10> as Classifier>::SCRATCH_BYTES, 2 * 784 + 2 * 128);
    let weights = 784 * 512 + 512 * 512 + 512 * 10;
    assert_eq!(SeedQMlp::BIN_BYTES, weights + 16 * (512 + 512 + 10) + 3 * 24);
}

#[test]
fn rust_module_and_c_header_text() {
    struct W<const N: usize>(heapless::String<N>);
    impl<const N: usize> core::fmt::Write for W<N> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.push_str(s).map_err(|_| core::fmt::Error)
        }
    }
    let g = golden::model();
    let mut w = W::<2048>(heapless::String::new());
    export::write_rust_module(&g, 0xdead_beef, "model.bin", &mut w).unwrap();
    let s = w.0.as_str();
    assert!(s.contains("pub type Model = tailor_core::quant::QMlp<10, 5, 3, 2>;"), "{s}");
    assert!(s.contains("pub const MODEL_DIMS: [u32; 4] = [10, 5, 3, 2];"));
    assert!(s.contains("pub const MODEL_CRC: u32 = 0xdeadbeef;"));
    assert!(s.contains(r#"core::mem::transmute(*include_bytes!("model.bin"))"#));
    let mut c = W::<8192>(heapless::String::new());
    export::write_c_header(&g, 0x1234, &mut c).unwrap();
    let s = c.0.as_str();
    assert!(s.contains("static const int8_t tailor_l1_weight[50] = {"), "{s}");
    assert!(s.contains("static const int32_t tailor_l2_bias[3] = {\n  -40,300,-1000,"));
    assert!(s.contains("#define TAILOR_L1_OUT_ZP 3"));
}

#[test]
fn one_hidden_layer_variant() {
    let spec = crate::spec::Spec::mlp(&[13, 8, 3]);
    let mut m = Small::new(spec, std::vec![0.0; spec.params()]).unwrap();
    m.init(1);
    let (l1, l2) = (m.layer(0), m.layer(1));
    let mut c = Calibration::new(0.0, 1.0);
    c.h1 = ActRange { min: 0.0, max: 2.0 };
    let mut q = QMlp1::<13, 8, 3>::ZERO;
    q.quantize(&l1, &l2, &c);
    let px = [200u8; 13];
    let mut logits = [0i32; 3];
    let cls = q.classify(&px, &mut logits);
    assert_eq!(cls, argmax(&logits));
    let mut buf = [0u8; 1024];
    let n = q.to_bytes(&mut buf);
    let mut back = QMlp1::<13, 8, 3>::ZERO;
    back.read(&buf[..n]).unwrap();
    assert!(back == q);
    assert_eq!(back.dims(), &[13, 8, 3]);
}
