"""Quantized accuracy of every bundled example and test fixture: what `mcu-attn eval MODEL --data X --labels Y
--bits B --calib C` prints for each, at --bits 8 and --bits 4, with the float accuracy beside them, and how far the
integer outputs are from the float model's: the RMS of (integer - float) over the RMS of the float outputs, on
all test images (finer than the accuracy, which moves in steps of one image).

The integer contracts (docs/integer-kernels.md) decide these numbers; this script is how a contract change is
measured: run it before and after on the same data. Every model is evaluated on its example's 450 test images
(the fixtures are digits ViTs exported many ways, so they share examples/digits_vit's data), calibrated on the
example's 200 calibration images. A .tflite file brings its own scales and is evaluated without --calib.

    python benchmarks/contract_accuracy.py [--bits 8 4] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mcu_attn.api import evaluate
from mcu_attn.options import BuildOptions

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_vit" / "data"
LONG = ROOT / "examples" / "digits_long" / "data"
KERAS = ROOT / "examples" / "digits_vit_keras"


def models() -> list[tuple[str, Path, Path]]:
    """(name, model file, data directory) of every example and every fixture of tests/fixtures/manifest.json."""
    found = [("digits_vit", ROOT / "examples" / "digits_vit" / "digits_vit.onnx", DIGITS),
             ("digits_vit_keras", KERAS / "digits_vit_keras.onnx", DIGITS),
             ("digits_vit_keras_tflm", KERAS / "digits_vit_keras_tflm.onnx", DIGITS),
             ("digits_vit_keras_tflm_int8.tflite", KERAS / "digits_vit_keras_tflm_int8.tflite", DIGITS),
             ("digits_long_dense", ROOT / "examples" / "digits_long" / "digits_long_dense.onnx", LONG),
             ("digits_long_band", ROOT / "examples" / "digits_long" / "digits_long_band.onnx", LONG)]
    manifest = json.loads((ROOT / "tests" / "fixtures" / "manifest.json").read_text())
    found += [(entry["name"], ROOT / "tests" / "fixtures" / entry["file"], DIGITS) for entry in manifest]
    return found


def evaluated(model: Path, data: Path, bits: int) -> tuple[float, np.ndarray]:
    """(accuracy, outputs) of `mcu-attn eval` at `bits` on the data directory's test images."""
    x, y = np.load(data / "test_x.npy"), np.load(data / "test_y.npy")
    calib = None if model.suffix == ".tflite" or bits == 32 else str(data / "calib.npy")
    result = evaluate(model, x, y, BuildOptions(bits=bits, calib=calib))
    return float(result["accuracy"]), np.asarray(result["outputs"], np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4], choices=[8, 4])
    parser.add_argument("--only", nargs="+", help="model names to evaluate (default: all)")
    args = parser.parse_args()
    rows = [m for m in models() if not args.only or m[0] in args.only]
    print("| model | float | " + " | ".join(f"int{b} | int{b} error" for b in args.bits) + " |")
    print("|---|---|" + "---|---|" * len(args.bits))
    for index, (name, path, data) in enumerate(rows, 1):
        print(f"[{index}/{len(rows)}] {name}", file=sys.stderr, flush=True)
        # a .tflite file is int8 through and through: its float graph is not a float model
        reference = None if path.suffix == ".tflite" else evaluated(path, data, 32)
        cells = ["—" if reference is None else f"{reference[0]:.4f}"]
        for bits in args.bits:
            score, outputs = evaluated(path, data, bits)
            error = "—" if reference is None else \
                f"{np.sqrt(np.mean((outputs - reference[1]) ** 2) / np.mean(reference[1] ** 2)):.4f}"
            cells += [f"{score:.4f}", error]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
