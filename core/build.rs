//! Enables the Cortex-M DSP (`SMLAD`/`SXTB16`) int8 kernels, and the
//! Cortex-M4F f32 kernels (`tailor_arm_fpu`) on hard-float Arm targets.
//!
//! On stable Rust, ARM target features such as `dsp` are not visible to
//! `cfg(target_feature = ...)`, so the decision is made here from the target
//! name: ARMv7E-M (`thumbv7em-*`, Cortex-M4/M7) always has the DSP extension.
//! `TAILOR_ARM_DSP=0` forces it off, `=1` forces it on (for `thumbv8m.main`
//! parts that implement it, e.g. most Cortex-M33).
fn main() {
    println!("cargo:rustc-check-cfg=cfg(tailor_arm_dsp)");
    println!("cargo:rerun-if-env-changed=TAILOR_ARM_DSP");
    let target = std::env::var("TARGET").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let arm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "arm");
    let auto = target.starts_with("thumbv7em") || features.split(',').any(|f| f == "dsp");
    let on = match std::env::var("TAILOR_ARM_DSP").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => auto,
    };
    if arm && on {
        println!("cargo:rustc-cfg=tailor_arm_dsp");
    }
    // The f32 kernels of `gemm::m4` need a hardware FPU (VFP `VLDM`/`VMLA`):
    // the hard-float targets (`*-eabihf`) have one.
    println!("cargo:rustc-check-cfg=cfg(tailor_arm_fpu)");
    if arm && target.ends_with("eabihf") {
        println!("cargo:rustc-cfg=tailor_arm_fpu");
    }
}
