//! The `.q8` file: [`crate::format::Header`] (magic `TLQ8`, version 1, the
//! layer widths, payload length and CRC-32) then a postcard payload:
//!
//! ```text
//! payload = (layout: u32 = LAYOUT_ID, layer 1, layer 2[, layer 3])   postcard tuple
//! layer   = (in_scale: f32, in_zp: i32, out_scale: f32, out_zp: i32,
//!            out_min: i32, out_max: i32,
//!            w_scale: seq<f32>, bias: seq<i32>, multiplier: seq<i32>,
//!            shift: seq<i32>, weight: bytes)          // weight: packed layout
//! ```
//!
//! postcard encodes `u32` as a LEB128 varint, `i32` as a zigzag varint,
//! `f32` as 4 bytes LE, `seq` as varint length + elements, `bytes` as varint
//! length + raw bytes, tuples as their fields in order. The encoder below
//! writes those bytes directly through a sink (slice, byte counter or CRC),
//! so that the 0.7 MB model is never copied; a test checks that
//! `postcard::from_bytes` reads the same payload.

use super::{QDense, QMlp, QMlp1, LAYOUT_ID, MAGIC, VERSION};
use crate::format::{crc32, FormatError, Header};
use crate::spec::Spec;

trait Sink {
    fn put(&mut self, b: &[u8]);
}

struct Count(usize);
impl Sink for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
}

struct Slice<'a> {
    buf: &'a mut [u8],
    pos: usize,
}
impl Sink for Slice<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
}

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
struct CrcSink(crc::Digest<'static, u32>);
impl Sink for CrcSink {
    fn put(&mut self, b: &[u8]) {
        self.0.update(b);
    }
}

fn varint(s: &mut dyn Sink, mut v: u32) {
    let mut b = [0u8; 5];
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            b[n] = byte;
            n += 1;
            break;
        }
        b[n] = byte | 0x80;
        n += 1;
    }
    s.put(&b[..n]);
}

fn i32z(s: &mut dyn Sink, v: i32) {
    varint(s, ((v << 1) ^ (v >> 31)) as u32);
}

fn f32le(s: &mut dyn Sink, v: f32) {
    s.put(&v.to_le_bytes());
}

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn varint(&mut self) -> Result<u32, FormatError> {
        let mut v: u32 = 0;
        for (i, &byte) in self.0.iter().enumerate().take(5) {
            v |= ((byte & 0x7f) as u32) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(v);
            }
        }
        Err(FormatError::Payload)
    }
    fn i32z(&mut self) -> Result<i32, FormatError> {
        let u = self.varint()?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }
    fn f32le(&mut self) -> Result<f32, FormatError> {
        if self.0.len() < 4 {
            return Err(FormatError::Payload);
        }
        let v = f32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        self.0 = &self.0[4..];
        Ok(v)
    }
    fn len(&mut self, want: usize, index: usize, name: &'static str) -> Result<(), FormatError> {
        if self.varint()? as usize != want {
            return Err(FormatError::Tensor { index, expected: name });
        }
        Ok(())
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Payload);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
}

/// Names reported in [`FormatError::Tensor`]: `index = 5·layer + field`.
const FIELD_NAMES: [[&str; 5]; 3] = [
    ["l1.w_scale", "l1.bias", "l1.multiplier", "l1.shift", "l1.weight"],
    ["l2.w_scale", "l2.bias", "l2.multiplier", "l2.shift", "l2.weight"],
    ["l3.w_scale", "l3.bias", "l3.multiplier", "l3.shift", "l3.weight"],
];

