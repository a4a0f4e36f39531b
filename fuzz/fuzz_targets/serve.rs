//! The firmware's device loop (`protocol::serve`) run on the host over an
//! in-memory pipe, with a device that classifies with a small int8 model
//! and trains (`TrainSession`, full or head mode) as the firmware images
//! do: every request and training-session frame, as given and with every
//! frame's CRC repaired. Ends with `Shutdown`, the end of input or a full
//! output pipe, never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tailor::q8::{self, Q8};
use tailor_core::protocol::{self, Buffers, MAX_OUT};
use tailor_core::quant::QModel;
use tailor_core::session::SessionBuffers;
use tailor_fuzz::{HostDevice, Pipe, TRAIN_BATCH};

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
    let (mut params, mut state, mut scratch, mut ws) =
        (vec![0f32; 4096], vec![0f32; 4096], vec![0f32; 1024], vec![0f32; 2048]);
    let mut dev = HostDevice {
        scratch: vec![0i16; model.scratch_len()],
        model,
        buffers: Some(SessionBuffers {
            params: &mut params,
            state: &mut state,
            scratch: &mut scratch,
            workspace: &mut ws,
        }),
        session: None,
        features: vec![0u8; 256],
        head: false,
        max_batch: 0,
    };
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
