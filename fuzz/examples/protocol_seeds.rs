//! Writes the seed streams of the `frame` and `serve` targets: real
//! request sessions (inference and training, full and head mode) for the
//! device, and the device's replies to them for the host's side.
//!
//! `cargo run --example protocol_seeds -- DIR` writes `DIR/serve/*` and
//! `DIR/frame/*`.

use std::path::Path;

use tailor::q8;
use tailor_core::optim::{Adam, Optimizer, Sgd};
use tailor_core::protocol::{self, Buffers, Message, MAX_DIMS, MAX_OUT};
use tailor_core::quant::QModel;
use tailor_fuzz::{HostMemory, Pipe, TRAIN_BATCH};

fn wire(msgs: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        protocol::send(&mut out, m).unwrap();
    }
    out
}

fn setup(head: bool, widths: &[u32], optimizer: Optimizer) -> Message<'static> {
    let mut dims = [0u32; MAX_DIMS];
    dims[..widths.len()].copy_from_slice(widths);
    Message::TrainSetup { head, n_dims: widths.len() as u8, dims, optimizer, seed: 7, mean: 0.25, std: 0.5 }
}

/// The device's answers to `requests` (the golden 13-9-6-4 model).
fn replies(requests: &[u8]) -> Vec<u8> {
    let v1 = include_bytes!("../../tests/golden/v1-13-9-6-4.q8");
    let q = q8::convert_v1(v1).unwrap().unwrap();
    let model = QModel::parse(q.bytes()).unwrap();
    let mut mem = HostMemory::new(&model);
    let mut dev = mem.device(model);
    let mut rx = vec![0u8; protocol::classify_frame_capacity(TRAIN_BATCH, 785) + 128];
    let (mut classes, mut logits, mut confidence) =
        (vec![0u8; TRAIN_BATCH], vec![0u8; 4 * TRAIN_BATCH * MAX_OUT], vec![0u8; TRAIN_BATCH]);
    let mut pipe = Pipe { input: requests, pos: 0, output: Vec::new(), cap: 1 << 20 };
    protocol::serve(
        &mut pipe,
        &mut dev,
        Buffers { rx: &mut rx, classes: &mut classes, logits: &mut logits, confidence: &mut confidence },
    );
    pipe.output
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: protocol_seeds DIR");
    let images: Vec<u8> = (0..3 * 13).map(|i| (i * 53 % 256) as u8).collect();
    let adam = Optimizer::Adam(Adam::default());
    let sgd = Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, ..Sgd::default() });
    let labels = [0u8, 3, 1];
    let sessions: [(&str, Vec<Message<'_>>); 4] = [
        (
            "classify",
            vec![
                Message::Ping { nonce: 3 },
                Message::Classify { seq: 1, want_logits: true, images: &images },
                Message::Classify { seq: 2, want_logits: false, images: &images[..13] },
                Message::GetStats,
                Message::SelfTest,
                Message::Shutdown,
            ],
        ),
        (
            "train-full",
            vec![
                setup(false, &[13, 5, 4], adam),
                Message::TrainBatch { seq: 1, lr: 0.01, labels: &labels, pixels: &images },
                Message::EvalBatch { seq: 2, labels: &labels, pixels: &images },
                Message::ReadParams { offset: 0, count: 100 },
                Message::Shutdown,
            ],
        ),
        (
            "train-head",
            vec![
                setup(true, &[6, 4], sgd),
                Message::TrainBatch { seq: 1, lr: 0.1, labels: &labels, pixels: &images },
                Message::EvalBatch { seq: 2, labels: &labels[..1], pixels: &images[..13] },
                Message::ReadParams { offset: 20, count: 8 },
            ],
        ),
        (
            "refused",
            vec![
                Message::TrainBatch { seq: 1, lr: 0.01, labels: &labels, pixels: &images },
                setup(false, &[13, 4000, 4], adam),
                Message::Classify { seq: 9, want_logits: true, images: &images[..12] },
                Message::GetStats,
            ],
        ),
    ];
    for sub in ["serve", "frame"] {
        std::fs::create_dir_all(Path::new(&dir).join(sub)).unwrap();
    }
    for (name, msgs) in &sessions {
        let req = wire(msgs);
        std::fs::write(Path::new(&dir).join("serve").join(name), &req).unwrap();
        std::fs::write(Path::new(&dir).join("frame").join(name), replies(&req)).unwrap();
    }
}
