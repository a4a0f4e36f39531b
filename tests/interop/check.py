#!/usr/bin/env python3
"""tailor's models through libraries no one here wrote: safetensors, numpy,
onnx and onnxruntime from PyPI.

1. A model trained by tailor, exported as safetensors, loaded by
   `safetensors.numpy` and run by a numpy forward pass (normalization from the
   file's metadata): same test accuracy as `tailor eval`, logits within 1e-5.
2. A model trained outside tailor (numpy SGD, 784-48-32-10) written by
   `safetensors.numpy.save_file` with no metadata, as PyTorch writes a state
   dict: `tailor eval` equals numpy's predictions, then `tailor quantize` and
   `tailor device` (QEMU) agree with the host on 10000/10000 images.
3. tailor's ONNX export passes `onnx.checker` (full check) and onnxruntime's
   predictions equal `tailor eval`'s on all 10,000 test images.

Usage: TAILOR_BIN=target/release/tailor check.py [WORKDIR]. Prints what it
measured and a closing `interop: N passed, N failed`; exits 1 on a failure.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

TAILOR = os.environ.get("TAILOR_BIN", "target/release/tailor")
LOGIT_TOL = 1e-5


def logit_error(a, b):
    """Largest |a - b| / max(1, |b|): 1e-5 absolute for logits up to 1, and
    relative above, where float32 sums taken in another order (BLAS vs
    tailor's kernels) differ by a few ulps (an ulp of 16 is 1.9e-6)."""
    return float((np.abs(a - b) / np.maximum(1, np.abs(b))).max())


def data_dir():
    """The directory tailor reads Fashion-MNIST from, in tailor's order."""
    for d in [os.environ.get("TAILOR_DATA"), "data/fashion-mnist", "/usr/share/datasets/fashion-mnist"]:
        if d and os.path.exists(os.path.join(d, "t10k-images-idx3-ubyte.gz")):
            return d
    raise SystemExit("Fashion-MNIST not found ($TAILOR_DATA, data/fashion-mnist, /usr/share/datasets/fashion-mnist)")


def idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    a = np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim)
    return a.reshape(dims[0], -1) if ndim > 1 else a


