#!/usr/bin/env bash
# Instructions per multiply-accumulate of the aarch64 kernel sets, counted
# under qemu-aarch64 (user mode) with a TCG plugin: QEMU is no timing model,
# so this is the proxy for speed that this x86 machine can give. For each
# product, (count with 3 repetitions − count with 1) / (2 · MACs).
# Usage: scripts/aarch64-insns.sh [KERNEL SET…] (default: portable neon);
# PRODUCTS="…" runs only those products.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
T=aarch64-unknown-linux-gnu
cargo build -q --release -p tailor --target $T --example kernel_insns
plugin=target/qemu-insn-count.so
gcc -O2 -shared -fPIC -o $plugin scripts/qemu-insn-count.c
bin=target/$T/release/examples/kernel_insns
sets=("${@:-portable}")
[ $# -gt 0 ] || sets+=(neon)
count() { # KERNELS PRODUCT REPS -> "instructions macs"
    local out
    out=$(qemu-aarch64 -L /usr/aarch64-linux-gnu -plugin "$PWD/$plugin" "$bin" "$@" 2>&1)
    echo "$(sed -n 's/^insns: //p' <<<"$out") $(head -1 <<<"$out")"
}
printf '%-20s' product; printf ' %10s' "${sets[@]}"; echo "   (instructions per MAC)"
for p in ${PRODUCTS:-forward forward_thin forward_panels forward_panels_1 forward_panels_relu input_grad input_grad_relu weight_grad weight_grad_relu weight_grad_sgd weight_grad_sgd_relu weight_grad_adam int8_gemm}; do
    printf '%-20s' $p
    for s in "${sets[@]}"; do
        k=$s; [ $p = int8_gemm ] && k=q:$s
        read -r i1 macs < <(count $k $p 1)
        read -r i3 _ < <(count $k $p 3)
        awk -v a="$i1" -v b="$i3" -v m="$macs" 'BEGIN { printf " %10.3f", (b - a) / (2 * m) }'
    done
    echo
done
