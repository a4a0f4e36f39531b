#!/usr/bin/env bash
# The cargo-fuzz targets of every parser (fuzz/fuzz_targets, README: Fuzzing).
#
#   scripts/fuzz.sh check            every target over its committed corpus,
#                                    then 5 s of fuzzing each (the test command)
#   scripts/fuzz.sh run SECS [T...]  fuzz targets T (default: all) for SECS
#                                    seconds each, one after another; new
#                                    inputs go to target/fuzz-corpus/T, the
#                                    final stats to target/fuzz-logs/T.log
#   scripts/fuzz.sh cmin T           minimize the committed corpus of T (add
#                                    new inputs to fuzz/corpus/T first)
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov) to
# rustc; the pinned toolchain is stable, and RUSTC_BOOTSTRAP=1 lets stable
# rustc take them. It is set here only, never for the other builds.
# AddressSanitizer works on it: the targets run with it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
# The data targets write each input to a scratch file under the temp dir:
# a private one, removed at the end.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

targets() { cargo fuzz list; }

case "${1:-check}" in
check)
    cargo fuzz build
    for t in $(targets); do
        echo "fuzz $t: corpus ($(ls corpus/$t | wc -l) inputs) and regressions, then 5 s"
        # An empty scratch corpus first: libFuzzer writes new inputs to the
        # first directory, and the committed one must stay as it is.
        scratch=$(mktemp -d)
        rc=0
        # regressions/T: the inputs of every crash found, kept apart from
        # the minimized corpus so that they always run.
        dirs=("corpus/$t")
        [ -d "regressions/$t" ] && dirs+=("regressions/$t")
        out=$(cargo fuzz run "$t" "$scratch" "${dirs[@]}" -- -max_total_time=5 -print_final_stats=1 2>&1) || rc=$?
        rm -rf "$scratch"
        if [ "$rc" != 0 ]; then
            echo "$out" | tail -40
            echo "fuzz target $t failed (its input is in fuzz/artifacts/$t)" >&2
            exit 1
        fi
        echo "$out" | grep -E '^stat::number_of_executed_units' || true
    done
    ;;
run)
    secs=${2:?seconds}
    shift 2
    mkdir -p ../target/fuzz-logs
    for t in ${@:-$(targets)}; do
        mkdir -p "../target/fuzz-corpus/$t"
        nice -n 19 cargo fuzz run "$t" "../target/fuzz-corpus/$t" "corpus/$t" -- \
            -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 >"../target/fuzz-logs/$t.log" 2>&1
        grep -E 'stat::(number_of_executed_units|average_exec_per_sec)|Done' "../target/fuzz-logs/$t.log"
    done
    ;;
cmin)
    # Keeps the inputs that reach new edges (hit counts and comparisons
    # ignored: the committed corpus stays small).
    t=${2:?target}
    cargo fuzz cmin "$t" "corpus/$t" -- -use_counters=0 -use_cmp=0
    ;;
*)
    echo "usage: scripts/fuzz.sh check | run SECS [TARGET...] | cmin TARGET" >&2
    exit 2
    ;;
esac
