#!/usr/bin/env python3
"""The interop round trip with real PyTorch (scripts/torch-interop.sh; not in CI).

1. The tutorial's own model and training code (NeuralNetwork with
   `linear_relu_stack`, SGD lr 1e-3, batch 64, ToTensor inputs) trains on
   Fashion-MNIST; `safetensors.torch.save_file(model.state_dict(), …)` writes
   it. `tailor eval` gives torch's accuracy and predictions (10000/10000),
   `tailor quantize` + `tailor device` run it on the emulated Cortex-M4 with
   10000/10000 agreement, and `tailor train --init` continues from it.
2. tailor's own export loads into the tutorial's class with
   `load_state_dict(strict=True)` and gives tailor's logits.

Usage: TAILOR_BIN=… torch_check.py [WORKDIR]; TORCH_EPOCHS (default 1).
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from check import data_dir, idx, logit_error, normalize, tailor, tailor_json, LOGIT_TOL  # noqa: E402


class NeuralNetwork(nn.Module):
    """The tutorial's model, as written there."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def train_loop(x_all, y_all, model, loss_fn, optimizer, batch_size=64):
    model.train()
    for s in range(0, len(x_all), batch_size):
        X, y = x_all[s : s + batch_size], y_all[s : s + batch_size]
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tailor-torch-")
    os.makedirs(work, exist_ok=True)
    d = data_dir()
    to_tensor = lambda a: torch.from_numpy(a.astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28)
    train_x, train_y = to_tensor(idx(f"{d}/train-images-idx3-ubyte.gz")), torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
    test_raw, test_y = idx(f"{d}/t10k-images-idx3-ubyte.gz"), idx(f"{d}/t10k-labels-idx1-ubyte.gz")
    test_x = to_tensor(test_raw)

    torch.manual_seed(0)
    model = NeuralNetwork()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(int(os.environ.get("TORCH_EPOCHS", "1"))):
        train_loop(train_x, train_y, model, nn.CrossEntropyLoss(), optimizer)
    model.eval()
    with torch.no_grad():
        torch_logits = model(test_x).numpy()
    torch_acc = float((torch_logits.argmax(1) == test_y).mean())
    st = os.path.join(work, "tutorial.safetensors")
    save_file(model.state_dict(), st)
    print(f"torch {torch.__version__}: the tutorial's model, {100 * torch_acc:.2f} %; keys {sorted(model.state_dict())}")

    lg = os.path.join(work, "tutorial_logits.npy")
    ev = tailor_json("eval", st, "--logits", lg)
    ours = np.load(lg)
    same = int((ours.argmax(1) == torch_logits.argmax(1)).sum())
    err = logit_error(torch_logits, ours)
    print(f"tailor eval of it: {100 * ev['test_accuracy']:.2f} %, same class {same}/10000, logit error {err:.2e}")
    assert same == 10000 and err <= LOGIT_TOL, (same, err)

    q8 = os.path.join(work, "tutorial.q8")
    q = tailor_json("quantize", st, "--out", q8)
    dev = tailor_json("device", q8)
    print(f"quantize: int8 {100 * q['int8_accuracy']:.2f} %; device: agree {dev['agree']}/{dev['total']}")
    assert dev["agree"] == dev["total"] == 10000, dev

    init = tailor_json("train", "--init", st, "--epochs", "1", "--out", os.path.join(work, "finetuned.ckpt"))
    print(f"tailor train --init (default recipe, 1 epoch): {100 * init['test_accuracy']:.2f} %")

    ck, back = os.path.join(work, "tailor.ckpt"), os.path.join(work, "tailor.safetensors")
    tailor_json("train", "--epochs", "1", "--out", ck)
    tailor("export", ck, "--format", "safetensors", "--out", back)
    lg2 = os.path.join(work, "tailor_logits.npy")
    tailor_json("eval", ck, "--logits", lg2)
    theirs = NeuralNetwork()
    theirs.load_state_dict(load_file(back), strict=True)
    with safe_open(back, framework="pt") as f:
        norm = json.loads(f.metadata()["tailor.norm"])
    with torch.no_grad():
        logits = theirs(torch.from_numpy(normalize(test_raw, norm))).numpy()
    err = logit_error(logits, np.load(lg2))
    same = int((logits.argmax(1) == np.load(lg2).argmax(1)).sum())
    print(f"tailor's export in the tutorial's class: same class {same}/10000, logit error {err:.2e}")
    assert same == 10000 and err <= LOGIT_TOL, (same, err)
    print("torch interop: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
