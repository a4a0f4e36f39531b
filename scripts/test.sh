#!/usr/bin/env bash
# Every test of tailor: unit and property tests, gradient checks, real-data
# training accuracy, the thumbv7em build, on-target tests under QEMU and the
# end-to-end host<->QEMU tests. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export TAILOR_REQUIRE_DATA=1

step() { echo; echo "=== $* ==="; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "core builds for Cortex-M4F with no std and no alloc"
# thumbv7em has no std, so this build proves std is used only in tests;
# alloc would build there too, so it is banned outright.
cargo build -p tailor-core --target thumbv7em-none-eabihf --release
if grep -rnP 'extern crate alloc|(?<![\w:])alloc::' core/src; then
    echo "tailor-core must not use alloc" >&2; exit 1
fi

step "workspace tests (unit, proptest, gradient checks, real-data training)"
cargo build --release -p tailor
export TAILOR_BIN="$PWD/target/release/tailor"
cargo test --workspace --release --exclude tailor-e2e -- --test-threads 1

step "Python venv for the interop round trip (safetensors, numpy, onnx, onnxruntime from PyPI)"
# tests/tests/interop.rs runs tests/interop/check.py with it. A venv that
# cannot be made fails the suite; only outside CI may TAILOR_SKIP_PY=1 skip.
if [[ "${TAILOR_SKIP_PY:-}" == 1 && -z "${CI:-}" ]]; then
    echo "skipping the Python round trip: TAILOR_SKIP_PY=1"
else
    unset TAILOR_SKIP_PY
    PY=target/pyenv/bin/python
    if ! "$PY" -c 'import safetensors, numpy, onnx, onnxruntime' 2>/dev/null; then
        python3 -m venv target/pyenv
        "$PY" -m pip install --quiet --disable-pip-version-check safetensors numpy onnx onnxruntime
    fi
    "$PY" -c 'import safetensors, numpy, onnx, onnxruntime as o; print("venv:", numpy.__version__, onnx.__version__, o.__version__)'
    export TAILOR_PYTHON="$PWD/$PY"
fi

step "end-to-end: real-data training accuracy, CLI errors, host <-> QEMU device, PyTorch/ONNX interop"
# --nocapture shows the measured accuracies and timings in the CI log.
cargo test --release -p tailor-e2e -- --test-threads 1 --nocapture

step "fuzz targets: every parser over its committed corpus, then 5 s of fuzzing each"
# scripts/fuzz.sh sets RUSTC_BOOTSTRAP=1 for this step only (cargo-fuzz's
# nightly flags on the stable toolchain).
scripts/fuzz.sh check

step "firmware: format, lints, on-target tests on the emulated Cortex-M4 (QEMU mps2-an386)"
(cd firmware-sim && cargo fmt -- --check && cargo clippy --all-targets -- -D warnings && cargo test)
echo; echo "all tests passed"
