//! CSV data files: with the label in the last column, in a named column,
//! and with class names fixing the number of classes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::data::csv;

fuzz_target!(|data: &[u8]| {
    let p = tailor_fuzz::scratch_file("data.csv", data);
    let _ = csv::read_split(&p, None, None);
    let _ = csv::read_split(&p, Some("label"), Some(3));
});
