//! IDX files as they are on disk (raw, or gzip when they start with its
//! magic): the images/features reader and the labels reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::data::idx;

fuzz_target!(|data: &[u8]| {
    let p = tailor_fuzz::scratch_file("data-idx", data);
    let _ = idx::read_images(&p);
    let _ = idx::read_labels(&p);
});
