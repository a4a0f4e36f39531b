#!/usr/bin/env bash
# Runs PyTorch's reference (../shared/bench) and `tailor bench` alternately,
# ROUNDS times per thread count, and prints each round's ratios and their
# median. The host is shared and noisy, so only ratios taken back to back
# in one run mean anything.
#
#   scripts/bench-vs-torch.sh [--optimizer sgd|adam] [--kernels avx2|avx512|...] [ROUNDS] [THREADS...]
#                                                      (default: sgd, detected kernels, 3 rounds, 1 2)
#   TORCH_PY=/path/to/python  (default /tmp/torch-venv/bin/python)
#
# --optimizer adam trains both sides with Adam on shuffled batches
# (`torch_mlp.py --optimizer adam --shuffle`, the default recipe's setting).
# --kernels avx2 forces both sides to AVX2: TAILOR_KERNELS for tailor, MKL's
# and oneDNN's ISA caps for PyTorch (on an AVX-512 machine, AVX2 users' view).
set -euo pipefail
cd "$(dirname "$0")/.."
OPT=sgd
while [ $# -gt 0 ]; do
    case "$1" in
    --optimizer) OPT=$2; shift 2 ;;
    --kernels)
        export TAILOR_KERNELS=$2
        if [ "$2" = avx2 ]; then export MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2; fi
        shift 2 ;;
    *) break ;;
    esac
done
case "$OPT" in
sgd) TORCH_OPT=(--optimizer sgd); TAILOR_OPT=(--optimizer sgd) ;;
adam) TORCH_OPT=(--optimizer adam --shuffle); TAILOR_OPT=(--optimizer adam --shuffle) ;;
*) echo "--optimizer $OPT: expected sgd or adam" >&2; exit 2 ;;
esac
ROUNDS=${1:-3}
shift || true
THREADS=("${@:-1}")
[ $# -eq 0 ] && THREADS=(1 2)
PY=${TORCH_PY:-/tmp/torch-venv/bin/python}
SHARED=${SHARED:-../shared/bench}
if [ ! -x "$PY" ]; then
    echo "PyTorch not found at $PY. Install it with:" >&2
    echo "  python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy" >&2
    exit 2
fi
cargo build --release -q -p tailor
TAILOR=target/release/tailor
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for t in "${THREADS[@]}"; do
    for r in $(seq 1 "$ROUNDS"); do
        "$PY" "$SHARED/torch_mlp.py" --epochs 1 --no-test --threads "$t" "${TORCH_OPT[@]}" >"$OUT/torch_train_${t}_$r.txt"
        "$PY" "$SHARED/torch_bench.py" --threads "$t" >"$OUT/torch_infer_${t}_$r.txt"
        "$TAILOR" bench --threads "$t" "${TAILOR_OPT[@]}" --json >"$OUT/tailor_${t}_$r.json"
    done
done
python3 - "$OUT" "$ROUNDS" "${THREADS[@]}" <<'EOF'
import json, re, statistics, sys
out, rounds, threads = sys.argv[1], int(sys.argv[2]), [int(t) for t in sys.argv[3:]]
def torch_train(path):
    for line in open(path):
        f = line.split()
        if len(f) >= 3 and f[0].isdigit():
            return float(f[2])
def torch_infer(path):
    v = {}
    for line in open(path):
        m = re.match(r"infer bs=\s*(\d+):.*->\s*(\d+) samples/s", line)
        if m:
            v[int(m.group(1))] = float(m.group(2))
    return v
first = json.load(open(f"{out}/tailor_{threads[0]}_1.json"))
print(f"tailor kernels {first['kernels']}, optimizer {first['optimizer']}{', shuffled' if first['shuffle'] else ''}")
print("| threads | round | tailor train | PyTorch train | ratio | tailor infer 64 | PyTorch infer 64 | ratio | tailor infer 1 | PyTorch infer 1 | ratio | int8 64 | int8 1 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in threads:
    ratios = {"train": [], "i64": [], "i1": []}
    for r in range(1, rounds + 1):
        d = json.load(open(f"{out}/tailor_{t}_{r}.json"))
        tt = torch_train(f"{out}/torch_train_{t}_{r}.txt")
        ti = torch_infer(f"{out}/torch_infer_{t}_{r}.txt")
        a = (d["train_samples_per_sec"], tt)
        b = (d["infer_samples_per_sec"], ti.get(64, float("nan")))
        c = (d["infer_batch1_samples_per_sec"], ti.get(1, float("nan")))
        ratios["train"].append(a[0] / a[1]); ratios["i64"].append(b[0] / b[1]); ratios["i1"].append(c[0] / c[1])
        cells = [f"{x:,.0f} | {y:,.0f} | {x / y:.2f}×" for x, y in (a, b, c)]
        print(f"| {t} | {r} | " + " | ".join(cells) + f" | {d['int8_infer_samples_per_sec']:,.0f} | {d.get('int8_batch1_samples_per_sec') or 0:,.0f} |")
    med = {k: statistics.median(v) for k, v in ratios.items()}
    print(f"| {t} | median | | | {med['train']:.2f}× | | | {med['i64']:.2f}× | | | {med['i1']:.2f}× | | |")
EOF
