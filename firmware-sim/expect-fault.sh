#!/bin/sh
# Runs tests/faults.rs (ELF $1) once per case under run-qemu.sh and passes
# only if each run faults as expected: QEMU exit status 1 and the HardFault
# handler's report (with "(stack overflow)" for the overflow case only).
# run-qemu.sh sends `faults-*` test binaries here; TAILOR_FAULT_CASE set
# means "just run it".
elf="$1"
here=$(dirname "$0")
failed=0
for case in overflow hardfault; do
    out=$(TAILOR_FAULT_CASE=$case TAILOR_FW_ARGS="arg=$case" TAILOR_MODEL=none sh "$here/run-qemu.sh" "$elf" 2>&1)
    status=$?
    report=$(printf '%s\n' "$out" | grep 'HardFault' | head -1)
    ok=1
    [ "$status" = 1 ] || ok=0
    [ -n "$report" ] || ok=0
    case "$case" in
    overflow) printf '%s' "$report" | grep -q '(stack overflow)' || ok=0 ;;
    *) printf '%s' "$report" | grep -q '(stack overflow)' && ok=0 ;;
    esac
    if [ "$ok" = 1 ]; then
        echo "fault $case ... ok (exit $status: $report)" >&2
    else
        echo "fault $case ... FAILED: exit $status, output:" >&2
        printf '%s\n' "$out" >&2
        failed=$((failed + 1))
    fi
done
echo "faults: $((2 - failed)) passed, $failed failed" >&2
[ "$failed" = 0 ]
