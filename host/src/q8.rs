//! `.q8` files on the host: read into a cache-line-aligned buffer (so
//! `QModel::parse` reads them in place, each layer's weights on a line of
//! their own), version-1 files converted in
//! memory with a notice, and `tailor convert`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tailor_core::quant::{legacy, QModel};

/// A `.q8` file's bytes at a 64-byte aligned address.
#[derive(Clone)]
pub struct Q8 {
    lines: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

impl std::fmt::Debug for Q8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Q8({} bytes)", self.len)
    }
}

impl Q8 {
    /// `len` zero bytes, to write a model into.
    pub fn zeroed(len: usize) -> Self {
        Q8 { lines: vec![Line([0; 64]); len.div_ceil(64)], len }
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut q = Q8::zeroed(bytes.len());
        q.bytes_mut().copy_from_slice(bytes);
        q
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` bytes; any bits are valid u8.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u8, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed uniquely.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut u8, self.len) }
    }

    /// Keeps the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The checked model view.
    pub fn model(&self) -> Result<QModel<'_>> {
        QModel::parse(self.bytes()).map_err(|e| anyhow!("{e}"))
    }
}

/// Converts version-1 bytes to version 2 (`None` if `bytes` is not version 1).
pub fn convert_v1(bytes: &[u8]) -> Option<Result<Q8>> {
    let (spec, payload) = match legacy::detect(bytes)? {
        Ok(x) => x,
        Err(e) => return Some(Err(anyhow!("a version-1 .q8 that does not check: {e}"))),
    };
    // Each weight takes a byte of the payload: a header announcing more is
    // corrupt, and is refused before the converted model is allocated.
    let weights = spec.layers().fold(0usize, |n, l| n.saturating_add(l.inputs.saturating_mul(l.outputs)));
    if payload.len() < weights {
        return Some(Err(anyhow!(
            "a version-1 .q8 whose model {spec} has {weights} weights, but whose payload has only {} bytes",
            payload.len()
        )));
    }
    let mut q = Q8::zeroed(legacy::converted_len(&spec));
    Some(
        legacy::convert(bytes, q.bytes_mut())
            .map(|n| {
                q.truncate(n);
                q
            })
            .map_err(|e| anyhow!("converting a version-1 .q8: {e}")),
    )
}

/// Reads a `.q8` and checks it. A version-1 file is converted in memory,
/// with a one-line notice on stderr naming the command that converts it
/// for good.
pub fn load(path: &Path) -> Result<Q8> {
    let bytes = crate::read::regular_file(path, "int8 model")?;
    if bytes.len() >= 4 && &bytes[..4] == b"TLRF" {
        bail!("{}: this is an f32 checkpoint; run `tailor quantize` on it first", path.display());
    }
    let q = match convert_v1(&bytes) {
        Some(c) => {
            let q = c.with_context(|| path.display().to_string())?;
            eprintln!(
                "note: {} is a version-1 .q8, converted in memory (`tailor convert {} --out NEW.q8` converts the file)",
                path.display(),
                path.display()
            );
            q
        }
        None => Q8::from_bytes(&bytes),
    };
    let m = q.model().with_context(|| format!("{}: not a valid int8 model (.q8)", path.display()))?;
    crate::numerics::check_q8(&m, &path.display().to_string())?;
    Ok(q)
}

/// `tailor convert OLD.q8 --out NEW.q8`: writes the version-2 file.
pub fn convert_file(old: &Path, out: &Path) -> Result<Q8> {
    let bytes = crate::read::regular_file(old, "int8 model")?;
    let q = match convert_v1(&bytes) {
        Some(c) => c.with_context(|| old.display().to_string())?,
        None => {
            let q = Q8::from_bytes(&bytes);
            q.model().with_context(|| format!("{}: not a .q8 (version 1 or 2)", old.display()))?;
            eprintln!("note: {} is already version 2; copied", old.display());
            q
        }
    };
    crate::numerics::check_q8(&q.model()?, &old.display().to_string())?;
    crate::output::write(out, q.bytes(), &[old.to_path_buf()])?;
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden").join(name)
    }

    /// Found by the `q8_v1` fuzz target: a header (CRCs right) whose
    /// payload starts like a version-1 one, for a 13-9-173539334-4 model in
    /// 518 bytes, made `convert_v1` allocate gigabytes for the converted model.
    #[test]
    fn a_version_1_header_announcing_more_than_its_payload_is_refused_before_allocating() {
        let bytes = include_bytes!("../../fuzz/regressions/q8_v1/huge-model-small-payload");
        let e = convert_v1(bytes).expect("detected as version 1").unwrap_err().to_string();
        assert!(e.contains("payload has only"), "{e}");
    }

    #[test]
    fn version_1_files_load_and_convert() {
        let v1 = golden("v1-784-64-64-10.q8");
        let q = load(&v1).unwrap();
        assert_eq!(q.model().unwrap().spec().dims(), &[784, 64, 64, 10]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new.q8");
        let c = convert_file(&v1, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), c.bytes());
        assert_eq!(c.bytes(), q.bytes());
        // The firmware's default model is that file, converted.
        let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-sim/models/default.q8");
        assert_eq!(std::fs::read(default).unwrap(), c.bytes());
        // Converting a version-2 file copies it.
        let again = dir.path().join("again.q8");
        assert_eq!(convert_file(&out, &again).unwrap().bytes(), c.bytes());
    }
}
