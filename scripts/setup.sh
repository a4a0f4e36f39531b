#!/usr/bin/env bash
# Installs what tailor needs and is missing. Sourced by main.sh and test.sh.
# As root it installs with apt-get; otherwise it prints the exact command.
set -euo pipefail

need_apt=()
command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
# The C API's example firmware (tests/tests/c_api.rs) builds with GCC and newlib.
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need_apt+=(gcc-arm-none-eabi)
[ -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/libc_nano.a ] || need_apt+=(libnewlib-arm-none-eabi)
# The NEON kernels' tests: cross-linked for aarch64, run under QEMU user mode.
command -v qemu-aarch64 >/dev/null 2>&1 || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu)
if [ -z "${TAILOR_DATA:-}" ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] \
    && [ ! -f ./data/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    need_apt+=(dataset-fashion-mnist)
fi
# The interop round trip (test.sh) makes a venv and pip-installs into it.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${need_apt[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: missing ${need_apt[*]}; run: sudo apt-get install -y ${need_apt[*]}" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: Rust is missing; install it with: curl https://sh.rustup.rs -sSf | sh -s -- -y" >&2
    exit 1
fi
# rust-toolchain.toml lists the toolchain, components and the thumbv7em
# target; rustup installs whatever of it is missing.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target list --installed 2>/dev/null | grep -q thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf
rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

# The firmware links with flip-link (stack below .bss/.data: an overflow
# faults instead of corrupting memory).
if ! command -v flip-link >/dev/null 2>&1; then
    echo "setup: installing flip-link (cargo install)" >&2
    cargo install --locked flip-link >/dev/null
fi

# The fuzz targets (scripts/fuzz.sh, in the test command) build with cargo-fuzz.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz (cargo install)" >&2
    cargo install --locked cargo-fuzz >/dev/null
fi
