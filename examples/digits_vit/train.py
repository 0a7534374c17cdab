"""Train the tiny digits ViT (vit.py) and export it to digits_vit.onnx.

Fully seeded and deterministic (single thread). Run from anywhere:

    python examples/digits_vit/train.py

Writes digits_vit.onnx, data/{test_x,test_y,calib,train_x}.npy and README.md next to this file.
"""

import os
import random
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vit import TinyViT  # noqa: E402

SEED = 0
EPOCHS = 60


def seed_everything(seed=SEED):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def load_split():
    """(x_train, y_train, x_test, y_test): float32 [N, 8, 8] in [0, 1], int64 labels."""
    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=450, random_state=0, stratify=y)
    return x_tr, y_tr, x_te, y_te


def train_model(model, x_train, y_train, epochs=EPOCHS, seed=SEED, lr=3e-3, batch=64):
    """Train in place with AdamW + cosine schedule; deterministic for a given seed."""
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(xt) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def torch_logits(model, x):
    return model(torch.from_numpy(x)).numpy()


def ort_logits(path, x):
    """Run an ONNX model one sample at a time (batch dim 1) with onnxruntime."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def accuracy(logits, y):
    return float((logits.argmax(-1) == y).mean())


def main():
    t0 = time.time()
    x_tr, y_tr, x_te, y_te = load_split()
    data_dir = os.path.join(HERE, "data")
    os.makedirs(data_dir, exist_ok=True)
    np.save(os.path.join(data_dir, "test_x.npy"), x_te)
    np.save(os.path.join(data_dir, "test_y.npy"), y_te)
    np.save(os.path.join(data_dir, "calib.npy"), x_tr[:200])
    np.save(os.path.join(data_dir, "train_x.npy"), x_tr)

    seed_everything()
    model = train_model(TinyViT(), x_tr, y_tr)
    n_params = sum(p.numel() for p in model.parameters())
    pt = torch_logits(model, x_te)
    acc_torch = accuracy(pt, y_te)

    onnx_path = os.path.join(HERE, "digits_vit.onnx")
    torch.onnx.export(model, (torch.from_numpy(x_te[:1]),), onnx_path, dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["logits"])
    ox = ort_logits(onnx_path, x_te)
    acc_ort = accuracy(ox, y_te)
    diff = float(np.abs(ox - pt).max())
    elapsed = time.time() - t0
    print(f"params={n_params} onnx_bytes={os.path.getsize(onnx_path)}")
    print(f"test accuracy torch={acc_torch:.4f} onnxruntime={acc_ort:.4f} "
          f"max|logit diff|={diff:.2e} ({elapsed:.1f}s)")

    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(f"""# digits_vit

A tiny Vision Transformer ({n_params} parameters) classifying sklearn's 8x8 `load_digits`
images (10 classes; the data set ships with scikit-learn).

- `digits_vit.onnx`: opset 17, legacy TorchScript exporter, input `x` float32 [1, 8, 8]
  (pixels / 16), output `logits` [1, 10].
- Architecture (`vit.py`): 16 tokens of 4 pixels (half an image row, plain reshape),
  Linear(4->32) embedding, learned cls token (sequence 17) and position embedding,
  2 pre-norm blocks (LayerNorm, 4-head x 8 self-attention, LayerNorm, MLP 32->64->32
  with exact GELU), final LayerNorm, Linear(32->10) on the cls token.
- `data/test_x.npy` (450, 8, 8) float32, `data/test_y.npy` (450,) int64: held-out test
  split (`train_test_split(test_size=450, random_state=0, stratify=y)`).
  `data/calib.npy` (200, 8, 8) float32: the first 200 training images (for calibration).
  `data/train_x.npy` (1347, 8, 8) float32: every training image (calibration for fine-tuning after pruning).

Regenerate (seeded and deterministic, byte-identical output; about 30 s on one CPU core):

    python examples/digits_vit/train.py

Measured float test accuracy (450 images) with that command: torch {acc_torch:.4f},
onnxruntime {acc_ort:.4f} (max |logit difference| {diff:.1e}).
""")


if __name__ == "__main__":
    main()
