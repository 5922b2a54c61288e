#!/usr/bin/env python3
"""Golden values from PyTorch for a whole tiny CRNN (tests/checkpoint.rs).

Usage:
    /path/to/venv/bin/python tests/golden/make_crnn_golden.py
        Writes tests/golden/crnn_tiny/model.safetensors, tests/golden/crnn_tiny/config.json
        and tests/golden/crnn_tiny_logits.rs next to this script, and prints the
        parameter counts of the presets crnn-t and crnn-s (hard-coded in tests/nn_crnn.rs).

    /path/to/venv/bin/python tests/golden/make_crnn_golden.py --check-rust DIR
        The reverse direction (Rust -> PyTorch). DIR is written by a Rust test run:
            RETORT_CRNN_EXPORT=DIR cargo test --test checkpoint export_for_pytorch
        It holds two checkpoint folders saved by retort, `golden/` (the golden model
        loaded and saved again) and `rust_init/` (a model initialised and trained a
        little in Rust, with non-trivial running statistics), each with `io.json`:
        the input, widths (all full) and the logits retort computed. This mode loads
        each folder into the PyTorch model below and checks that PyTorch gives the
        same logits to 1e-4 (relative, max(1, |want|)).

The model is the CRNN of reference-models.md: per block conv 3x3 pad 1 without
bias, BatchNorm2d (eps 1e-5, momentum 0.1), ReLU, optional max pool (kernel =
stride); columns become time steps with feature index c*H + h; nn.LSTM; a
linear head. Module names give the checkpoint names cnn.b{i}.conv.weight,
cnn.b{i}.bn.{weight,bias,running_mean,running_var}, rnn.weight_ih_l{k}[_reverse],
..., head.weight, head.bias.

Precision: weights and running statistics are float32 (what the safetensors file
holds); the reference logits are computed by PyTorch in float64 from exactly those
values (model.double(), eval mode) and rounded to float32. The input is float32.

Without packing, nn.LSTM reads every sample over all T steps, so the golden
samples are full width (retort then gives every sample T steps too).
"""

import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "crnn_tiny")

TINY = {
    "in_channels": 1,
    "height": 32,
    "blocks": [
        {"out_channels": 4, "pool": [2, 2]},
        {"out_channels": 6, "pool": None},
        {"out_channels": 8, "pool": [2, 1]},
        {"out_channels": 8, "pool": [2, 2]},
    ],
    "hidden": 6,
    "layers": 2,
    "bidirectional": True,
    "num_classes": 11,
    "dropout": 0.0,
}
TINY_CHARSET = list("0123456789")


def preset(name):
    chans, hidden, layers = {"crnn-t": ([32, 64, 128, 128], 128, 2),
                             "crnn-s": ([8, 16, 32, 32], 48, 1)}[name]
    pools = [[2, 2], [2, 2], None, [2, 1]]
    return {
        "in_channels": 1, "height": 32,
        "blocks": [{"out_channels": c, "pool": p} for c, p in zip(chans, pools)],
        "hidden": hidden, "layers": layers, "bidirectional": True, "num_classes": 37,
        "dropout": 0.0,
    }


