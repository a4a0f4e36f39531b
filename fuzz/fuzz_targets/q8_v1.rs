//! Version-1 `.q8` files through the legacy converter (`legacy::detect`,
//! `legacy::convert` via the host's `convert_v1`), then the checks `load`
//! runs on what it writes (the converter copies fields it does not check,
//! such as a hidden layer's output range, so its output may be refused).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::q8;

fn run(bytes: &[u8]) {
    if let Some(Ok(q)) = q8::convert_v1(bytes) {
        if let Ok(m) = q.model() {
            let _ = tailor::numerics::check_q8(&m, "fuzz");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
    if let Some(fixed) = tailor_fuzz::fix_crcs(data) {
        run(&fixed);
    }
});
