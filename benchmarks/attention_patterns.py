"""Efficient-attention techniques on the two bundled examples: accuracy, instructions and estimated energy each.

For the digits ViT (17 tokens) and examples/digits_long (257 tokens), each row is one model with one choice:
dense, the local window, and the strided, dilated and block-sparse patterns (`--attention`, ir/pattern.py),
each with the class token as a global token, applied to the dense-trained model; low-rank linear layers
(`--low-rank auto`, passes/low_rank.py, ranks within the default 1 % budget on the calibration data); and the
models trained with a pattern's mask (the band-trained digits_long, the band-, strided- and block-trained
digits ViT fixtures in tests/fixtures/models/), which run their own pattern as the import recognises it. Per row: int8
top-1 accuracy of the integer reference on the 450 test images (`mcu-attn eval`), then the int8 firmware for
the target, emulated in Unicorn on the first test images (bit-exact against the reference, instructions,
ESTIMATED cycles and energy: docs/cycle-model.md). Equivalent to, per row:

    mcu-attn eval MODEL --bits 8 --calib CALIB --data TEST_X --labels TEST_Y [--attention PATTERN] [--low-rank auto]
    mcu-attn build MODEL --target stm32 -o DIR --bits 8 --calib CALIB [--attention PATTERN] [--low-rank auto]
    mcu-attn simulate DIR --data TEST_X --limit 2

    python benchmarks/attention_patterns.py [--samples N] [--target stm32] [--only digits_vit|digits_long]
                                            [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from mcu_attn.api import evaluate
from mcu_attn.build import BuildOptions, build
from mcu_attn.sim.run import SimOptions, simulate

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_vit"
LONG = ROOT / "examples" / "digits_long"
FIXTURES = ROOT / "tests" / "fixtures" / "models"

# example -> (data folder, [(row label, model, --attention or None: as the model has it, --low-rank or None)])
ROWS = {
    "digits_vit": (DIGITS / "data", [
        ("dense", DIGITS / "digits_vit.onnx", None, None),
        ("local:4,global:1", DIGITS / "digits_vit.onnx", "local:4,global:1", None),
        ("strided:4,global:1", DIGITS / "digits_vit.onnx", "strided:4,global:1", None),
        ("dilated:4,2,global:1", DIGITS / "digits_vit.onnx", "dilated:4,2,global:1", None),
        ("block:4,1,global:1", DIGITS / "digits_vit.onnx", "block:4,1,global:1", None),
        ("low-rank auto", DIGITS / "digits_vit.onnx", None, "auto"),
        ("trained local:4,global:1", FIXTURES / "legacy_op18_band.onnx", None, None),
        ("trained strided:4,global:1", FIXTURES / "legacy_op18_strided.onnx", None, None),
        ("trained block:4,0,2,global:1", FIXTURES / "legacy_op18_block.onnx", None, None)]),
    "digits_long": (LONG / "data", [
        ("dense", LONG / "digits_long_dense.onnx", None, None),
        ("local:32,global:1", LONG / "digits_long_dense.onnx", "local:32,global:1", None),
        ("strided:16,global:1", LONG / "digits_long_dense.onnx", "strided:16,global:1", None),
        ("strided:16,local:16,global:1", LONG / "digits_long_dense.onnx", "strided:16,local:16,global:1", None),
        ("dilated:16,2,global:1", LONG / "digits_long_dense.onnx", "dilated:16,2,global:1", None),
        ("block:16,1,global:1", LONG / "digits_long_dense.onnx", "block:16,1,global:1", None),
        ("low-rank auto", LONG / "digits_long_dense.onnx", None, "auto"),
        ("trained local:32,global:1", LONG / "digits_long_band.onnx", None, None)]),
}


def measure(model: Path, attention: str | None, low_rank: str | None, data: Path, target: str, samples: int,
            work: Path) -> dict:
    calib = str(data / "calib.npy")
    options = BuildOptions(bits=8, calib=calib, attention=attention, low_rank=low_rank)
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
    parser.add_argument("--only", choices=list(ROWS), nargs="*")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcu-attn-patterns-") as scratch:
        for example in args.only or list(ROWS):
            data, entries = ROWS[example]
            print(f"{example}: int8, {args.target}, accuracy on 450 test images (integer reference), "
                  f"{args.samples} emulated; cycles and energy are estimates")
            print(f"  {'attention':<30} {'acc':>6} {'instructions':>13} {'cycles':>12} {'uJ':>9} {'flash B':>8} "
                  f"{'RAM B':>7} bit-exact")
            for index, (label, model, attention, low_rank) in enumerate(entries):
                print(f"  measuring {label} ...", end="\r", file=sys.stderr, flush=True)
                row = measure(model, attention, low_rank, data, args.target, args.samples,
                              Path(scratch) / f"{example}_{index}")
                rows.append({"example": example, "attention": label, "model": model.name, **row})
                print(f"  {label:<30} {row['accuracy']:>6.4f} {row['instructions']:>13,} {row['cycles']:>12,} "
                      f"{row['energy_uj']:>9.1f} {row['flash']:>8,} {row['ram']:>7,} {row['bit_exact']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"target": args.target, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
