//! A reader over one binary data file (IDX or NPY), gzipped or raw, that
//! knows its name and position for error messages and an upper bound on
//! what is left, so a lying header cannot make us allocate gigabytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::DataError;

/// Deflate cannot expand a byte into more than 1032 (RFC 1951's longest
/// match of 258 bytes per 2-bit code, rounded up); anything a header
/// promises beyond that is certainly not in a gzip file of this size.
const MAX_DEFLATE_RATIO: u64 = 1032;

pub(super) struct Input {
    pub file: PathBuf,
    r: Box<dyn Read + Send>,
    gz: bool,
    /// The file's size on disk.
    size: u64,
    /// Bytes still to come, at most (exact for raw files).
    left_max: u64,
    /// Bytes delivered so far (decompressed).
    pub pos: u64,
}

impl Input {
    /// Open `path`; gzip is recognized by its magic, and a name ending in
    /// `.gz` must have it.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = path.to_path_buf();
        let io_err = |source| DataError::Io { file: path.to_path_buf(), source };
        let f = File::open(path).map_err(io_err)?;
        let meta = f.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(DataError::Io {
                file,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        let size = meta.len();
        // 256 KiB: few syscalls for a 26 MB file, negligible memory.
        let mut br = BufReader::with_capacity(256 << 10, f);
        let start = br.fill_buf().map_err(io_err)?;
        let gz = start.len() >= 2 && start[..2] == [0x1f, 0x8b];
        if !gz && path.extension().is_some_and(|e| e == "gz") {
            let found = start[..start.len().min(2)].to_vec();
            return Err(DataError::NotGzip { file, found });
        }
        let (r, left_max): (Box<dyn Read + Send>, u64) = if gz {
            // Multi-member: gzip(1) concatenates members and reads them as one.
            (Box::new(MultiGzDecoder::new(br)), size.saturating_mul(MAX_DEFLATE_RATIO))
        } else {
            (Box::new(br), size)
        };
        Ok(Input { file, r, gz, size, left_max, pos: 0 })
    }

    pub fn read_err(&self, source: io::Error) -> DataError {
        let file = self.file.clone();
        if self.gz {
            DataError::Gzip { file, source }
        } else {
            DataError::Io { file, source }
        }
    }

    /// Read up to `buf.len()` bytes; fewer only at the end of the file.
    pub fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        }
        self.pos += got as u64;
        self.left_max = self.left_max.saturating_sub(got as u64);
        Ok(got)
    }

    /// Exactly `len` bytes of a header `part`, or `Truncated`. The length is
    /// checked against the file before allocating.
    pub fn header_bytes(&mut self, len: u64, part: &'static str) -> Result<Vec<u8>, DataError> {
        let expected = self.pos + len;
        if len > self.left_max {
            return Err(self.truncated(part, expected, self.pos + self.left_max));
        }
        let mut buf = vec![0u8; len as usize];
        let got = self.read_full(&mut buf)?;
        if got < buf.len() {
            return Err(self.truncated(part, expected, self.pos));
        }
        Ok(buf)
    }

    fn truncated(&self, part: &'static str, expected: u64, found: u64) -> DataError {
        DataError::Truncated { file: self.file.clone(), part, expected, found }
    }

    /// The `n` items of `item_len` bytes after the header, then a check that
    /// nothing follows them. Allocates at most once, never more than the
    /// file can hold, and only as much as it really delivers is touched.
    pub fn body(&mut self, n: u64, item_len: usize) -> Result<Vec<u8>, DataError> {
        let too_large = || DataError::TooLarge { file: self.file.clone(), items: n };
        let len = n.checked_mul(item_len as u64).filter(|&l| l <= isize::MAX as u64).ok_or_else(too_large)?;
        let total = self.pos + len;
        if !self.gz && len > self.left_max {
            return Err(self.truncated("body", total, self.pos + self.left_max));
        }
        // Reserve only what the file plausibly holds: for gzip the deflate
        // bound is 1032x the file, so a 1 MB file claiming 2^30 labels
        // would cost 1 GB up front. Typical data compresses < 8x; beyond
        // that the buffer grows only as real bytes arrive, and `take`
        // stops at what the header implies.
        let plausible = if self.gz { self.size.saturating_mul(8) } else { self.left_max };
        let mut body = Vec::new();
        body.try_reserve_exact(len.min(plausible) as usize).map_err(|_| too_large())?;
        let got = loop {
            match (&mut self.r).take(len).read_to_end(&mut body) {
                Ok(_) => break body.len() as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        };
        self.pos += got;
        if got < len {
            return Err(self.truncated("body", total, self.pos));
        }
        let extra = io::copy(&mut self.r, &mut io::sink()).map_err(|e| self.read_err(e))?;
        if extra > 0 {
            return Err(DataError::TrailingData { file: self.file.clone(), items: n, expected: total, extra });
        }
        Ok(body)
    }
}