/// A layer as the payload sees it (object-safe over the const generics).
trait LayerWire {
    fn encode(&self, s: &mut dyn Sink);
    fn decode(&mut self, r: &mut Rd<'_>, layer: usize) -> Result<(), FormatError>;
}

impl<const I: usize, const O: usize> LayerWire for QDense<I, O> {
    fn encode(&self, s: &mut dyn Sink) {
        f32le(s, self.in_scale);
        i32z(s, self.in_zp);
        f32le(s, self.out_scale);
        i32z(s, self.out_zp);
        i32z(s, self.out_min);
        i32z(s, self.out_max);
        varint(s, O as u32);
        for &v in &self.w_scale {
            f32le(s, v);
        }
        for arr in [&self.bias, &self.multiplier, &self.shift] {
            varint(s, O as u32);
            for &v in arr.iter() {
                i32z(s, v);
            }
        }
        let w = self.weight.as_flattened();
        varint(s, w.len() as u32);
        // SAFETY: i8 and u8 have the same size and alignment.
        s.put(unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, w.len()) });
    }

    fn decode(&mut self, r: &mut Rd<'_>, layer: usize) -> Result<(), FormatError> {
        let names = FIELD_NAMES[layer];
        self.in_scale = r.f32le()?;
        self.in_zp = r.i32z()?;
        self.out_scale = r.f32le()?;
        self.out_zp = r.i32z()?;
        self.out_min = r.i32z()?;
        self.out_max = r.i32z()?;
        r.len(O, 5 * layer, names[0])?;
        for v in self.w_scale.iter_mut() {
            *v = r.f32le()?;
        }
        for (f, arr) in [&mut self.bias, &mut self.multiplier, &mut self.shift].into_iter().enumerate() {
            r.len(O, 5 * layer + 1 + f, names[1 + f])?;
            for v in arr.iter_mut() {
                *v = r.i32z()?;
            }
        }
        r.len(O * I, 5 * layer + 4, names[4])?;
        let b = r.bytes(O * I)?;
        for (d, &s) in self.weight.as_flattened_mut().iter_mut().zip(b) {
            *d = s as i8;
        }
        Ok(())
    }
}

fn encode_payload(layers: &[&dyn LayerWire], s: &mut dyn Sink) {
    varint(s, LAYOUT_ID);
    for l in layers {
        l.encode(s);
    }
}

fn payload_len(layers: &[&dyn LayerWire]) -> usize {
    let mut c = Count(0);
    encode_payload(layers, &mut c);
    c.0
}

fn payload_crc(layers: &[&dyn LayerWire]) -> u32 {
    let mut c = CrcSink(CRC.digest());
    encode_payload(layers, &mut c);
    c.0.finalize()
}

fn spec_of(dims: &[u32]) -> Spec {
    let mut d = [0usize; 4];
    for (a, &b) in d.iter_mut().zip(dims) {
        *a = b as usize;
    }
    Spec::mlp(&d[..dims.len()])
}

fn to_bytes(layers: &[&dyn LayerWire], dims: &[u32], out: &mut [u8]) -> usize {
    let n = payload_len(layers);
    let spec = spec_of(dims);
    let hl = Header::len_for(spec.depth());
    let total = hl + n;
    assert!(out.len() >= total, "to_bytes: buffer of {} bytes, need {total} (see encoded_len)", out.len());
    let mut s = Slice { buf: &mut out[hl..total], pos: 0 };
    encode_payload(layers, &mut s);
    let h = Header::new(MAGIC, spec, &out[hl..total]);
    debug_assert_eq!(h.payload_crc, crc32(&out[hl..total]));
    h.encode(out);
    total
}

fn read(layers: &mut [&mut dyn LayerWire], dims: &[u32], bytes: &[u8]) -> Result<Header, FormatError> {
    let (h, payload) = Header::parse(bytes, MAGIC)?;
    // Version 1 differs only in its header.
    if h.version != VERSION && h.version != 1 {
        return Err(FormatError::BadVersion { supported: VERSION, found: h.version });
    }
    let want = spec_of(dims);
    if h.spec != want {
        return Err(FormatError::ShapeMismatch);
    }
    let mut r = Rd(payload);
    if r.varint()? != LAYOUT_ID {
        return Err(FormatError::Payload);
    }
    for (i, l) in layers.iter_mut().enumerate() {
        l.decode(&mut r, i)?;
    }
    if !r.0.is_empty() {
        return Err(FormatError::TrailingBytes { count: r.0.len() });
    }
    Ok(h)
}

