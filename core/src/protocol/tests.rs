extern crate std;
use super::frame::cobs_decode_in_place;
use super::*;
use embedded_io::{Read, Write};
use std::vec::Vec;

/// An in-memory duplex pipe: reads `input` at most `chunk` bytes at a
/// time, collects what is written.
struct Pipe {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    output: Vec<u8>,
}

impl Pipe {
    fn new(input: Vec<u8>, chunk: usize) -> Self {
        Pipe { input, pos: 0, chunk, output: Vec::new() }
    }
}

impl embedded_io::ErrorType for Pipe {
    type Error = core::convert::Infallible;
}
impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.chunk).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn frame(msg: &Message<'_>) -> Vec<u8> {
    let mut p = Pipe::new(Vec::new(), 1);
    send(&mut p, msg).unwrap();
    p.output
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut p = Pipe::new(Vec::new(), 1);
    send_raw_body(&mut p, body).unwrap();
    p.output
}

/// Reference COBS encoder (the textbook one) to check ours against.
fn cobs_ref(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    let mut code_at = 0;
    let mut code = 1u8;
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 255 {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

use std::vec;

#[test]
fn crc_is_format_crc() {
    assert_eq!(CRC.checksum(b"123456789"), crate::format::crc32(b"123456789"));
}

#[test]
fn cobs_matches_reference_and_roundtrips() {
    let mut rng = crate::rng::Rng::new(7);
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![1],
        vec![1; 253],
        vec![1; 254],
        vec![1; 255],
        vec![1; 508],
        vec![1; 509],
    ];
    for len in [1usize, 2, 100, 254, 255, 256, 600, 1000] {
        for zero_every in [0u32, 2, 10, 300] {
            cases.push(
                (0..len)
                    .map(|_| {
                        let r = rng.next_u32();
                        if zero_every > 0 && r.is_multiple_of(zero_every) {
                            0
                        } else {
                            (r >> 8) as u8 | 1
                        }
                    })
                    .collect(),
            );
        }
    }
    for data in cases {
        let f = raw_frame(&data);
        let mut body_crc = data.clone();
        body_crc.extend_from_slice(&CRC.checksum(&data).to_le_bytes());
        let mut expect = cobs_ref(&body_crc);
        // Our encoder may end in an extra empty block (code 1) after a
        // 255 block; both decode the same.
        let enc = &f[..f.len() - 1];
        if enc.len() == expect.len() + 1 {
            expect.push(1);
        }
        assert_eq!(enc, &expect[..], "len {}", data.len());
        assert_eq!(*f.last().unwrap(), 0);
        assert!(!enc.contains(&0));
        assert!(enc.len() <= encoded_len(data.len()));
        let mut buf = enc.to_vec();
        let n = cobs_decode_in_place(&mut buf).unwrap();
        assert_eq!(&buf[..n], &body_crc[..]);
    }
}

fn sample_messages() -> Vec<Message<'static>> {
    static IMAGES: [u8; 8] = [0, 1, 2, 0, 255, 0, 0, 7];
    static LOGITS: [u8; 8] = [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    vec![
        Message::Ping { nonce: 0xdead_beef },
        Message::Hello(Hello {
            nonce: 1,
            protocol: PROTOCOL_VERSION,
            fw_version: "tailor-fw 0.1",
            model_state: ModelState::Ready,
            model_detail: "",
            dims: heapless::Vec::from_slice(&[784, 512, 512, 10, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]).unwrap(),
            model_crc: 0x1234_5678,
            max_batch: 64,
            frame_capacity: 60_000,
            counts_instructions: true,
        }),
        Message::Classify { seq: 3, want_logits: true, images: &IMAGES },
        Message::Predictions(Predictions {
            seq: 3,
            classes: &[1, 9],
            logits: &LOGITS,
            instructions: 1 << 40,
            confidence: &[100, 37],
        }),
        Message::Error { code: ErrorCode::BadCrc, seq: 0, detail: "crc" },
        Message::GetStats,
        Message::Stats(Stats { frames_ok: 1, frames_bad: 2, images: 3, instructions: 4 }),
        Message::SelfTest,
        Message::SelfTestReport { passed: 5, failed: 0, detail: "ok" },
        Message::Shutdown,
        Message::Bye(Stats::default()),
        Message::TrainSetup {
            head: false,
            n_dims: 3,
            dims: core::array::from_fn(|i| if i < 3 { [784, 32, 10][i] } else { 0 }),
            optimizer: crate::optim::Optimizer::Sgd(crate::optim::Sgd { momentum: 0.9, ..Default::default() }),
            seed: u64::MAX,
            mean: 0.286,
            std: 0.353,
        },
        Message::TrainReady { params: 25_450, max_batch: 8, ram_bytes: 250_000 },
        Message::TrainBatch { seq: 9, lr: 0.05, labels: &IMAGES[..2], pixels: &IMAGES },
        Message::Trained { seq: 9, loss: 2.25, instructions: 77 },
        Message::EvalBatch { seq: 10, labels: &IMAGES[..1], pixels: &IMAGES[..4] },
        Message::Evaluated {
            seq: 10,
            correct: 1,
            loss_sum: 0.5,
            instructions: 0,
            confidence_right: 97,
            confidence_wrong: 300,
        },
        Message::ReadParams { offset: 100, count: 64 },
        Message::Params { offset: 100, data: &LOGITS },
    ]
}

#[test]
fn every_message_roundtrips_through_a_stream_in_small_reads() {
    let msgs = sample_messages();
    assert_eq!(msgs.len() as u32, MESSAGE_TAGS);
    let mut wire = vec![0u8, 0]; // leading empty frames are skipped
    for m in &msgs {
        wire.extend(frame(m));
    }
    for chunk in [1, 3, 17, 4096] {
        // A buffer just big enough for the largest frame forces compaction.
        let mut buf = [0u8; 64];
        let mut rd = FrameReader::new(&mut buf);
        let mut p = Pipe::new(wire.clone(), chunk);
        for m in &msgs {
            assert_eq!(&rd.recv(&mut p).unwrap(), m);
        }
        assert_eq!(rd.recv(&mut p), Err(RecvError::Eof));
    }
    // decode_frame on one whole frame.
    let mut f = frame(&msgs[3]);
    assert_eq!(Message::decode_frame(&mut f).unwrap(), msgs[3]);
    let mut out = [0u8; 64];
    let n = encode_to_slice(&msgs[2], &mut out).unwrap();
    assert_eq!(&out[..n], &frame(&msgs[2])[..]);
    assert!(matches!(encode_to_slice(&msgs[1], &mut out[..10]), Err(SendError::Io(_))));
}

/// Every malformed frame, each followed by a good one.
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, FrameError)> {
    let good = frame(&Message::Ping { nonce: 9 });
    let mut bad_crc = good.clone();
    bad_crc[2] ^= 0x10;
    let bad_crc_err = {
        let mut b = bad_crc[..bad_crc.len() - 1].to_vec();
        let n = cobs_decode_in_place(&mut b).unwrap();
        check_crc(&b[..n]).unwrap_err()
    };
    let big = frame(&Message::Classify { seq: 1, want_logits: false, images: &[5u8; 300] });
    // Cut a frame inside its last COBS block: the block runs past the end.
    let mid = frame(&Message::Classify { seq: 1, want_logits: false, images: &[5u8; 100] });
    let mut truncated = mid[..mid.len() - 3].to_vec();
    truncated.push(0);
    let mut unknown = vec![42u8];
    unknown.extend_from_slice(&[1, 2, 3]);
    let mut bad_body = frame(&Message::GetStats);
    bad_body.clear();
    bad_body.extend(raw_frame(&[2, 1, 5, 1])); // Classify: bool 5 is invalid
    let trailing = raw_frame(&[5, 0]); // GetStats + a stray byte
    let short_cut = big[..40].iter().copied().chain([0]).collect::<Vec<_>>(); // a 255 block cut → Cobs
    vec![
        ("bad crc", bad_crc, bad_crc_err),
        ("truncated", truncated, FrameError::Cobs),
        ("truncated early", short_cut, FrameError::Cobs),
        ("too short", vec![3, 1, 2, 0], FrameError::TooShort { len: 2 }),
        ("unknown tag", raw_frame(&unknown), FrameError::UnknownTag { tag: 42 }),
        ("bad body", bad_body, FrameError::Decode),
        ("trailing bytes", trailing, FrameError::Decode),
        ("oversized", big, FrameError::Oversized { capacity: 128 }),
        (
            "garbage without delimiter then one",
            vec![0xAA; 1000].into_iter().chain([0]).collect(),
            FrameError::Oversized { capacity: 128 },
        ),
    ]
}

