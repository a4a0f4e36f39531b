#!/usr/bin/env bash
# The main job: train the default recipe, quantize to int8, verify on the
# emulated Cortex-M4 (QEMU mps2-an386), and print a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# defmt-print decodes the firmware's defmt log (about 3 minutes to build once).
command -v defmt-print >/dev/null 2>&1 || cargo install --locked defmt-print
mkdir -p runs
cargo build --release -p tailor
T=target/release/tailor

$T train --recipe default --out runs/default.ckpt --plot runs/train.svg --metrics runs/metrics.csv --json > runs/train.json
$T eval runs/default.ckpt --plot runs/confusion.svg --json > runs/eval.json
$T quantize runs/default.ckpt --out runs/default.q8 --plot runs/quantize.svg --json > runs/quantize.json
$T device runs/default.q8 --log --json > runs/device.json
# A fresh 784-32-10 learns on the emulated Cortex-M4 from one epoch of the
# 60,000 training images; the host replays it and compares the weights.
$T device-train --mode full --hidden 32 --out runs/device-trained.ckpt --json > runs/device-train.json
# Personalization: pre-train without classes 8 and 9, quantize, then a new
# 10-class head learns on the device on the frozen int8 features.
$T train --hidden 128 --withhold 8,9 --epochs 3 --out runs/withheld.ckpt --json > runs/withheld.json
$T quantize runs/withheld.ckpt --out runs/withheld.q8 --json > runs/withheld-q.json
$T device-train --mode head runs/withheld.q8 --out runs/device-head.ckpt --json > runs/device-head.json
# The device's head, saved with the dequantized backbone: a checkpoint like any other.
$T eval runs/device-head.ckpt --json > runs/device-head-eval.json

python3 - <<'PY'
import json
t = json.load(open("runs/train.json"))
q = json.load(open("runs/quantize.json"))
d = json.load(open("runs/device.json"))
dt = json.load(open("runs/device-train.json"))
wh = json.load(open("runs/withheld-q.json"))
hd = json.load(open("runs/device-head.json"))
he = json.load(open("runs/device-head-eval.json"))
c = d["confidence"]
rows = [
    ("f32 test accuracy (host)", f"{100*t['test_accuracy']:.2f} %"),
    ("train time", f"{t['train_seconds']:.0f} s ({t['samples_per_sec']:.0f} samples/s, {t['epochs']} epochs)"),
    ("int8 test accuracy (host)", f"{100*q['int8_accuracy']:.2f} %"),
    ("int8 model size", f"{q['model_bytes']} bytes"),
    ("device accuracy (QEMU Cortex-M4)", f"{100*d['device_accuracy']:.2f} %"),
    ("device == host predictions", f"{d['agree']} / {d['total']}"),
    ("instructions per inference", f"{d['instructions_per_inference']:.0f}"),
    ("device images/s (wall)", f"{d['images_per_sec']:.0f}"),
    ("trained on the device (784-32-10, 1 epoch)", f"{100*dt['device_accuracy']:.2f} % (host replica {100*dt['host_accuracy']:.2f} %)"),
    ("device weights == host weights", "bit for bit" if dt["bit_identical"] else "NO"),
    ("device training RAM", f"{dt['ram_bytes']} bytes, {dt['instructions_per_mac']:.2f} instructions/MAC, {dt['wall_secs']:.0f} s"),
    ("f32 kernels on the device, instructions/MAC", ", ".join(f"{k} {v:.2f}" for k, v in dt["kernel_instructions_per_mac"].items() if v is not None)),
    ("head trained on the device (8, 9 withheld before)", f"{100*wh['int8_accuracy']:.2f} % → {100*hd['device_accuracy']:.2f} % (host {100*hd['host_accuracy']:.2f} %, bit-identical: {hd['bit_identical']}; the same head from f32 features {100*hd['f32_features_accuracy']:.2f} %)"),
    ("saved head (--out) under tailor eval", f"{100*he['test_accuracy']:.2f} %"),
    ("device confidence, right / wrong", f"{100*c['mean_correct']:.1f} % / {100*c['mean_wrong']:.1f} % (calibration error {c['calibration_error']:.3f}, host's on {c['agree']} / {d['total']})"),
]
if d.get("log"):
    print("\nfirmware log (defmt, decoded by defmt-print):\n" + d["log"].rstrip())
w = max(len(r[0]) for r in rows)
print()
print("| " + "what".ljust(w) + " | result |")
print("|" + "-" * (w + 2) + "|--------|")
for k, v in rows:
    print(f"| {k.ljust(w)} | {v} |")
PY
echo
echo "plots: runs/train.svg runs/confusion.svg runs/quantize.svg; per-epoch metrics: runs/metrics.csv"
