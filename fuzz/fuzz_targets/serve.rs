//! The firmware's device loop (`protocol::serve`) run on the host over an
//! in-memory pipe, with a device that classifies with a small int8 model
//! and trains (the firmware's `TrainDevice`, full or head mode) as the
//! firmware images do: every request and training-session frame, as given
//! and with every frame's CRC repaired. Ends with `Shutdown`, the end of
//! input or a full output pipe, never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tailor::q8::{self, Q8};
use tailor_core::protocol::{self, Buffers, MAX_OUT};
use tailor_core::quant::QModel;
use tailor_fuzz::{HostMemory, Pipe, TRAIN_BATCH};

/// 13-9-6-4, converted from the golden version-1 file.
fn model() -> &'static Q8 {
    static M: OnceLock<Q8> = OnceLock::new();
    M.get_or_init(|| {
        let v1 = include_bytes!("../../tests/golden/v1-13-9-6-4.q8");
        q8::convert_v1(v1).expect("a version-1 file").expect("it converts")
    })
}

fn run(wire: &[u8]) {
    let model = QModel::parse(model().bytes()).unwrap();
    let mut mem = HostMemory::new(&model);
    let mut dev = mem.device(model);
    let mut rx = vec![0u8; protocol::classify_frame_capacity(TRAIN_BATCH, 785) + 128];
    let (mut classes, mut logits, mut confidence) =
        (vec![0u8; TRAIN_BATCH], vec![0u8; 4 * TRAIN_BATCH * MAX_OUT], vec![0u8; TRAIN_BATCH]);
    let mut pipe = Pipe { input: wire, pos: 0, output: Vec::new(), cap: 1 << 20 };
    let _ = protocol::serve(
        &mut pipe,
        &mut dev,
        Buffers { rx: &mut rx, classes: &mut classes, logits: &mut logits, confidence: &mut confidence },
    );
}

fuzz_target!(|data: &[u8]| {
    run(data);
    run(&tailor_fuzz::reframe(data));
});