#[test]
fn each_malformed_frame_is_reported_and_the_next_one_still_decodes() {
    let good = frame(&Message::Ping { nonce: 9 });
    for (name, bad, err) in malformed_cases() {
        for chunk in [1, 7, 4096] {
            let mut wire = bad.clone();
            wire.extend_from_slice(&good);
            let mut buf = [0u8; 128];
            let mut rd = FrameReader::new(&mut buf);
            let mut p = Pipe::new(wire, chunk);
            assert_eq!(rd.recv(&mut p), Err(RecvError::Frame(err)), "{name}, chunk {chunk}");
            assert_eq!(rd.recv(&mut p), Ok(Message::Ping { nonce: 9 }), "{name}, chunk {chunk}");
            assert_eq!(rd.recv(&mut p), Err(RecvError::Eof));
        }
    }
}

#[test]
fn random_corruption_never_panics_and_resyncs() {
    let good = frame(&Message::Ping { nonce: 77 });
    let base = frame(&Message::Classify { seq: 5, want_logits: true, images: &[3, 0, 9, 0, 0, 200, 1, 1] });
    let mut rng = crate::rng::Rng::new(3);
    for _ in 0..2000 {
        let mut f = base.clone();
        let i = rng.next_u32() as usize % (f.len() - 1);
        f[i] = (rng.next_u32() as u8).max(1);
        let mut wire = f;
        wire.extend_from_slice(&good);
        let mut buf = [0u8; 64];
        let mut rd = FrameReader::new(&mut buf);
        let mut p = Pipe::new(wire, 5);
        // The corrupted frame decodes to something or an error...
        let _ = rd.recv(&mut p);
        // ...and the next frame always decodes.
        assert_eq!(rd.recv(&mut p), Ok(Message::Ping { nonce: 77 }));
    }
}

