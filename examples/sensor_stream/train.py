"""Train a causal activity classifier on a synthetic 3-axis accelerometer stream and export it to ONNX.

The streaming example (docs/dynamic.md, "Streaming"): a wrist sensor sampled at 50 Hz, read in frames of 8
samples x 3 axes (one token = 24 values, 0.16 s). Five activities, each a parametric signal with randomised
frequency, amplitude, phase, orientation and noise: idle (gravity and a little sensor noise), walking (about
1.8 steps/s), running (about 2.8 steps/s, harder impacts), cycling (smooth pedalling about 1.2 Hz in the
horizontal axes) and jumping (impacts about every 0.8 s). A stream is a sequence of activity segments of 3 to
12 s; the label of a frame is its segment's activity.

The model sees a window of 32 frames (5.1 s) and classifies the LAST frame: Linear(24 -> 32) per frame, no
position embedding (a streaming model must not depend on where a frame sits in the window), 2 pre-norm blocks
with causal local attention (each frame attends to itself and the 7 frames before it: a constant causal band
mask, 4 heads x 8), MLP 32 -> 64 -> 32 with exact GELU, final LayerNorm, Linear(32 -> 5) on the last frame.
The last frame's output depends on the last 2 x 7 + 1 = 15 frames only, so a stream that keeps each layer's
last 8 keys and values computes it from one new frame, exactly as re-running the window would.

Fully seeded and deterministic (one thread). Run from anywhere (needs the `fixtures` extra: torch,
scikit-learn, onnxscript):

    python examples/sensor_stream/train.py

Writes sensor_stream.onnx, data/{calib,test_x,test_y,stream_x,stream_y}.npy and README.md next to this file.
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
from train import SEED, ort_logits, seed_everything, torch_logits, train_model  # noqa: E402

RATE = 50                      # samples per second
FRAME = 8                      # samples per token
AXES = 3
FEATURES = FRAME * AXES        # 24 values per token
WINDOW = 32                    # tokens per model input (5.1 s)
ATTENTION = 8                  # each token attends to itself and the 7 before it (causal band)
DIM, HEADS, MLP_DIM, BLOCKS = 32, 4, 64, 2
HEAD_DIM = DIM // HEADS
CLASSES = ("idle", "walking", "running", "cycling", "jumping")
EPOCHS = 12
TRAIN_FRAMES, TEST_FRAMES = 60_000, 2_000
CALIB, TEST_WINDOWS = 128, 200


def _rotation(rng, degrees):
    """A random rotation of the sensor by up to `degrees` about a random axis (how the watch sits on the wrist)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(-degrees, degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def segment(rng, activity, samples):
    """[samples, 3] acceleration in g of one activity segment (gravity along z before the rotation)."""
    t = np.arange(samples) / RATE
    phase = rng.uniform(0, 2 * math.pi)
    signal = np.zeros((samples, 3))
    signal[:, 2] = 1.0
    if activity == 1:    # walking: vertical steps, lateral sway at half the step rate
        f, a = rng.uniform(1.4, 2.4), rng.uniform(0.15, 0.5)
        signal[:, 2] += a * np.sin(2 * math.pi * f * t + phase)
        signal[:, 0] += 0.4 * a * np.sin(math.pi * f * t + phase)
    elif activity == 2:  # running: faster, larger, sharper impacts (a harmonic)
        f, a = rng.uniform(2.1, 3.2), rng.uniform(0.35, 1.0)
        s = np.sin(2 * math.pi * f * t + phase)
        signal[:, 2] += a * (s + 0.5 * np.maximum(s, 0) ** 4)
        signal[:, 0] += 0.3 * a * np.sin(math.pi * f * t + phase)
    elif activity == 3:  # cycling: smooth pedalling in the horizontal plane
        f, a = rng.uniform(0.9, 1.6), rng.uniform(0.08, 0.3)
        signal[:, 0] += a * np.sin(2 * math.pi * f * t + phase)
        signal[:, 1] += a * np.cos(2 * math.pi * f * t + phase)
    elif activity == 4:  # jumping: an impact every 0.6-1.0 s, free fall between
        period = rng.uniform(0.6, 1.0)
        since = (t + rng.uniform(0, period)) % period
        signal[:, 2] += rng.uniform(0.6, 1.8) * np.exp(-since / 0.04) - rng.uniform(0.2, 0.6) * (since > 0.15)
    noise = 0.004 if activity == 0 else rng.uniform(0.05, 0.2)
    signal = signal @ _rotation(rng, 60).T
    return signal + rng.normal(scale=noise, size=signal.shape)


def stream(rng, frames):
    """(frames [F, 24] float32, labels [F] int64): activity segments of 3-12 s, back to back."""
    parts, labels = [], []
    total = 0
    while total < frames * FRAME:
        activity = int(rng.integers(len(CLASSES)))
        samples = int(rng.uniform(3, 12) * RATE) // FRAME * FRAME
        parts.append(segment(rng, activity, samples))
        labels.append(np.full(samples // FRAME, activity))
        total += samples
    signal = np.concatenate(parts)[:frames * FRAME]
    x = signal.reshape(frames, FRAME, AXES).reshape(frames, FEATURES).astype(np.float32)
    return x, np.concatenate(labels)[:frames].astype(np.int64)


def windows(x, y, ends):
    """The windows of WINDOW frames ending at `ends` ([N, WINDOW, 24]) and the label of each last frame."""
    return np.stack([x[e - WINDOW + 1:e + 1] for e in ends]), y[ends]


def causal_band(length, width):
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    allowed = (j <= i) & (i - j < width)
    return torch.zeros(length, length).masked_fill(~allowed, float("-inf"))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(DIM, DIM) for _ in range(4))
        self.register_buffer("mask", causal_band(WINDOW, ATTENTION), persistent=False)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (p(x).reshape(b, n, HEADS, HEAD_DIM).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(HEAD_DIM) + self.mask
        return self.out((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, DIM))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.attn = Attention()
        self.mlp = nn.Sequential(nn.Linear(DIM, MLP_DIM), nn.GELU(), nn.Linear(MLP_DIM, DIM))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class StreamClassifier(nn.Module):
    """x float32 [B, 32, 24] (frames of 8 samples x 3 axes, in g) -> logits [B, 5] of the last frame."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(FEATURES, DIM)
        self.blocks = nn.Sequential(*(Block() for _ in range(BLOCKS)))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, len(CLASSES))

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.embed(x)))[:, -1])


def main():
    started = time.time()
    seed_everything()
    rng = np.random.default_rng(SEED)
    train_x, train_y = stream(rng, TRAIN_FRAMES)
    test_x, test_y = stream(rng, TEST_FRAMES)
    x_tr, y_tr = windows(train_x, train_y, np.arange(WINDOW - 1, TRAIN_FRAMES, 4))
    ends = np.linspace(WINDOW - 1, TEST_FRAMES - 1, TEST_WINDOWS).astype(np.int64)
    x_te, y_te = windows(test_x, test_y, ends)
    data = os.path.join(HERE, "data")
    os.makedirs(data, exist_ok=True)
    np.save(os.path.join(data, "calib.npy"), x_tr[rng.permutation(len(x_tr))[:CALIB]])
    np.save(os.path.join(data, "test_x.npy"), x_te)
    np.save(os.path.join(data, "test_y.npy"), y_te)
    np.save(os.path.join(data, "stream_x.npy"), test_x)
    np.save(os.path.join(data, "stream_y.npy"), test_y)

    model = train_model(StreamClassifier(), x_tr, y_tr, epochs=EPOCHS)
    params = sum(p.numel() for p in model.parameters())
    acc_torch = float((torch_logits(model, x_te).argmax(-1) == y_te).mean())
    path = os.path.join(HERE, "sensor_stream.onnx")
    torch.onnx.export(model, (torch.from_numpy(x_te[:1]),), path, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"])
    logits = ort_logits(path, x_te)
    acc_ort = float((logits.argmax(-1) == y_te).mean())
    diff = float(np.abs(logits - torch_logits(model, x_te)).max())
    elapsed = time.time() - started
    minutes = max(1, round(elapsed / 60))
    print(f"params={params} test accuracy torch={acc_torch:.4f} onnxruntime={acc_ort:.4f} "
          f"max|logit diff|={diff:.2e} in {elapsed:.0f} s")
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(f"""# sensor_stream: a causal classifier for streaming attention

A synthetic 3-axis accelerometer at {RATE} Hz read in frames of {FRAME} samples ({FEATURES} values per token) and
five activities ({", ".join(CLASSES)}), each a parametric signal with randomised frequency, amplitude, phase,
orientation and noise (`train.py`). The model classifies the last frame of a window of {WINDOW} frames
({WINDOW * FRAME / RATE:.1f} s) with causal local attention, so a stream can compute each new frame alone
(`mcu-attn build --streaming`, docs/dynamic.md).

- Architecture ({params} parameters): Linear({FEATURES}->{DIM}) per frame, no position embedding, {BLOCKS} pre-norm
  blocks ({HEADS}-head x {HEAD_DIM} attention over the frame and the {ATTENTION - 1} before it, a constant causal band
  mask; MLP {DIM}->{MLP_DIM}->{DIM}, exact GELU), final LayerNorm, Linear({DIM}->{len(CLASSES)}) on the last frame. Opset 17,
  legacy TorchScript exporter, input `x` float32 [1, {WINDOW}, {FEATURES}], output `logits` [1, {len(CLASSES)}].
- `data/stream_x.npy` ({TEST_FRAMES}, {FEATURES}) float32 and `data/stream_y.npy` ({TEST_FRAMES},) int64: a held-out
  stream of {TEST_FRAMES} frames ({TEST_FRAMES * FRAME / RATE:.0f} s) with the activity of every frame.
  `data/test_x.npy` ({TEST_WINDOWS}, {WINDOW}, {FEATURES}) and `data/test_y.npy`: {TEST_WINDOWS} windows of that stream,
  evenly spaced, with the activity of their last frame. `data/calib.npy` ({CALIB}, {WINDOW}, {FEATURES}): training
  windows (a separate stream of {TRAIN_FRAMES} frames, seeded).

Measured test accuracy ({TEST_WINDOWS} windows) with the command below: torch {acc_torch:.4f}, onnxruntime
{acc_ort:.4f} (max |logit difference| {diff:.1e}).

Regenerate (seeded and deterministic; about {minutes} minute{'s' if minutes > 1 else ''} on one CPU core):

    python examples/sensor_stream/train.py
""")


if __name__ == "__main__":
    main()
