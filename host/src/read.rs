//! Reading a whole model file, bounded by what the file really is.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The bytes of the regular file `path` (`what` names it in errors). A
/// device, FIFO or directory is refused before anything is read
/// (`/dev/zero` would never end), and no more than the size `fstat`
/// reported is read, so a file growing under us cannot grow the buffer.
pub fn regular_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let meta = f.metadata().with_context(|| format!("reading {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {}: not a regular file", path.display());
    }
    let len = meta.len();
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| anyhow::anyhow!("{what} {}: {len} bytes do not fit in memory", path.display()))?;
    f.take(len).read_to_end(&mut bytes).with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_reading() {
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = regular_file(Path::new(p), "checkpoint").unwrap_err().to_string();
            assert!(e.contains(p) && e.contains("not a regular file"), "{e}");
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("m");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(regular_file(&f, "model").unwrap(), b"abc");
    }
}