/// A toy model: 4 inputs, class = argmax, logits = inputs.
struct Toy {
    ticks: u64,
}
impl Backend for Toy {
    fn fw_version(&self) -> &str {
        "toy"
    }
    fn dims(&self) -> &[u32] {
        &[4, 4]
    }
    fn model_crc(&self) -> u32 {
        0xabcd
    }
    fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize {
        self.ticks += 100;
        for (l, &p) in logits.iter_mut().zip(pixels) {
            *l = p as i32 - 100;
        }
        (0..4).max_by_key(|&j| (logits[j], core::cmp::Reverse(j))).unwrap()
    }
    fn instructions(&mut self) -> Option<u64> {
        Some(self.ticks)
    }
    fn logit_scale(&self) -> Option<f32> {
        Some(0.25)
    }
}

fn run_device(wire: Vec<u8>, rx_len: usize) -> (ServeEnd<core::convert::Infallible>, Vec<Message<'static>>) {
    let mut p = Pipe::new(wire, 13);
    let mut rx = vec![0u8; rx_len];
    let (mut classes, mut logits, mut confidence) = ([0u8; 8], [0u8; 8 * 16], [0u8; 8]);
    let bufs = Buffers { rx: &mut rx, classes: &mut classes, logits: &mut logits, confidence: &mut confidence };
    let end = serve(&mut p, &mut Toy { ticks: 0 }, bufs);
    // Decode the replies (leaked: fine in a test).
    let out: &'static mut [u8] = std::boxed::Box::leak(p.output.into_boxed_slice());
    let mut replies = Vec::new();
    for f in out.split_mut(|&b| b == 0).filter(|f| !f.is_empty()) {
        replies.push(Message::decode_frame(f).unwrap());
    }
    (end, replies)
}

