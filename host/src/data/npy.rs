//! NumPy `.npy` files: magic `\x93NUMPY`, version, a little-endian header
//! length, a Python dict literal `{'descr': '<f4', 'fortran_order': False,
//! 'shape': (N, F), }`, then the raw array. Written by hand rather than with
//! a crate: the subset needed here is small, and every malformed case gets
//! its own message.

use std::path::Path;

use super::input::Input;
use super::{check_labels, DataError, Features, Loc, Split};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
pub const FEATURE_DTYPES: &str = "'|u1' (uint8), '<f4' (float32)";
pub const LABEL_DTYPES: &str = "'|u1', '|i1', '<i2', '<i4', '<i8', '<u2', '<u4', '<u8'";

/// Label dtypes: name, bytes, signed.
const LABEL_TYPES: [(&str, usize, bool); 8] = [
    ("|u1", 1, false),
    ("|i1", 1, true),
    ("<i2", 2, true),
    ("<i4", 4, true),
    ("<i8", 8, true),
    ("<u2", 2, false),
    ("<u4", 4, false),
    ("<u8", 8, false),
];

#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<u64>,
}

fn read_header(r: &mut Input) -> Result<Header, DataError> {
    let mut pre = [0u8; 8];
    let got = r.read_full(&mut pre)?;
    if got < 6 || pre[..6] != MAGIC[..] {
        return Err(DataError::NpyMagic { file: r.file.clone(), found: pre[..got.min(6)].to_vec() });
    }
    if got < 8 {
        return Err(DataError::Truncated { file: r.file.clone(), part: "header", expected: 8, found: got as u64 });
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2 | 3, 0) => 4,
        _ => return Err(DataError::NpyVersion { file: r.file.clone(), major, minor }),
    };
    let lb = r.header_bytes(len_bytes, "header")?;
    let len = lb.iter().rev().fold(0u64, |acc, &b| acc << 8 | b as u64);
    let dict = r.header_bytes(len, "header")?;
    let bad = |problem: String| DataError::NpyHeader { file: r.file.clone(), problem };
    let text = std::str::from_utf8(&dict).map_err(|_| bad("not UTF-8".into()))?;
    parse_dict(text).map_err(bad)
}

#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// A cursor over the header's dict literal.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn eat(&mut self, c: u8) -> bool {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        let hit = self.s.get(self.i) == Some(&c);
        self.i += hit as usize;
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", c as char, self.i))
        }
    }

    fn word(&mut self) -> &str {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    fn string(&mut self) -> Result<String, String> {
        let q = if self.eat(b'\'') { b'\'' } else { self.expect(b'"').map(|_| b'"')? };
        let len = self.s[self.i..].iter().position(|&c| c == q).ok_or("unterminated string")?;
        let s = String::from_utf8_lossy(&self.s[self.i..self.i + len]).into_owned();
        self.i += len + 1;
        Ok(s)
    }

    fn value(&mut self) -> Result<Value, String> {
        if self.eat(b'(') {
            let mut dims = Vec::new();
            while !self.eat(b')') {
                let w = self.word();
                // Python 2 wrote longs as `3L`.
                let digits = w.strip_suffix('L').unwrap_or(w);
                dims.push(digits.parse().map_err(|_| format!("bad dimension {w:?} in shape"))?);
                if !self.eat(b',') {
                    self.expect(b')')?;
                    break;
                }
            }
            return Ok(Value::Tuple(dims));
        }
        let at = self.i;
        if self.eat(b'\'') || self.eat(b'"') {
            self.i = at;
            return self.string().map(Value::Str);
        }
        match self.word() {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            w => Err(format!("unexpected value {w:?}")),
        }
    }
}

fn parse_dict(text: &str) -> Result<Header, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    while !p.eat(b'}') {
        let key = p.string()?;
        p.expect(b':')?;
        match (key.as_str(), p.value()?) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            (k @ ("descr" | "fortran_order" | "shape"), v) => return Err(format!("{k:?} has the wrong type: {v:?}")),
            _ => {}
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    if !text[p.i..].trim().is_empty() {
        return Err(format!("unexpected text after the dict: {:?}", text[p.i..].trim()));
    }
    Ok(Header {
        descr: descr.ok_or("no 'descr' key")?,
        fortran: fortran.ok_or("no 'fortran_order' key")?,
        shape: shape.ok_or("no 'shape' key")?,
    })
}

