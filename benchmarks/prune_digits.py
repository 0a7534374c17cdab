"""Structured pruning on the digits models: accuracy without the refit, with the least-squares refit and after
fine-tuning, and what pruning saves.

    python benchmarks/prune_digits.py [--heads 0.5] [--ffn 0.5] [--bits 8] [--calib C.npy] [--finetune STEPS]

For the digits ViT (PyTorch), its Keras twin (tf2onnx) and the causal fixture (torch dynamo), all trained on the
same split: the float accuracy of the unpruned model, the integer accuracy (--bits) unpruned, pruned without the
refit, pruned with the least-squares refit, and after `--prune-finetune` (450 test images), and params, MACs and
the planned flash (weights and operator parameters at --bits) before and after. Prints a Markdown table
(docs/pruning.md carries it). Calibration: every training image of examples/digits_vit/train.py's split
(data/train_x.npy, 1,347 images) unless --calib names another stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "digits_vit" / "data"
MODELS = {
    "digits ViT (torch)": ROOT / "examples" / "digits_vit" / "digits_vit.onnx",
    "digits ViT (Keras, tf2onnx)": ROOT / "examples" / "digits_vit_keras" / "digits_vit_keras.onnx",
    "causal (torch dynamo)": ROOT / "tests" / "fixtures" / "models" / "dynamo_op17_causal.onnx",
}


def measure(model: Path, heads: float, ffn: float, bits: int, calib: str, finetune: int) -> dict:
    from mcu_attn.api import evaluate
    from mcu_attn.options import BuildOptions

    x, y = np.load(DATA / "test_x.npy"), np.load(DATA / "test_y.npy")
    floating = evaluate(model, x, y, BuildOptions(bits=32))["accuracy"]
    result = evaluate(model, x, y, BuildOptions(bits=bits, calib=calib, prune_heads=heads, prune_ffn=ffn,
                                                prune_finetune=finetune))
    return {"float": floating, **result["pruning"]}


def main() -> None:
    from mcu_attn.options import BuildOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=float, default=0.5)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--bits", type=int, default=8, choices=(8, 4, 32))
    parser.add_argument("--calib", default=str(DATA / "train_x.npy"))
    parser.add_argument("--finetune", type=int, default=BuildOptions.prune_finetune, metavar="STEPS")
    args = parser.parse_args()
    label = "float" if args.bits == 32 else f"int{args.bits}"
    print(f"--prune-heads {args.heads} --prune-ffn {args.ffn} --bits {args.bits} --prune-finetune {args.finetune}, "
          f"calibration {Path(args.calib).name} ({len(np.load(args.calib))} samples), 450 test images\n")
    print(f"| model | float | {label} unpruned | {label} pruned, no refit | {label} + least-squares refit "
          f"| {label} + fine-tuning | params | MACs | planned flash |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, model in MODELS.items():
        print(f"measuring {name} ...", file=sys.stderr)
        m = measure(model, args.heads, args.ffn, args.bits, args.calib, args.finetune)
        before, after, accuracy = m["before"], m["after"], m["accuracy"]
        cut = 1 - after["params"] / before["params"]
        print(f"| {name} | {m['float']:.4f} | {accuracy['unpruned']:.4f} | {accuracy['without_reconstruction']:.4f} "
              f"| {accuracy['least_squares_only']:.4f} | {accuracy['with_reconstruction']:.4f} "
              f"| {before['params']:,} → {after['params']:,} (−{cut:.0%}) "
              f"| {before['macs']:,} → {after['macs']:,} | {before['flash_bytes']:,} → {after['flash_bytes']:,} B |")


if __name__ == "__main__":
    main()