#[test]
fn serve_answers_requests_and_survives_every_malformed_frame() {
    let imgs = [9u8, 1, 2, 3, 0, 0, 7, 0];
    let classify = frame(&Message::Classify { seq: 11, want_logits: true, images: &imgs });
    let mut wire = frame(&Message::Ping { nonce: 5 });
    wire.extend(&classify);
    let cases = malformed_cases();
    for (_, bad, _) in &cases {
        wire.extend(bad);
        wire.extend(&classify);
    }
    wire.extend(frame(&Message::Classify { seq: 12, want_logits: false, images: &imgs[..3] }));
    wire.extend(frame(&Message::Classify { seq: 13, want_logits: false, images: &[1; 4 * 9] }));
    wire.extend(frame(&Message::Stats(Stats::default())));
    wire.extend(frame(&Message::SelfTest));
    wire.extend(frame(&Message::GetStats));
    wire.extend(frame(&Message::Shutdown));
    wire.extend(frame(&Message::Ping { nonce: 6 })); // after shutdown: never read
    let (end, replies) = run_device(wire, 128);
    let mut it = replies.iter();
    let Some(Message::Hello(h)) = it.next() else { panic!() };
    assert_eq!(
        (h.nonce, h.dims(), h.model_crc, h.fw_version, h.counts_instructions),
        (0, &[4u32, 4][..], 0xabcd, "toy", true)
    );
    // 128-byte buffer, 4-byte images: limited by the 8 classes.
    assert_eq!((h.max_batch, h.frame_capacity), (8, 128));
    assert!(matches!(it.next(), Some(Message::Hello(Hello { nonce: 5, .. }))));
    let expect = Message::Predictions(Predictions {
        seq: 11,
        classes: &[0, 2],
        logits: &[
            165, 255, 255, 255, 157, 255, 255, 255, 158, 255, 255, 255, 159, 255, 255, 255, 156, 255, 255, 255, 156,
            255, 255, 255, 163, 255, 255, 255, 156, 255, 255, 255,
        ],
        instructions: 200,
        // Logits (-91, -99, -98, -97) and (-100, -100, -93, -100), a
        // quarter each: softmax 0.653 and 0.657 for the top class.
        confidence: &[65, 66],
    });
    assert_eq!(it.next(), Some(&expect));
    for (name, _, err) in &cases {
        match it.next() {
            Some(Message::Error { code, seq: 0, detail }) => {
                assert_eq!(*code, ErrorCode::from(*err), "{name}: {detail}");
            }
            other => panic!("{name}: {other:?}"),
        }
        let Some(Message::Predictions(p)) = it.next() else { panic!("{name}") };
        assert_eq!(p.classes, &[0, 2]);
    }
    assert!(matches!(it.next(), Some(Message::Error { code: ErrorCode::BadImageSize, seq: 12, .. })));
    assert!(matches!(it.next(), Some(Message::Error { code: ErrorCode::BatchTooLarge, seq: 13, .. })));
    assert!(matches!(it.next(), Some(Message::Error { code: ErrorCode::Unexpected, .. })));
    assert!(matches!(it.next(), Some(Message::SelfTestReport { passed: 0, failed: 0, .. })));
    let n_bad = cases.len() as u32;
    let stats = Stats {
        frames_ok: 8 + n_bad,
        frames_bad: n_bad,
        images: 2 * (1 + n_bad as u64),
        instructions: 200 * (1 + n_bad as u64),
    };
    assert_eq!(it.next(), Some(&Message::Stats(Stats { frames_ok: stats.frames_ok - 1, ..stats })));
    assert_eq!(it.next(), Some(&Message::Bye(stats)));
    assert_eq!(it.next(), None);
    assert_eq!(end, ServeEnd::Shutdown(stats));
}

#[test]
fn serve_ends_on_eof() {
    let (end, replies) = run_device(frame(&Message::Ping { nonce: 1 }), 64);
    assert_eq!(replies.len(), 2);
    assert!(matches!(end, ServeEnd::Eof(Stats { frames_ok: 1, .. })));
}

/// A device without a model says so in its `Hello` and answers `Classify`
/// with `NoModel`, then keeps serving.
#[test]
fn serve_without_a_model_reports_it() {
    struct Empty;
    impl Backend for Empty {
        fn fw_version(&self) -> &str {
            "empty"
        }
        fn model_state(&self) -> (ModelState, &str) {
            (ModelState::Missing, "no model in flash")
        }
        fn dims(&self) -> &[u32] {
            &[]
        }
        fn model_crc(&self) -> u32 {
            0
        }
        fn classify(&mut self, _: &[u8], _: &mut [i32]) -> usize {
            unreachable!()
        }
    }
    let mut wire = frame(&Message::Classify { seq: 4, want_logits: false, images: &[1, 2, 3] });
    wire.extend(frame(&Message::Shutdown));
    let mut p = Pipe::new(wire, 13);
    let (mut rx, mut classes, mut logits, mut confidence) = ([0u8; 128], [0u8; 8], [0u8; 8 * 16], [0u8; 8]);
    let bufs = Buffers { rx: &mut rx, classes: &mut classes, logits: &mut logits, confidence: &mut confidence };
    let end = serve(&mut p, &mut Empty, bufs);
    assert!(matches!(end, ServeEnd::Shutdown(_)));
    let mut frames = p.output.split_mut(|&b| b == 0).filter(|f| !f.is_empty());
    let Ok(Message::Hello(h)) = Message::decode_frame(frames.next().unwrap()) else { panic!() };
    assert_eq!((h.model_state, h.model_detail, h.dims()), (ModelState::Missing, "no model in flash", &[][..]));
    let m = Message::decode_frame(frames.next().unwrap()).unwrap();
    assert!(matches!(m, Message::Error { code: ErrorCode::NoModel, seq: 4, detail: "no model in flash" }), "{m:?}");
}
