//! Int8 models (`.q8` version 2) read in place: `QModel::parse`, the host's
//! finiteness check, and, for a model that parses, one classification and
//! the features of one input (what parse's checks must make safe).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::q8::Q8;
use tailor_core::quant::{QKernels, QModel};

fn run(bytes: &[u8]) {
    let q = Q8::from_bytes(bytes);
    let Ok(m) = QModel::parse(q.bytes()) else { return };
    if tailor::numerics::check_q8(&m, "fuzz").is_err() {
        return;
    }
    let spec = m.spec();
    // Bounded work per input: a header may announce a huge model.
    if spec.inputs() > 4096 || m.scratch_len() > 1 << 16 {
        return;
    }
    let input: Vec<u8> = (0..spec.inputs()).map(|i| (i * 37) as u8).collect();
    let mut scratch = vec![0i16; m.scratch_len()];
    let mut logits = vec![0i32; spec.outputs()];
    let c = m.classify(&QKernels::BEST, &input, &mut scratch, &mut logits);
    assert!(c < spec.outputs());
    if spec.depth() >= 2 {
        let mut f = vec![0u8; spec.layer(spec.depth() - 1).inputs];
        m.features(&QKernels::BEST, &input, &mut scratch, &mut f);
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
    if let Some(fixed) = tailor_fuzz::fix_crcs(data) {
        run(&fixed);
    }
});
