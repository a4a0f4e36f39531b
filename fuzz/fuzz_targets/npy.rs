//! NumPy `.npy` files, as features and as labels (raw; gzip goes through
//! the same reader as IDX).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::data::npy;

fuzz_target!(|data: &[u8]| {
    let p = tailor_fuzz::scratch_file("data_x.npy", data);
    let _ = npy::read_features(&p);
    let _ = npy::read_labels(&p);
});
