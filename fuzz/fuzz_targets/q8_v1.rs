//! Version-1 `.q8` files through the legacy converter (`legacy::detect`,
//! `legacy::convert` via the host's `convert_v1`); what it writes must parse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::q8;

fn run(bytes: &[u8]) {
    if let Some(Ok(q)) = q8::convert_v1(bytes) {
        q.model().expect("the converter wrote a .q8 that does not parse");
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
    if let Some(fixed) = tailor_fuzz::fix_crcs(data) {
        run(&fixed);
    }
});
