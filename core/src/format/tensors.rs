//! Tensors as a postcard sequence of `(name: str, shape: seq<u32>, data:
//! seq<f32>)`: PyTorch's state dict with explicit shapes. [`read_tensors`]
//! decodes straight into the caller's buffers (no allocation, any size).

use super::varint::Reader;
use super::FormatError;

/// A tensor to write: state-dict name, PyTorch shape, data.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl serde::Serialize for Tensor<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeTuple};
        struct Shape<'a>(&'a [usize]);
        impl serde::Serialize for Shape<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut q = s.serialize_seq(Some(self.0.len()))?;
                for &d in self.0 {
                    q.serialize_element(&(d as u32))?;
                }
                q.end()
            }
        }
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(self.name)?;
        t.serialize_element(&Shape(self.shape))?;
        t.serialize_element(self.data)?;
        t.end()
    }
}

/// Reads a postcard sequence of tensors into `dest` (name, shape, buffer),
/// requiring each name, shape and length to match. Returns the bytes after it.
pub fn read_tensors<'p>(
    payload: &'p [u8],
    dest: &mut [(&'static str, &[usize], &mut [f32])],
) -> Result<&'p [u8], FormatError> {
    let mut r = Reader(payload);
    let count = r.varint()?;
    if count as usize != dest.len() {
        return Err(FormatError::Tensor {
            index: (count as usize).min(dest.len()),
            expected: dest.get(count as usize).map_or("end of tensors", |d| d.0),
        });
    }
    for (index, (name, shape, buf)) in dest.iter_mut().enumerate() {
        let bad = FormatError::Tensor { index, expected: name };
        let len = r.varint()? as usize;
        if r.bytes(len).ok() != Some(name.as_bytes()) {
            return Err(bad);
        }
        if r.varint()? as usize != shape.len() {
            return Err(bad);
        }
        for &d in shape.iter() {
            if r.varint()? as usize != d {
                return Err(bad);
            }
        }
        if r.varint()? as usize != buf.len() {
            return Err(bad);
        }
        let data = r.bytes(4 * buf.len()).map_err(|_| bad)?;
        for (x, c) in buf.iter_mut().zip(data.chunks_exact(4)) {
            *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    Ok(r.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_roundtrip_through_postcard() {
        let a = [1.0f32, -2.5, 3.25, 0.0, 5.0, 6.0];
        let b = [7.0f32, 8.0];
        let ts = [Tensor { name: "w", shape: &[2, 3], data: &a }, Tensor { name: "b", shape: &[2], data: &b }];
        let mut buf = [0u8; 128];
        let used = postcard::to_slice(&ts[..], &mut buf).unwrap().len();
        let (mut a2, mut b2) = ([0.0f32; 6], [0.0f32; 2]);
        {
            let mut dest = [("w", &[2usize, 3][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
            let rest = read_tensors(&buf[..used], &mut dest).unwrap();
            assert!(rest.is_empty());
        }
        assert_eq!((a2, b2), (a, b));
        // Wrong name, wrong shape, truncated: errors, never panics.
        let mut dest = [("x", &[2usize, 3][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
        assert_eq!(read_tensors(&buf[..used], &mut dest), Err(FormatError::Tensor { index: 0, expected: "x" }));
        let mut dest = [("w", &[3usize, 2][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
        assert!(read_tensors(&buf[..used], &mut dest).is_err());
        for cut in 0..used {
            let mut dest = [("w", &[2usize, 3][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
            assert!(read_tensors(&buf[..cut], &mut dest).is_err());
        }
    }
}
