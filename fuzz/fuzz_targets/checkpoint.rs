//! f32 checkpoints (`TLRF`, versions 1 and 2): as given, and with their
//! CRCs repaired so mutations reach the tensors and training metadata.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::checkpoint;

fuzz_target!(|data: &[u8]| {
    let _ = checkpoint::decode(data, "fuzz");
    if let Some(fixed) = tailor_fuzz::fix_crcs(data) {
        let _ = checkpoint::decode(&fixed, "fuzz");
    }
});