macro_rules! wire_impl {
    ($ty:ident <$($c:ident),*>, $($l:ident),*) => {
        impl<$(const $c: usize),*> $ty<$($c),*> {
            fn wire_layers(&self) -> [&dyn LayerWire; wire_impl!(@count $($l)*)] {
                [$(&self.$l as &dyn LayerWire),*]
            }

            /// Size of the `.q8` file: header + payload.
            pub fn encoded_len(&self) -> usize {
                Header::len_for(Self::DIMS.len() - 1) + payload_len(&self.wire_layers())
            }

            /// CRC-32 of the `.q8` payload (the header's `payload_crc`;
            /// the firmware reports it as `MODEL_CRC`).
            pub fn payload_crc(&self) -> u32 {
                payload_crc(&self.wire_layers())
            }

            /// Writes the `.q8` file into `out`, returns its length.
            /// Panics if `out` is shorter than [`Self::encoded_len`].
            pub fn to_bytes(&self, out: &mut [u8]) -> usize {
                to_bytes(&self.wire_layers(), &Self::DIMS, out)
            }

            /// Reads a `.q8` file into `self` (caller memory, no copy on the
            /// stack). Checks magic, version, layer widths against the
            /// compiled shape, length and CRC before touching `self`; on an
            /// error in a CRC-valid payload `self` may be partly overwritten.
            pub fn read(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
                let mut ls: [&mut dyn LayerWire; wire_impl!(@count $($l)*)] = [$(&mut self.$l as &mut dyn LayerWire),*];
                read(&mut ls, &Self::DIMS, bytes).map(|_| ())
            }

            /// The raw `repr(C)` image (`export --format bin`): exactly
            /// `size_of::<Self>()` = [`Self::BIN_BYTES`] bytes, little-endian,
            /// which the firmware `transmute`s from `include_bytes!`.
            pub fn write_bin(&self, out: &mut [u8]) -> usize {
                let n = core::mem::size_of::<Self>();
                assert!(out.len() >= n, "write_bin: buffer of {} bytes, need {n}", out.len());
                out[..n].fill(0);
                $(
                    let off = core::mem::offset_of!(Self, $l);
                    self.$l.write_raw(&mut out[off..off + core::mem::size_of_val(&self.$l)]);
                )*
                n
            }
        }
    };
    (@count $($l:ident)*) => { 0 $(+ wire_impl!(@one $l))* };
    (@one $l:ident) => { 1 };
}

wire_impl!(QMlp<IN, H1, H2, OUT>, l1, l2, l3);
wire_impl!(QMlp1<IN, H, OUT>, l1, l2);

impl<const I: usize, const O: usize> QDense<I, O> {
    /// Writes this layer's `repr(C)` bytes (little-endian) field by field into
    /// `out` (`size_of::<Self>()` bytes, padding left as the caller set it).
    fn write_raw(&self, out: &mut [u8]) {
        use core::mem::offset_of;
        fn put(out: &mut [u8], off: usize, words: &[[u8; 4]]) {
            for (i, w) in words.iter().enumerate() {
                out[off + 4 * i..off + 4 * i + 4].copy_from_slice(w);
            }
        }
        let f = |a: &[f32; O]| -> [[u8; 4]; O] { core::array::from_fn(|i| a[i].to_le_bytes()) };
        let g = |a: &[i32; O]| -> [[u8; 4]; O] { core::array::from_fn(|i| a[i].to_le_bytes()) };
        put(out, offset_of!(Self, w_scale), &f(&self.w_scale));
        put(out, offset_of!(Self, bias), &g(&self.bias));
        put(out, offset_of!(Self, multiplier), &g(&self.multiplier));
        put(out, offset_of!(Self, shift), &g(&self.shift));
        put(out, offset_of!(Self, in_scale), &[self.in_scale.to_le_bytes()]);
        put(out, offset_of!(Self, in_zp), &[self.in_zp.to_le_bytes()]);
        put(out, offset_of!(Self, out_scale), &[self.out_scale.to_le_bytes()]);
        put(out, offset_of!(Self, out_zp), &[self.out_zp.to_le_bytes()]);
        put(out, offset_of!(Self, out_min), &[self.out_min.to_le_bytes()]);
        put(out, offset_of!(Self, out_max), &[self.out_max.to_le_bytes()]);
        let w = self.weight.as_flattened();
        let off = offset_of!(Self, weight);
        for (d, &v) in out[off..off + w.len()].iter_mut().zip(w) {
            *d = v as u8;
        }
    }
}
