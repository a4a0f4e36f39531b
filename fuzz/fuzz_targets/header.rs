//! The header every tailor file starts with (`format::header`), for both
//! magics, as given and with its CRCs repaired; `QModel::announced_len`
//! reads the same header in a flash region. A parsed header re-encodes to
//! the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor_core::format::Header;
use tailor_core::quant::QModel;

fn run(bytes: &[u8]) {
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    for m in [*b"TLRF", *b"TLQ8", magic] {
        if let Ok((h, payload)) = Header::parse(bytes, m) {
            assert_eq!(payload.len(), h.payload_len as usize);
            if h.version == 2 {
                let mut out = vec![0u8; h.encoded_len()];
                let n = h.encode(&mut out);
                assert_eq!(&out[..n], &bytes[..n], "a parsed header re-encodes differently");
            }
        }
    }
    let _ = QModel::announced_len(bytes);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    run(data);
    if let Some(fixed) = tailor_fuzz::fix_crcs(data) {
        run(&fixed);
    }
});
