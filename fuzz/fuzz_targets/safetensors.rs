//! safetensors model files (`tailor eval/quantize/device model.safetensors`,
//! `train --init`): the header, tensor table, model shape and metadata.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tailor::interop::safetensors;

fuzz_target!(|data: &[u8]| {
    let _ = safetensors::looks_like(data);
    let _ = safetensors::decode(data, "fuzz");
});
