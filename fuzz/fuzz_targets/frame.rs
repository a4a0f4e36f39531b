//! The host's side of the protocol: replies read from a device stream as
//! `tailor device` reads them (`FrameReader::recv`, then an owned copy of
//! each message), and whole frames decoded in place; the stream as given
//! and with every frame's CRC repaired.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::device::owned;
use tailor_core::protocol::{FrameReader, Message, RecvError};

fn run(wire: &[u8]) {
    let mut pipe = tailor_fuzz::Pipe { input: wire, pos: 0, output: Vec::new(), cap: 0 };
    let mut buf = vec![0u8; 4096];
    let mut rd = FrameReader::new(&mut buf);
    loop {
        match rd.recv(&mut pipe) {
            Ok(m) => drop(owned(m)),
            Err(RecvError::Frame(_)) => {}
            Err(RecvError::Eof | RecvError::Io(_)) => break,
        }
    }
    for chunk in wire.split(|&b| b == 0) {
        let mut c = chunk.to_vec();
        let _ = Message::decode_frame(&mut c);
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
    run(&tailor_fuzz::reframe(data));
});
