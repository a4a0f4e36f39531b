#!/usr/bin/env bash
# The README's worked example: your own tabular data, your own model, your
# board. Takes scikit-learn's copy of the Wisconsin breast-cancer data (569
# samples of 30 measurements, 2 classes; Debian's python3-sklearn ships it
# as a CSV), splits it 80/20 into CSVs with a header row, then trains a
# small MLP, quantizes it, and runs it on the emulated Cortex-M4.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
out=${1:-runs/csv-example}
mkdir -p "$out"
if ! python3 -c 'import sklearn' 2>/dev/null && [ ! -f /usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq python3-sklearn >/dev/null
    else
        echo "csv-example: run: sudo apt-get install -y python3-sklearn" >&2; exit 1
    fi
fi
/usr/bin/python3 - "$out" <<'PY'
import csv, os, random, sys
import sklearn.datasets as d
src = os.path.join(os.path.dirname(d.__file__), "data", "breast_cancer.csv")
rows = list(csv.reader(open(src)))[1:]          # first line: counts and class names
names = [n.replace(" ", "_") for n in d.load_breast_cancer().feature_names]
random.Random(0).shuffle(rows)
cut = int(0.8 * len(rows))
for name, part in [("train", rows[:cut]), ("test", rows[cut:])]:
    with open(os.path.join(sys.argv[1], f"{name}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names + ["diagnosis"])
        w.writerows(part)
print(f"{cut} training and {len(rows) - cut} test rows of {len(names)} features")
PY
cargo build --release -q -p tailor
T=target/release/tailor
data=(--train "$out/train.csv" --test "$out/test.csv" --label-column diagnosis --classes malignant,benign)
$T train "${data[@]}" --hidden 16 --epochs 30 --out "$out/cancer.ckpt"
$T eval "$out/cancer.ckpt" "${data[@]}"
$T quantize "$out/cancer.ckpt" "${data[@]}" --out "$out/cancer.q8"
$T device "$out/cancer.q8" "${data[@]}"
