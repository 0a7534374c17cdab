"""Efficient-attention techniques on the two bundled examples: accuracy, instructions and estimated energy each.

For the digits ViT (17 tokens) and examples/digits_long (257 tokens), each row is one model with one choice:
each `--attention` spec of EXAMPLES (dense, the local window, the strided, dilated and block-sparse patterns of
ir/pattern.py, each with the class token as a global token) and each `--low-rank` value (passes/low_rank.py,
ranks within the default 1 % budget on the calibration data), applied to the dense-trained model; then the
models trained with a pattern's mask (the band-trained digits_long, the band-, strided- and block-trained
digits ViT fixtures in tests/fixtures/models/), which run their own pattern as the import recognises it. A new
attention technique is one more spec in EXAMPLES. `--approximations` measures instead dense, the local window
and each example's approximations of softmax attention (Linformer, docs/approximate-attention.md) at the
`--tolerance` given beside them. Per row: int8
top-1 accuracy of the integer reference on the 450 test images (`mcu-attn eval`), then the int8 firmware for
the target, emulated in Unicorn on the first test images (bit-exact against the reference, instructions,
ESTIMATED cycles and energy: docs/cycle-model.md). Equivalent to, per row:

    mcu-attn eval MODEL --bits 8 --calib CALIB --data TEST_X --labels TEST_Y [--attention PATTERN] [--low-rank auto]
    mcu-attn build MODEL --target stm32 -o DIR --bits 8 --calib CALIB [--attention PATTERN] [--low-rank auto]
    mcu-attn simulate DIR --data TEST_X --limit 2

    python benchmarks/attention_patterns.py [--samples N] [--target stm32] [--only digits_vit|digits_long]
                                            [--approximations] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcu_attn.api import evaluate
from mcu_attn.build import BuildOptions, build
from mcu_attn.sim.run import SimOptions, simulate

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_vit"
LONG = ROOT / "examples" / "digits_long"
FIXTURES = ROOT / "tests" / "fixtures" / "models"

@dataclass(frozen=True)
class Example:
    data: Path                        # calib.npy, test_x.npy, test_y.npy
    model: Path                       # the dense-trained model every technique is applied to
    attention: tuple[str, ...]        # `--attention` specs, one row each (a new technique is one entry here)
    low_rank: tuple[str, ...]         # `--low-rank` values, one row each
    trained: tuple[tuple[str, Path], ...]  # (pattern the mask has, model trained with it): run as imported
    # (`--attention` spec, `--tolerance`) of the approximations of softmax attention (passes/linformer.py), one
    # row each: at the default tolerance they keep every block of these models dense, so a looser one shows them
    approximations: tuple[tuple[str, float], ...] = ()


EXAMPLES = {
    "digits_vit": Example(
        DIGITS / "data", DIGITS / "digits_vit.onnx",
        attention=("dense", "local:4,global:1", "strided:4,global:1", "dilated:4,2,global:1", "block:4,1,global:1"),
        low_rank=("auto",),
        trained=(("local:4,global:1", FIXTURES / "legacy_op18_band.onnx"),
                 ("strided:4,global:1", FIXTURES / "legacy_op18_strided.onnx"),
                 ("block:4,0,2,global:1", FIXTURES / "legacy_op18_block.onnx")),
        approximations=(("linformer:8", 0.5),)),
    "digits_long": Example(
        LONG / "data", LONG / "digits_long_dense.onnx",
        attention=("dense", "local:32,global:1", "strided:16,global:1", "strided:16,local:16,global:1",
                   "dilated:16,2,global:1", "block:16,1,global:1"),
        low_rank=("auto",),
        trained=(("local:32,global:1", LONG / "digits_long_band.onnx"),),
        approximations=(("linformer:64", 0.5),)),
}


def rows(example: Example, approximations: bool = False) -> list[tuple[str, Path, dict]]:
    """(label, model, BuildOptions fields) per row: each technique on the dense model, then the trained models;
    with `approximations`, dense and the local window, then the approximations of softmax attention."""
    if approximations:
        return ([(spec, example.model, {"attention": spec}) for spec in example.attention[:2]]
                + [(f"{spec} (--tolerance {tolerance:g})", example.model, {"attention": spec, "tolerance": tolerance})
                   for spec, tolerance in example.approximations])
    return ([(spec, example.model, {"attention": spec}) for spec in example.attention]
            + [(f"low-rank {rank}", example.model, {"low_rank": rank}) for rank in example.low_rank]
            + [(f"trained {pattern}", model, {}) for pattern, model in example.trained])


def measure(model: Path, technique: dict, data: Path, target: str, samples: int, work: Path) -> dict:
    calib = str(data / "calib.npy")
    options = BuildOptions(bits=8, calib=calib, **technique)
    x, y = np.load(data / "test_x.npy"), np.load(data / "test_y.npy")
    accuracy = evaluate(model, x, y, options)["accuracy"]
    report = build(model, target, work, options)
    result = simulate(str(work), x[:samples], None, SimOptions(limit=samples))
    return {"accuracy": accuracy, "bit_exact": result["bit_exact"], "instructions": result["instructions"],
            "cycles": result["cycles"], "energy_uj": result["energy_uj"], "flash": report["flash_bytes"],
            "ram": report["ram_bytes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2, help="test images emulated per row")
    parser.add_argument("--target", default="stm32")
    parser.add_argument("--only", choices=list(EXAMPLES), nargs="*")
    parser.add_argument("--approximations", action="store_true",
                        help="measure dense, the local window and the approximations of softmax attention (Linformer)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    measured = []
    with tempfile.TemporaryDirectory(prefix="mcu-attn-patterns-") as scratch:
        for example in args.only or list(EXAMPLES):
            data = EXAMPLES[example].data
            print(f"{example}: int8, {args.target}, accuracy on 450 test images (integer reference), "
                  f"{args.samples} emulated; cycles and energy are estimates")
            print(f"  {'attention':<30} {'acc':>6} {'instructions':>13} {'cycles':>12} {'uJ':>9} {'flash B':>8} "
                  f"{'RAM B':>7} bit-exact")
            for index, (label, model, technique) in enumerate(rows(EXAMPLES[example], args.approximations)):
                print(f"  measuring {label} ...", end="\r", file=sys.stderr, flush=True)
                row = measure(model, technique, data, args.target, args.samples, Path(scratch) / f"{example}_{index}")
                measured.append({"example": example, "attention": label, "model": model.name, **row})
                print(f"  {label:<30} {row['accuracy']:>6.4f} {row['instructions']:>13,} {row['cycles']:>12,} "
                      f"{row['energy_uj']:>9.1f} {row['flash']:>8,} {row['ram']:>7,} {row['bit_exact']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"target": args.target, "rows": measured}, indent=2) + "\n")


if __name__ == "__main__":
    main()
