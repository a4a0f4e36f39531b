#!/usr/bin/env bash
# The interop round trip with real PyTorch (optional; not in CI, the CPU
# wheel alone is ~200 MB and PyPI's default Linux wheel pulls CUDA):
# the tutorial's own model and training code -> safetensors -> tailor eval,
# quantize, device (QEMU) and train --init; tailor's export -> the
# tutorial's class via load_state_dict(strict=True).
#
#   scripts/torch-interop.sh [WORKDIR]
#   TORCH_PY=/path/to/python   a Python with torch, numpy and safetensors
#                              (default: target/torchenv, made on first use)
#   TORCH_EPOCHS=N             epochs of the tutorial's training (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${TORCH_PY:-target/torchenv/bin/python}
if ! "$PY" -c 'import torch, numpy, safetensors' 2>/dev/null; then
    [ -n "${TORCH_PY:-}" ] && { echo "$PY lacks torch, numpy or safetensors" >&2; exit 1; }
    python3 -m venv target/torchenv
    # Add --index-url with PyTorch's CPU wheel index to skip the CUDA libraries.
    "$PY" -m pip install --quiet --disable-pip-version-check torch numpy safetensors
fi
cargo build --release -q -p tailor
TAILOR_BIN="$PWD/target/release/tailor" "$PY" tests/interop/torch_check.py "$@"
