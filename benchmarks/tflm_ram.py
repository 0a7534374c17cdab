"""RAM benchmark: our int8 firmware's peak RAM against TensorFlow Lite Micro's minimal tensor arena, same model.

The model is the Keras digits ViT of examples/digits_vit_keras (`train_keras.py --variant tflm`: tanh GELU,
so that TFLM has every op), exported once with tf2onnx (our input) and once as full-integer int8 TFLite
(TFLM's input). Both sides are calibrated on the same 200 training images.

Ours: `mcu_attn.build.build(..., BuildOptions(bits=8, calib=...))` for --target (default stm32), i.e.

    mcu-attn build examples/digits_vit_keras/digits_vit_keras_tflm.onnx --target stm32 --bits 8 \\
        --calib examples/digits_vit/data/calib.npy -o DIR

compiled with arm-none-eabi-gcc; peak RAM = report.json `ram_bytes` = .data + .bss + .noinit of the ELF
(`ram_static_bytes`: the activation arena `arena_bytes` plus the I/O buffers and other statics) + the worst
stack chain (`stack.bytes`).

TFLM: the smallest `arena_size` with which the TFLite-Micro Python interpreter (tflite-micro's x86-64 host
build, RecordingMicroAllocator) is created and gives, on the first --samples test images, the same int8
outputs as with a 1 MiB arena; found by bisection to the byte, each probe a separate process
(mcu_attn/tflm/probe.py) run with --tflm-python. TFLM aligns each buffer in the arena to 16 bytes. The
arena holds the activations (head) and TFLM's runtime structures and op data (tail); the latter are
host-built, with 64-bit pointers. TFLM's interpreter objects, static data and stack outside the arena are
not counted, so the comparison is in TFLM's favour. Accuracies on the 450 test images: float (onnxruntime,
equal to Keras as train_keras.py checks), TFLM int8 at the minimal arena, and ours int8 (`mcu-attn eval
--bits 8`, the integer reference the firmware matches).

    pip install -e ".[tflm]"     # tflite-micro (numpy, flatbuffers, pyyaml; no TensorFlow)
    python benchmarks/tflm_ram.py [--tflm-python PYTHON] [--json OUT.json] [--no-accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from mcu_attn.tflm.arena import LARGE_ARENA, check_tflm, minimal_arena, probe, tflm_version

ROOT = Path(__file__).resolve().parents[1]
KERAS = ROOT / "examples" / "digits_vit_keras"
DATA = ROOT / "examples" / "digits_vit" / "data"


def ours(onnx: Path, target: str, calib: Path) -> dict:
    """Build and compile our firmware; the RAM figures of its report."""
    from mcu_attn.build import BuildOptions, build

    with tempfile.TemporaryDirectory(prefix="mcu-attn-tflm-") as scratch:
        report = build(onnx, target, Path(scratch) / "build", BuildOptions(bits=8, calib=str(calib)))
    if not report.get("compiled"):
        raise SystemExit("our firmware was not compiled (arm-none-eabi-gcc missing?): no measured RAM")
    return {"target": report["target"], "core": report["core"], "arena_bytes": report["arena_bytes"],
            "stack_bytes": report["stack"]["bytes"], "static_bytes": report["ram_static_bytes"],
            "other_static_bytes": report["ram_static_bytes"] - report["arena_bytes"],
            "peak_ram_bytes": report["ram_bytes"], "flash_bytes": report["flash_bytes"]}


def accuracies(onnx: Path, calib: Path, x: np.ndarray, y: np.ndarray) -> dict:
    """Float (onnxruntime) and our int8 reference accuracy on the test set."""
    import onnxruntime as ort

    from mcu_attn.api import evaluate
    from mcu_attn.options import BuildOptions

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: sample[None]})[0] for sample in x])
    ours_int8 = evaluate(onnx, x, y, BuildOptions(bits=8), calib=np.load(calib))["accuracy"]
    return {"float_onnxruntime": float(np.mean(logits.argmax(axis=1) == y)), "ours_int8": float(ours_int8)}


def print_table(result: dict) -> None:
    t, o = result["tflm"], result["ours"]
    rows = [
        (f"TFLM tensor arena, minimal ({t['probes']} probes, to the byte)", t["arena_bytes"]),
        ("  TFLM head: activations (RecordingMicroAllocator)", t["allocations"].get("head")),
        ("  TFLM tail: runtime structures, op data", t["allocations"].get("tail")),
        ("  (rest: needed only while the interpreter allocates)", t["arena_bytes"] - t["allocations"]["total"]),
        ("ours: activation arena", o["arena_bytes"]),
        ("ours: stack (worst call chain)", o["stack_bytes"]),
        ("ours: other static RAM (I/O buffers, .data/.bss)", o["other_static_bytes"]),
        ("ours: peak RAM (arena + other static + stack)", o["peak_ram_bytes"]),
    ]
    print(f"{result['model']} int8 | ours: {o['target']} ({o['core']}) | TFLM: tflite-micro "
          f"{t['version']} Python interpreter (x86-64 host)")
    for label, value in rows:
        print(f"  {label:<58} {'n/a' if value is None else format(value, ','):>9} B")
    print(f"  {'ratio ours peak RAM / TFLM minimal arena (x86-64 tail)':<58} {result['ratio']:>11.3f}")
    print(f"  {'ratio ours arena / TFLM head (activations to activations)':<58} "
          f"{result['ratio_arena_to_tflm_head']:>11.3f}")
    if "accuracy" in result:
        a = result["accuracy"]
        print(f"accuracy on {a['samples']} test images: float (onnxruntime) {a['float_onnxruntime']:.4f}, "
              f"TFLM int8 {a['tflm_int8']:.4f}, ours int8 {a['ours_int8']:.4f}")
    print("requirement ours <= TFLM / 2:", "met" if result["ratio"] <= 0.5 else "NOT met")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=KERAS / "digits_vit_keras_tflm.onnx")
    parser.add_argument("--tflite", type=Path, default=KERAS / "digits_vit_keras_tflm_int8.tflite")
    parser.add_argument("--calib", type=Path, default=DATA / "calib.npy")
    parser.add_argument("--data", type=Path, default=DATA / "test_x.npy")
    parser.add_argument("--labels", type=Path, default=DATA / "test_y.npy")
    parser.add_argument("--target", default="stm32")
    parser.add_argument("--tflm-python", default=sys.executable,
                        help="a python with tflite-micro (default: this one; pip install -e '.[tflm]')")
    parser.add_argument("--samples", type=int, default=16, help="test images each arena probe must reproduce")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the accuracies (about 15 s)")
    parser.add_argument("--json", help="also write the numbers as JSON to this file ('-': stdout)")
    args = parser.parse_args()

    problem = check_tflm(args.tflm_python)
    if problem is not None:
        print(f"--tflm-python {args.tflm_python} has no usable tflite_micro: {problem}", file=sys.stderr)
        return 2
    version = tflm_version(args.tflm_python)

    x, y = np.load(args.data).astype(np.float32), np.load(args.labels)
    with tempfile.TemporaryDirectory(prefix="tflm-probe-") as scratch:
        inputs = Path(scratch) / "inputs.npy"
        np.save(inputs, x[: args.samples])
        reference = probe(args.tflite, LARGE_ARENA, inputs, python=args.tflm_python)
        if not reference["ok"]:
            print(f"TFLM cannot run {args.tflite} even with a {LARGE_ARENA:,} B arena: {reference['error']}",
                  file=sys.stderr)
            return 1
        arena, probes, below = minimal_arena(args.tflite, inputs, reference["outputs"], python=args.tflm_python)
        full = probe(args.tflite, arena, args.data, args.labels, allocations=True, python=args.tflm_python)
        assert full["ok"], full

    result = {
        "model": args.onnx.stem,
        "onnx": os.path.relpath(args.onnx, ROOT), "tflite": os.path.relpath(args.tflite, ROOT),
        "tflm": {"version": version, "arena_bytes": arena, "probes": probes,
                 "arena_minus_one_error": below.get("error", "different outputs"),
                 "allocations": full["allocations"], "samples_checked": args.samples},
        "ours": ours(args.onnx, args.target, args.calib),
    }
    result["ratio"] = result["ours"]["peak_ram_bytes"] / arena
    result["ratio_arena_to_tflm_head"] = result["ours"]["arena_bytes"] / full["allocations"]["head"]
    if not args.no_accuracy:
        result["accuracy"] = {"samples": int(len(x)), "tflm_int8": full["accuracy"],
                              **accuracies(args.onnx, args.calib, x, y)}
    print_table(result)
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
