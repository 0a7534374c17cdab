"""Run a .tflite model in the TFLite-Micro Python interpreter with a given tensor arena size.

Started by `arena.py` (for `mcu-attn compare` and benchmarks/tflm_ram.py), one process per probe, with a python
that has tflite-micro, so that a crash or an allocation failure inside TFLM cannot take the caller down. Needs
only numpy and tflite_micro (it imports nothing else of mcu-attn).

    python probe.py check
    python probe.py run MODEL.tflite ARENA_BYTES INPUTS.npy [--labels Y.npy] [--allocations]

`check` exits 0 if tflite_micro imports, else prints why and exits 2. `run` creates the interpreter with
`arena_size=ARENA_BYTES` (TFLM allocates every tensor, scratch buffer and runtime structure there when it is
created), feeds each input as it is when INPUTS.npy already has the model's input type (the caller quantized
it) and otherwise quantizes it with the model's input scale and zero point, invokes it on every input and
prints one line `RESULT {"ok": true, "outputs": [[...], ...], "accuracy": ...}` (accuracy with --labels); if
TFLM refuses the arena it prints `RESULT {"ok": false, "error": ...}` and exits 1. With --allocations TFLM's
RecordingMicroAllocator then prints its own summary lines (arena head, tail, and what uses the tail), which
the caller parses.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def quantize(x: np.ndarray, details: dict) -> np.ndarray:
    """Float input -> the model's integer input type with its scale and zero point."""
    params = details["quantization_parameters"]
    scale, zero = float(params["scales"][0]), int(params["zero_points"][0])
    info = np.iinfo(details["dtype"])
    q = np.clip(np.round(x / scale) + zero, info.min, info.max)
    return q.astype(details["dtype"]).reshape(details["shape"])


def prepare(x: np.ndarray, details: dict) -> np.ndarray:
    """One input as the interpreter takes it: as it is in the model's input type, float for a float input,
    else quantized."""
    dtype = np.dtype(details["dtype"])
    if x.dtype == dtype or np.issubdtype(dtype, np.floating):
        return x.astype(dtype).reshape(details["shape"])
    return quantize(x.astype(np.float32), details)


def run(args: argparse.Namespace, runtime) -> int:
    inputs = np.load(args.inputs)
    try:
        interpreter = runtime.Interpreter.from_file(args.model, arena_size=args.arena)
    except RuntimeError as error:
        print("RESULT " + json.dumps({"ok": False, "error": " ".join(str(error).split())}), flush=True)
        return 1
    details = interpreter.get_input_details(0)
    outputs = []
    for x in inputs:
        interpreter.set_input(prepare(x, details), 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).reshape(-1).tolist())
    result: dict = {"ok": True, "outputs": outputs}
    if args.labels:
        labels = np.load(args.labels).reshape(-1)[: len(outputs)]
        result["accuracy"] = float(np.mean(np.argmax(np.array(outputs), axis=1) == labels))
    print("RESULT " + json.dumps(result), flush=True)
    if args.allocations:
        interpreter.print_allocations()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    probe = sub.add_parser("run")
    probe.add_argument("model")
    probe.add_argument("arena", type=int)
    probe.add_argument("inputs")
    probe.add_argument("--labels")
    probe.add_argument("--allocations", action="store_true")
    args = parser.parse_args()
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as error:
        print(f"tflite_micro is not importable with {sys.executable}: {error}")
        return 2
    if args.command == "check":
        return 0
    return run(args, runtime)


if __name__ == "__main__":
    sys.exit(main())