def tailor(*args):
    r = subprocess.run([TAILOR, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"tailor {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def tailor_json(*args):
    return json.loads(tailor(*args, "--json").strip().splitlines()[-1])


def forward(params, x):
    """The MLP of a state dict: Linear, ReLU, …, Linear, in float32."""
    n = len(params) // 2
    for i in range(n):
        w, b = params[f"linear_relu_stack.{2 * i}.weight"], params[f"linear_relu_stack.{2 * i}.bias"]
        assert w.dtype == np.float32 and b.dtype == np.float32
        x = x @ w.T + b
        if i + 1 < n:
            x = np.maximum(x, np.float32(0))
    return x


def normalize(raw, norm):
    """tailor's Norm::value: (raw * scale - mean) / std, dividing bytes by 255."""
    scale = np.float32(norm["scale"])
    x = raw.astype(np.float32)
    x = x / np.float32(255) if scale == np.float32(1 / 255) else x * scale
    return (x - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)


def check_safetensors_export(work, test_x, test_y, state):
    ck, st, lg = (os.path.join(work, f) for f in ("m.ckpt", "m.safetensors", "m_logits.npy"))
    tr = tailor_json("train", "--hidden", "64", "--epochs", "1", "--out", ck)
    tailor("export", ck, "--format", "safetensors", "--out", st)
    ev = tailor_json("eval", ck, "--logits", lg)
    ours = np.load(lg)
    state.update(ck=ck, ev=ev, logits=ours)
    params = load_file(st)
    with safe_open(st, framework="np") as f:
        meta = f.metadata()
    norm = json.loads(meta["tailor.norm"])
    classes = json.loads(meta["tailor.classes"])
    logits = forward(params, normalize(test_x, norm))
    diff, err = float(np.abs(logits - ours).max()), logit_error(logits, ours)
    acc = float((logits.argmax(1) == test_y).mean())
    print(f"  tailor train --hidden 64 --epochs 1: {100 * tr['test_accuracy']:.2f} %; shapes "
          f"{[list(params[k].shape) for k in sorted(params)]}, classes {classes[:2]}…")
    print(f"  numpy forward of the safetensors export: accuracy {100 * acc:.2f} % "
          f"(tailor eval {100 * ev['test_accuracy']:.2f} %), logits up to {float(np.abs(ours).max()):.1f}: "
          f"max |difference| {diff:.2e}, max |difference| / max(1, |logit|) {err:.2e}")
    assert ours.shape == (10000, 10), ours.shape
    assert acc == ev["test_accuracy"], (acc, ev["test_accuracy"])
    assert err <= LOGIT_TOL, err


def train_outside(train_x, train_y, dims=(784, 48, 32, 10), epochs=1, seed=0):
    """Plain numpy minibatch SGD on ToTensor inputs (bytes / 255), the way
    PyTorch's tutorial feeds them: a model tailor has never seen."""
    rng = np.random.default_rng(seed)
    ws = [rng.uniform(-1, 1, (o, i)).astype(np.float32) / np.sqrt(i).astype(np.float32) for i, o in zip(dims, dims[1:])]
    bs = [np.zeros(o, np.float32) for o in dims[1:]]
    x_all = train_x.astype(np.float32) / np.float32(255)
    lr = np.float32(0.1)
    for _ in range(epochs):
        order = rng.permutation(len(x_all))
        for s in range(0, len(order), 64):
            idx_ = order[s : s + 64]
            acts = [x_all[idx_]]
            for i, (w, b) in enumerate(zip(ws, bs)):
                z = acts[-1] @ w.T + b
                acts.append(np.maximum(z, 0) if i + 1 < len(ws) else z)
            z = acts[-1] - acts[-1].max(1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            p[np.arange(len(idx_)), train_y[idx_]] -= 1
            g = p / np.float32(len(idx_))
            for i in reversed(range(len(ws))):
                gw, gb = g.T @ acts[i], g.sum(0)
                if i > 0:
                    g = (g @ ws[i]) * (acts[i] > 0)
                ws[i] -= lr * gw
                bs[i] -= lr * gb
    out = {}
    for i, (w, b) in enumerate(zip(ws, bs)):
        out[f"linear_relu_stack.{2 * i}.weight"] = np.ascontiguousarray(w, np.float32)
        out[f"linear_relu_stack.{2 * i}.bias"] = np.ascontiguousarray(b, np.float32)
    return out


def check_model_from_outside(work, train_x, train_y, test_x, test_y):
    st, lg, q8 = (os.path.join(work, f) for f in ("numpy.safetensors", "numpy_logits.npy", "numpy.q8"))
    params = train_outside(train_x, train_y)
    save_file(params, st)
    logits = forward(params, test_x.astype(np.float32) / np.float32(255))
    np_acc = float((logits.argmax(1) == test_y).mean())
    ev = tailor_json("eval", st, "--logits", lg)
    ours = np.load(lg)
    diff, err = float(np.abs(logits - ours).max()), logit_error(logits, ours)
    same = int((ours.argmax(1) == logits.argmax(1)).sum())
    print(f"  numpy-trained 784-48-32-10 (safetensors.numpy.save_file, no metadata): numpy {100 * np_acc:.2f} %, "
          f"tailor eval {100 * ev['test_accuracy']:.2f} %, same class {same}/10000, max |logit difference| {diff:.2e} "
          f"(relative {err:.2e})")
    assert same == 10000 and err <= LOGIT_TOL, (same, err)
    q = tailor_json("quantize", st, "--out", q8)
    print(f"  tailor quantize: f32 {100 * q['f32_accuracy']:.2f} % -> int8 {100 * q['int8_accuracy']:.2f} %, {q['model_bytes']} bytes")
    assert q["f32_accuracy"] == ev["test_accuracy"], (q["f32_accuracy"], ev["test_accuracy"])
    d = tailor_json("device", q8)
    print(f"  tailor device (QEMU Cortex-M4): {100 * d['device_accuracy']:.2f} %, agree {d['agree']}/{d['total']}, "
          f"logits equal {d['logits_agree']}/{d['total']}")
    assert d["total"] == 10000 and d["agree"] == 10000 and d["logits_agree"] == 10000, d


def check_onnx(work, ck, ev, tailor_logits, test_x, test_y):
    import onnx
    import onnxruntime as ort

    path = os.path.join(work, "m.onnx")
    tailor("export", ck, "--format", "onnx", "--out", path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], {"input": test_x.astype(np.float32)})
    preds, ours = logits.argmax(1), tailor_logits.argmax(1)
    same = int((preds == ours).sum())
    diff, err = float(np.abs(logits - tailor_logits).max()), logit_error(logits, tailor_logits)
    acc = float((preds == test_y).mean())
    print(f"  ONNX opset {model.opset_import[0].version}, nodes {ops}: onnx.checker passes; onnxruntime "
          f"{ort.__version__} accuracy {100 * acc:.2f} % (tailor eval {100 * ev['test_accuracy']:.2f} %), "
          f"same prediction {same}/10000, max |logit difference| {diff:.2e} (relative {err:.2e})")
    assert same == 10000, same
    assert err <= LOGIT_TOL, err
    assert model.opset_import[0].version >= 13


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tailor-interop-")
    os.makedirs(work, exist_ok=True)
    d = data_dir()
    test_x, test_y = idx(f"{d}/t10k-images-idx3-ubyte.gz"), idx(f"{d}/t10k-labels-idx1-ubyte.gz")
    train_x, train_y = idx(f"{d}/train-images-idx3-ubyte.gz"), idx(f"{d}/train-labels-idx1-ubyte.gz")
    print(f"interop round trip: tailor {TAILOR}, data {d}, work {work}; numpy {np.__version__}")
    passed = failed = 0
    state = {}

    def run(name, f):
        nonlocal passed, failed
        print(f"- {name}")
        try:
            f()
            passed += 1
        except Exception:  # report every check, then fail
            traceback.print_exc()
            print(f"  FAILED: {name}")
            failed += 1

    run("safetensors export -> safetensors.numpy + numpy forward",
        lambda: check_safetensors_export(work, test_x, test_y, state))
    run("numpy-trained state dict -> tailor eval, quantize, device",
        lambda: check_model_from_outside(work, train_x, train_y, test_x, test_y))
    if "ck" in state:
        run("ONNX export -> onnx.checker + onnxruntime",
            lambda: check_onnx(work, state["ck"], state["ev"], state["logits"], test_x, test_y))
    else:
        print("- ONNX export: FAILED, no model (tailor train or eval failed above)")
        failed += 1
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
