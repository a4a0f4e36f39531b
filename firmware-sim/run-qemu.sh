#!/bin/sh
# cargo runner: runs the firmware ELF in QEMU (mps2-an386, Cortex-M4F) with
# instruction counting, the int8 model written into the model region (as a
# probe would flash it; TAILOR_MODEL=path, default models/default.q8,
# `none` for an empty region), decodes defmt logs (semihosting stdout) with
# defmt-print when it is installed, and exits with QEMU's status.
# Extra semihosting args: TAILOR_FW_ARGS="arg=fw,arg=uart" (default: none).
elf="$1"
shift
set -u
# tests/faults.rs must fault: expect-fault.sh runs it per case and inverts.
case "${elf##*/}" in
faults-*) [ -z "${TAILOR_FAULT_CASE:-}" ] && exec sh "$(dirname "$0")/expect-fault.sh" "$elf" ;;
esac
qemu=qemu-system-arm
command -v "$qemu" >/dev/null || { echo "error: $qemu not found (apt-get install qemu-system-arm)" >&2; exit 127; }
semi="enable=on,target=native${TAILOR_FW_ARGS:+,$TAILOR_FW_ARGS}"
model="${TAILOR_MODEL:-$(dirname "$0")/models/default.q8}"
# The model region's base: MODEL in memory.x.
set --
if [ "$model" != none ]; then
  set -- -device "loader,file=$model,addr=0x00100000,force-raw=on"
fi
if command -v defmt-print >/dev/null; then
  status=$( { { "$qemu" -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial null \
      -icount shift=0 -semihosting-config "$semi" "$@" -kernel "$elf"; echo $? >&3; } \
      | defmt-print -e "$elf" >&2; } 3>&1 )
  exit "$status"
else
  exec "$qemu" -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial null \
      -icount shift=0 -semihosting-config "$semi" "$@" -kernel "$elf"
fi