class Block(nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = tuple(pool) if pool else None

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        if self.pool:
            x = F.max_pool2d(x, self.pool, self.pool)
        return x


class CRNN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cnn = nn.ModuleDict()
        c, h = cfg["in_channels"], cfg["height"]
        for i, b in enumerate(cfg["blocks"]):
            self.cnn[f"b{i + 1}"] = Block(c, b["out_channels"], b["pool"])
            c = b["out_channels"]
            if b["pool"]:
                h //= b["pool"][0]
        self.rnn = nn.LSTM(c * h, cfg["hidden"], num_layers=cfg["layers"],
                           bidirectional=cfg["bidirectional"], dropout=cfg.get("dropout", 0.0))
        dirs = 2 if cfg["bidirectional"] else 1
        self.head = nn.Linear(dirs * cfg["hidden"], cfg["num_classes"])

    def forward(self, x):
        for block in self.cnn.values():
            x = block(x)
        n, c, h, w = x.shape
        seq = x.permute(3, 0, 1, 2).reshape(w, n, c * h)
        out, _ = self.rnn(seq)
        return self.head(out)


def f32_lit(v):
    v = np.float32(v)
    if v == 0:
        return "-0.0" if np.signbit(v) else "0.0"
    return np.format_float_scientific(v, unique=True, trim="0", exp_digits=1)


def rust_array(name, a):
    a = np.asarray(a, dtype=np.float32)
    dims = ", ".join(str(d) for d in a.shape)
    lits = [f32_lit(v) for v in a.reshape(-1)]
    lines = ["    " + ", ".join(lits[i:i + 8]) + "," for i in range(0, len(lits), 8)]
    return (f"pub const {name}_SHAPE: [usize; {a.ndim}] = [{dims}];\n"
            f"pub const {name}: [f32; {len(lits)}] = [\n" + "\n".join(lines) + "\n];\n\n")


def state_dict_for_file(model):
    return {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def eval_logits64(model, x):
    """Eval-mode logits computed in float64 from the model's (float32) values."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m(x.double())


def make():
    torch.manual_seed(20240611)
    torch.set_num_threads(1)
    model = CRNN(TINY)
    with torch.no_grad():
        for block in model.cnn.values():
            block.bn.weight.uniform_(0.5, 1.5)
            block.bn.bias.uniform_(-0.5, 0.5)
    # Non-trivial running statistics: a few training-mode forwards.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 1, 32, 24) * 2.4 - 1.0)
    tensors = state_dict_for_file(model)
    for k, v in tensors.items():
        if k.endswith("running_mean"):
            assert v.abs().max() > 1e-3, k
        if k.endswith("running_var"):
            assert (v - 1).abs().max() > 1e-3, k
    os.makedirs(OUT_DIR, exist_ok=True)
    save_file(tensors, os.path.join(OUT_DIR, "model.safetensors"))
    with open(os.path.join(OUT_DIR, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"model": TINY, "charset": TINY_CHARSET}, f, indent=2)
        f.write("\n")

    # Reload the float32 values that were written and compute in float64.
    reloaded = CRNN(TINY)
    missing, unexpected = reloaded.load_state_dict(load_file(os.path.join(OUT_DIR, "model.safetensors")),
                                                   strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    x = torch.rand(2, 1, 32, 24, dtype=torch.float32) * 2.0 - 1.0
    logits = eval_logits64(reloaded, x)
    assert logits.shape == (6, 2, 11), logits.shape
    # The float32 eval forward agrees with the float64 one.
    with torch.no_grad():
        l32 = reloaded.eval()(x)
    assert torch.allclose(l32.double(), logits, atol=1e-5), (l32.double() - logits).abs().max()

    text = ("// generated by tests/golden/make_crnn_golden.py — do not edit\n"
            f"// torch {torch.__version__}. The tiny CRNN of tests/golden/crnn_tiny/ (config.json,\n"
            "// model.safetensors saved by PyTorch), eval mode, input (2, 1, 32, 24) with both\n"
            "// samples full width; logits (T=6, N=2, K=11) computed in float64 from the f32\n"
            "// weights and rounded to f32.\n"
            "#![allow(dead_code, clippy::excessive_precision, clippy::unreadable_literal)]\n\n"
            "pub const CRNN_TINY_WIDTHS: [usize; 2] = [24, 24];\n\n")
    text += rust_array("CRNN_TINY_INPUT", x.numpy())
    text += rust_array("CRNN_TINY_LOGITS", logits.numpy())
    path = os.path.join(HERE, "crnn_tiny_logits.rs")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path} ({len(text)} bytes) and {OUT_DIR}/")
    print("tiny parameters:", sum(p.numel() for p in model.parameters()))
    for name in ("crnn-t", "crnn-s"):
        m = CRNN(preset(name))
        print(f"{name} parameters: {sum(p.numel() for p in m.parameters())}")
        names = [k for k in m.state_dict() if not k.endswith("num_batches_tracked")]
        print(f"{name} state dict: {len(names)} tensors")
        with torch.no_grad():
            m.eval()
            out = m(torch.zeros(2, 1, 32, 128))
        assert out.shape == (32, 2, 37)


def check_rust(root):
    ok = True
    for sub in ("golden", "rust_init"):
        d = os.path.join(root, sub)
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        with open(os.path.join(d, "io.json"), encoding="utf-8") as f:
            io = json.load(f)
        model = CRNN(cfg["model"])
        tensors = load_file(os.path.join(d, "model.safetensors"))
        assert all(v.dtype == torch.float32 for v in tensors.values())
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        assert not unexpected, unexpected
        assert all(k.endswith("num_batches_tracked") for k in missing), missing
        assert all(w == io["input_shape"][3] for w in io["widths"]), "widths must be full"
        x = torch.tensor(io["input"], dtype=torch.float32).reshape(io["input_shape"])
        want = np.asarray(io["logits"], dtype=np.float64).reshape(io["logits_shape"])
        got = eval_logits64(model, x).numpy()
        err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
        print(f"{sub}: logits {got.shape}, worst relative error {err:.3g}")
        ok &= got.shape == want.shape and err <= 1e-4
    if not ok:
        sys.exit("MISMATCH between retort's and PyTorch's logits")
    print("retort-saved checkpoints give the same logits in PyTorch")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-rust":
        check_rust(sys.argv[2])
    elif len(sys.argv) == 1:
        make()
    else:
        sys.exit(__doc__)
