//! Gzipped IDX files: the input gzipped (so mutations reach the IDX parser
//! behind the decompressor), split in two members at its first byte (a
//! multi-member file, as gzip(1) concatenates them), and the input itself
//! under a `.gz` name (the decompressor's own error paths).
#![no_main]
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use tailor::data::idx;

fn gz(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(part).unwrap();
        out.extend(e.finish().unwrap());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (cut, body) = match data.split_first() {
        Some((&c, rest)) => ((c as usize).min(rest.len()), rest),
        None => (0, data),
    };
    for bytes in [gz(&[body]), gz(&[&body[..cut], &body[cut..]]), data.to_vec()] {
        let p = tailor_fuzz::scratch_file("data-idx.gz", &bytes);
        let _ = idx::read_images(&p);
        let _ = idx::read_labels(&p);
    }
});
