//! Microcontroller budgets: what `tailor quantize` reports against, and the
//! emulated board `tailor device` runs (its limits in step with
//! `firmware-sim/memory.x` and `firmware-sim/src/model.rs`).

use serde::Serialize;

/// Where a firmware keeps the model apart from its code, and how much
/// inference scratch it has (emulated board only).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ModelRegion {
    pub base: u64,
    pub bytes: u64,
    /// `i16` elements of the firmware's static scratch.
    pub scratch_i16: u64,
    /// Most classes the firmware's protocol loop returns.
    pub max_outputs: u64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Board {
    pub name: &'static str,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    pub model_region: Option<ModelRegion>,
}

/// QEMU `mps2-an386`: 4 MiB flash (1 MiB code, 3 MiB model region at
/// `0x0010_0000`), 4 MiB RAM.
pub const MPS2_AN386: Board = Board {
    name: "mps2-an386",
    flash_bytes: 4 << 20,
    ram_bytes: 4 << 20,
    model_region: Some(ModelRegion { base: 0x0010_0000, bytes: 3 << 20, scratch_i16: 16 * 1024, max_outputs: 16 }),
};

pub const BOARDS: [Board; 5] = [
    Board { name: "nRF52840", flash_bytes: 1024 * 1024, ram_bytes: 256 * 1024, model_region: None },
    Board { name: "STM32F411", flash_bytes: 512 * 1024, ram_bytes: 128 * 1024, model_region: None },
    Board { name: "STM32F746", flash_bytes: 1024 * 1024, ram_bytes: 320 * 1024, model_region: None },
    Board { name: "RP2040", flash_bytes: 2048 * 1024, ram_bytes: 264 * 1024, model_region: None },
    MPS2_AN386,
];

impl Board {
    /// Why the firmware of this board cannot run a model with this file
    /// size, scratch and class count (`None` if it can).
    pub fn refuses(&self, q8_bytes: u64, scratch_i16: u64, outputs: u64) -> Option<String> {
        let r = self.model_region?;
        if q8_bytes > r.bytes {
            return Some(format!(
                "the model is {q8_bytes} bytes, the {} model region holds {} bytes",
                self.name, r.bytes
            ));
        }
        if scratch_i16 > r.scratch_i16 {
            return Some(format!(
                "the model needs {} bytes of inference scratch ({scratch_i16} i16), the {} firmware has {} ({} i16)",
                2 * scratch_i16,
                self.name,
                2 * r.scratch_i16,
                r.scratch_i16
            ));
        }
        if outputs > r.max_outputs {
            return Some(format!(
                "the model has {outputs} classes, the {} firmware at most {}",
                self.name, r.max_outputs
            ));
        }
        None
    }
}