fn open(path: &Path) -> Result<(Input, Header), DataError> {
    let mut r = Input::open(path)?;
    let h = read_header(&mut r)?;
    if h.fortran {
        return Err(DataError::NpyFortran { file: path.to_path_buf() });
    }
    Ok((r, h))
}

/// Read a features array: `[N, F]` or `[N, H, W]` (flattened), `|u1` or
/// `<f4`. Returns the features and the width.
pub fn read_features(path: &Path) -> Result<(Features, usize), DataError> {
    let (mut r, h) = open(path)?;
    let item = match h.descr.as_str() {
        "|u1" => 1,
        "<f4" => 4,
        _ => return Err(DataError::NpyDtype { file: path.to_path_buf(), found: h.descr, accepted: FEATURE_DTYPES }),
    };
    let shape_err = |expected| DataError::BadShape { file: path.to_path_buf(), shape: h.shape.clone(), expected };
    if !(2..=3).contains(&h.shape.len()) {
        return Err(shape_err("2 or 3 dimensions: [N, features] or [N, H, W]"));
    }
    let width = h.shape[1..]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| shape_err("a size that fits in memory"))?;
    if width == 0 {
        return Err(shape_err("at least one feature per sample"));
    }
    let row = usize::try_from(width * item).map_err(|_| shape_err("a size that fits in memory"))?;
    let bytes = r.body(h.shape[0], row)?;
    let width = width as usize;
    if item == 1 {
        return Ok((Features::U8(bytes), width));
    }
    let f: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(k) = f.iter().position(|v| !v.is_finite()) {
        return Err(DataError::NotFinite {
            file: path.to_path_buf(),
            at: Loc::Index(k / width),
            column: format!("feature {}", k % width),
            value: f[k].to_string(),
        });
    }
    Ok((Features::F32(f), width))
}

/// Read a labels array: shape `[N]`, any integer dtype of
/// [`LABEL_DTYPES`]; every value must fit a `u8`.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let (mut r, h) = open(path)?;
    let Some(&(_, size, signed)) = LABEL_TYPES.iter().find(|t| t.0 == h.descr) else {
        return Err(DataError::NpyDtype { file: path.to_path_buf(), found: h.descr, accepted: LABEL_DTYPES });
    };
    if h.shape.len() != 1 {
        return Err(DataError::BadShape { file: path.to_path_buf(), shape: h.shape, expected: "1 dimension: [N]" });
    }
    let bytes = r.body(h.shape[0], size)?;
    let mut labels = Vec::with_capacity(bytes.len() / size);
    for (i, b) in bytes.chunks_exact(size).enumerate() {
        let mut le = [0u8; 16];
        le[..size].copy_from_slice(b);
        if signed && b[size - 1] & 0x80 != 0 {
            le[size..].fill(0xff);
        }
        let v = i128::from_le_bytes(le);
        let l = u8::try_from(v).map_err(|_| DataError::BadLabel {
            file: path.to_path_buf(),
            at: Loc::Index(i),
            column: None,
            value: v.to_string(),
            expected: "an integer class in 0..=255".into(),
        })?;
        labels.push(l);
    }
    Ok(labels)
}

/// Read `NAME_x.npy` and `NAME_y.npy` into a checked [`Split`]; labels must
/// be below `classes` when given.
pub fn read_split(x: &Path, y: &Path, classes: Option<usize>) -> Result<Split, DataError> {
    let (features, width) = read_features(x)?;
    let labels = read_labels(y)?;
    let n = features.len() / width;
    if n != labels.len() {
        return Err(DataError::CountMismatch {
            features_file: x.to_path_buf(),
            samples: n,
            labels_file: y.to_path_buf(),
            labels: labels.len(),
        });
    }
    check_labels(y, &labels, classes)?;
    Ok(Split { features, labels, width })
}

/// The bytes of an NPY version 1.0 file holding `data` (already in
/// `descr`'s byte order) with `shape`; for tests and for exporting data.
pub fn npy_bytes(descr: &str, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads so the data starts on a 64-byte boundary.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}
