"""Train the 257-token digits ViT twice (dense attention, band-masked attention) and export both to ONNX.

The long-sequence example: sklearn's 8x8 digits are upsampled to 16x16 (bilinear) and read as 256 pixel tokens
(one pixel each, raster order) plus a class token, a sequence of 257. The model is the digits ViT's shape
(`../digits_vit/vit.py`: pre-norm blocks, 4 heads x 8, MLP 32 -> 64 -> 32, exact GELU) made for that sequence:
Linear(1 -> 32) per pixel, a learned class token at index 0 and a learned position embedding.

It is trained twice from the same seed:
- dense: every token attends to every token;
- band: token i attends to token j only when |i - j| <= WINDOW // 2 (the pixels of one row before and after it
  in raster order), and the class token is global (it sees, and is seen by, every token). The mask is a
  constant in the exported graph, so `mcu-attn inspect` finds local attention with window WINDOW and one global
  token, and the sparse kernels run O(257 x WINDOW) work per head instead of O(257^2).

Fully seeded and deterministic (one thread). Run from anywhere (needs the `fixtures` extra: torch, scikit-learn,
onnxscript):

    python examples/digits_long/train.py

Writes digits_long_dense.onnx, digits_long_band.onnx, data/{test_x,test_y,calib}.npy and README.md next to
this file.
"""

import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "digits_vit"))
from train import accuracy, load_split, ort_logits, seed_everything, torch_logits, train_model  # noqa: E402
from vit import build_mask  # noqa: E402

SIDE = 16                    # upsampled image side: 256 pixel tokens
TOKENS = SIDE * SIDE
SEQ_LEN = TOKENS + 1         # + the class token
DIM, HEADS, MLP_DIM, BLOCKS = 32, 4, 64, 2
HEAD_DIM = DIM // HEADS
WINDOW = 2 * SIDE            # band: +-16 tokens, one image row either side in raster order
EPOCHS = 30
CALIB = 200


def upsample(images: np.ndarray) -> np.ndarray:
    """[N, 8, 8] -> [N, 16, 16] float32, bilinear (half-pixel centres, edges clamped)."""
    x = torch.from_numpy(images)[:, None]
    up = torch.nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return up[:, 0].numpy().astype(np.float32)


class Attention(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(DIM, DIM) for _ in range(4))
        if mask is not None:
            self.register_buffer("mask", mask, persistent=False)
        else:
            self.mask = None

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (p(x).reshape(b, n, HEADS, HEAD_DIM).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(HEAD_DIM)
        if self.mask is not None:
            scores = scores + self.mask
        return self.out((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, DIM))


class Block(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.attn = Attention(mask)
        self.mlp = nn.Sequential(nn.Linear(DIM, MLP_DIM), nn.GELU(), nn.Linear(MLP_DIM, DIM))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PixelViT(nn.Module):
    """x float32 [B, 16, 16] -> logits [B, 10]; `window` None is dense attention."""

    def __init__(self, window=None):
        super().__init__()
        mask = build_mask(SEQ_LEN, window) if window is not None else None
        self.embed = nn.Linear(1, DIM)
        self.cls = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos = nn.Parameter(torch.randn(1, SEQ_LEN, DIM) * 0.02)
        self.blocks = nn.Sequential(*(Block(mask) for _ in range(BLOCKS)))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 10)

    def forward(self, x):
        b = x.shape[0]
        t = torch.cat([self.cls.expand(b, -1, -1), self.embed(x.reshape(b, TOKENS, 1))], dim=1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])


def share_identical_constants(path):
    """Keep one copy of each identical Constant (the exporter writes the band mask once per block)."""
    import onnx

    model = onnx.load(path)
    first, renamed, kept = {}, {}, []
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            key = node.attribute[0].t.SerializeToString()
            if key in first:
                renamed[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        node.input[:] = [renamed.get(name, name) for name in node.input]
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def train_and_export(name, window, x_tr, y_tr, x_te, y_te):
    seed_everything()
    model = train_model(PixelViT(window), x_tr, y_tr, epochs=EPOCHS)
    acc_torch = accuracy(torch_logits(model, x_te), y_te)
    path = os.path.join(HERE, f"digits_long_{name}.onnx")
    torch.onnx.export(model, (torch.from_numpy(x_te[:1]),), path, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"])
    share_identical_constants(path)
    logits = ort_logits(path, x_te)
    acc_ort = accuracy(logits, y_te)
    diff = float(np.abs(logits - torch_logits(model, x_te)).max())
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: params={params} onnx_bytes={os.path.getsize(path)} test accuracy torch={acc_torch:.4f} "
          f"onnxruntime={acc_ort:.4f} max|logit diff|={diff:.2e}", flush=True)
    return params, acc_torch, acc_ort, diff


def main():
    started = time.time()
    x_tr, y_tr, x_te, y_te = load_split()
    x_tr, x_te = upsample(x_tr), upsample(x_te)
    data_dir = os.path.join(HERE, "data")
    os.makedirs(data_dir, exist_ok=True)
    np.save(os.path.join(data_dir, "test_x.npy"), x_te)
    np.save(os.path.join(data_dir, "test_y.npy"), y_te)
    np.save(os.path.join(data_dir, "calib.npy"), x_tr[:CALIB])
    results = {name: train_and_export(name, window, x_tr, y_tr, x_te, y_te)
               for name, window in (("dense", None), ("band", WINDOW))}
    elapsed = time.time() - started
    print(f"done in {elapsed:.0f} s")
    params = results["dense"][0]
    rows = "\n".join(f"| `digits_long_{name}.onnx` | {label} | {acc_torch:.4f} | {acc_ort:.4f} | {diff:.1e} |"
                     for (name, (_, acc_torch, acc_ort, diff)), label in
                     zip(results.items(), ("dense", f"band of +-{WINDOW // 2} tokens, class token global")))
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(f"""# digits_long: a 257-token sequence

sklearn's 8x8 `load_digits` images upsampled to 16x16 (bilinear) and read as 256 pixel tokens plus a class
token: a sequence of {SEQ_LEN}, long enough that attention dominates the work and local attention pays.

- Architecture (`train.py`, {params} parameters): Linear(1->{DIM}) per pixel, learned class token at index 0 and
  position embedding, {BLOCKS} pre-norm blocks ({HEADS}-head x {HEAD_DIM} self-attention, MLP {DIM}->{MLP_DIM}->{DIM}
  with exact GELU), final LayerNorm, Linear({DIM}->10) on the class token. Opset 17, legacy TorchScript
  exporter, input `x` float32 [1, {SIDE}, {SIDE}], output `logits` [1, 10].
- Two trainings from the same seed ({EPOCHS} epochs): dense attention, and a band mask (token i attends to
  token j when |i - j| <= {WINDOW // 2}, one image row either side in raster order; the class token is global).
  The band is a constant in the graph: `mcu-attn inspect` reports local attention (window {WINDOW}, 1 global token).
- `data/test_x.npy` (450, {SIDE}, {SIDE}) float32 and `data/test_y.npy` (450,) int64: the digits example's test
  split, upsampled. `data/calib.npy` ({CALIB}, {SIDE}, {SIDE}): the first {CALIB} training images.

Measured float test accuracy (450 images) with the command below:

| model | attention | torch | onnxruntime | max \\|logit difference\\| |
|---|---|---|---|---|
{rows}

Regenerate (seeded and deterministic; about {elapsed / 60:.0f} minutes on one CPU core):

    python examples/digits_long/train.py
""")


if __name__ == "__main__":
    main()
