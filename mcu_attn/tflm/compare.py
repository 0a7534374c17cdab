"""`mcu-attn compare DIR --tflm MODEL.tflite --data X.npy [--labels y.npy]`: our firmware next to TensorFlow
Lite Micro on the same inputs.

1. DIR is an integer Cortex-M build (`mcu-attn build ... --target T`); its firmware runs every sample in the
   emulator (Unicorn, no hooks) and is checked bit for bit against our integer reference.
2. TFLM's Python interpreter (the `[tflm]` extra) runs MODEL.tflite on the same samples in a child process
   (`arena.py`). When the .tflite takes int8 with the scale and zero point our firmware's input has (DIR was
   built from that file), both get the very same int8 inputs; otherwise each quantizes the float samples with
   its own input parameters, and the report says so.
3. Outputs: top-1 agreement (the predicted class of each sample, `data.top1`), and the difference in LSBs of our output
   scale, |deq(ours) - deq(TFLM)| / s_ours, which is the plain integer difference when both outputs share
   scale and zero point; accuracy of each with labels.
4. Memory: TFLM's smallest working arena, bisected to the byte on the first `arena_samples` samples (each
   probe must reproduce the outputs of a 1 MiB arena), with its head (activations) and tail (runtime
   structures) from TFLM's RecordingMicroAllocator, next to our peak RAM (report.json `ram_bytes`: static RAM
   of the ELF, arena included, plus the worst stack chain) and our flash (the ELF's code and constants). The
   .tflite file's size is what TFLM would need in flash for the model alone (its runtime code not counted).
   TFLM's figures come from its x86-64 host build (64-bit pointers in the tail); its interpreter objects,
   static data and stack outside the arena are not counted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from mcu_attn.data import accuracy, top1
from mcu_attn.errors import UserError
from mcu_attn.progress import progress
from mcu_attn.tflm import arena as tflm

ARENA_SAMPLES = 16


def require_tflm() -> None:
    try:
        import tflite_micro  # noqa: F401  (only whether it is there: the probes import it in their own process)
    except ImportError:
        raise UserError(f"compare runs TensorFlow Lite Micro's interpreter, which is not installed: "
                        f"{tflm.INSTALL_HINT}") from None


def _io(tensor) -> dict:
    """dtype and per-tensor quantization of a TFLite input or output tensor."""
    quant = tensor.quant
    return {"dtype": tensor.dtype.name, "shape": list(tensor.shape),
            "scale": quant.scale[0] if quant else None, "zero_point": quant.zero_point[0] if quant else None}


def _dequantize(values: np.ndarray, io: dict) -> np.ndarray:
    values = values.astype(np.float64)
    return values if io["scale"] is None else (values - io["zero_point"]) * io["scale"]


def _lsb_summary(difference: np.ndarray) -> dict:
    rounded = np.rint(difference).astype(np.int64)
    histogram = {str(k): int(np.sum(rounded == k)) for k in range(3)}
    histogram["3+"] = int(np.sum(rounded >= 3))
    return {"max": float(difference.max()), "mean": float(difference.mean()),
            "per_output_value": histogram, "values": int(difference.size)}


def compare(directory: str, tflite_path: str, data: np.ndarray, labels: np.ndarray | None = None,
            limit: int | None = None, arena_samples: int = ARENA_SAMPLES) -> dict:
    from mcu_attn.frontend.tflite_file import read_tflite
    from mcu_attn.sim.build_dir import BuildDir
    from mcu_attn.sim.elf import load_firmware
    from mcu_attn.sim.run import unicorn_outputs

    require_tflm()
    model = read_tflite(tflite_path)
    tflm_in, tflm_out = (_io(model.tensors[model.inputs[0]]), _io(model.tensors[model.outputs[0]]))
    build = BuildDir(directory)
    if build.output.dtype != "int8":
        raise UserError(f"{directory}: a float build (--bits 32); compare takes an integer build (--bits 8 or 4)")
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit {limit}: must be at least 1")
        data = data[:limit]
        labels = labels[:limit] if labels is not None else None
    if labels is not None:
        from mcu_attn.data import check_labels

        if len(labels) != len(data):
            raise UserError(f"--labels: {len(labels)} labels for {len(data)} samples")
        check_labels(labels, build.output.shape[-1])
    prepared = build.prepare(data)  # our firmware's int8 inputs
    if int(np.prod(tflm_in["shape"])) != int(np.prod(build.input.shape)):
        raise UserError(f"{tflite_path}: input shape {tflm_in['shape']} does not match the build's "
                        f"{list(build.input.shape)}")
    same_inputs = (tflm_in["dtype"] == "int8" and np.isclose(tflm_in["scale"] or 0, build.input.scale or 0,
                                                              rtol=1e-6) and tflm_in["zero_point"] == build.input.zero_point)
    ours_io = {"scale": build.output.scale, "zero_point": build.output.zero_point}

    firmware = load_firmware(build.elf)
    got = np.stack([build.decode(raw) for raw in unicorn_outputs(build, firmware, prepared)])
    expected = build.reference(prepared)
    with tempfile.TemporaryDirectory(prefix="mcu-attn-compare-") as scratch:
        inputs = Path(scratch) / "inputs.npy"
        np.save(inputs, prepared if same_inputs else data.astype(np.float32))
        with progress(f"TFLM on {len(prepared)} samples", total=1) as advance:
            full = tflm.probe(Path(tflite_path), tflm.LARGE_ARENA, inputs)
            advance()
        if not full["ok"]:
            raise UserError(f"{tflite_path}: TFLM cannot run it even with a {tflm.LARGE_ARENA:,} B arena: "
                            f"{full['error']}")
        few = Path(scratch) / "arena_inputs.npy"
        np.save(few, np.load(inputs)[:arena_samples])
        expected_few = full["outputs"][:arena_samples]
        with progress("bisecting TFLM's arena", total=tflm.LARGE_ARENA.bit_length() - 1, unit="probes") as advance:
            arena_bytes, probes, _ = tflm.minimal_arena(Path(tflite_path), few, expected_few, progress=advance)
        allocations = tflm.probe(Path(tflite_path), arena_bytes, few, allocations=True).get("allocations", {})
    theirs = np.array(full["outputs"], np.float64).reshape(got.shape)
    ours_real, theirs_real = _dequantize(got, ours_io), _dequantize(theirs, tflm_out)
    agree = top1(ours_real) == top1(theirs_real)
    difference = np.abs(ours_real - theirs_real) / float(build.output.scale)
    result = {
        "dir": os.fspath(directory), "tflite": os.fspath(tflite_path), "samples": int(len(got)),
        "target": build.target.name, "core": build.target.core,
        "same_int8_inputs": bool(same_inputs),
        "same_output_quantization": bool(tflm_out["dtype"] == "int8" and np.isclose(
            tflm_out["scale"] or 0, build.output.scale, rtol=1e-6) and tflm_out["zero_point"] == build.output.zero_point),
        "bit_exact": bool(np.array_equal(got, expected)),
        "agreement": float(np.mean(agree)), "disagreements": int(np.sum(~agree)),
        "lsb": _lsb_summary(difference),
        "accuracy": None,
        "ours": {"ram_bytes": build.report["ram_bytes"], "arena_bytes": build.report["arena_bytes"],
                 "stack_bytes": build.report["stack"]["bytes"],
                 "other_static_bytes": build.report["ram_static_bytes"] - build.report["arena_bytes"],
                 "flash_bytes": build.report["flash_bytes"]},
        "tflm": {"version": tflm.tflm_version(), "arena_bytes": arena_bytes, "arena_probes": probes,
                 "arena_samples": min(arena_samples, len(got)), "arena_head_bytes": allocations.get("head"),
                 "arena_tail_bytes": allocations.get("tail"), "model_file_bytes": os.path.getsize(tflite_path)},
    }
    if labels is not None:
        result["accuracy"] = {"ours": accuracy(ours_real, labels), "tflm": accuracy(theirs_real, labels)}
    return result


def format_table(result: dict) -> str:
    o, t = result["ours"], result["tflm"]
    lsb = result["lsb"]
    histogram = ", ".join(f"{k}: {v / lsb['values']:.1%}" for k, v in lsb["per_output_value"].items())
    rows = [
        f"{result['samples']} samples: ours = {result['dir']} ({result['target']}, {result['core']}) in Unicorn; "
        f"TFLM = tflite-micro {t['version']} Python interpreter (x86-64) on {result['tflite']}",
        f"  inputs               {'the same int8 inputs' if result['same_int8_inputs'] else 'each side quantizes the float samples with its own input parameters'}",
        f"  our firmware         {'bit-exact with our integer reference' if result['bit_exact'] else 'NOT bit-exact with our integer reference'}",
        f"  top-1 agreement      {result['agreement']:.4f} ({result['samples'] - result['disagreements']} of "
        f"{result['samples']})",
        f"  output difference    max {lsb['max']:.0f} LSB, mean {lsb['mean']:.2f} LSB of our output scale; "
        f"|difference| per output value {histogram}",
    ]
    if result["accuracy"]:
        a = result["accuracy"]
        rows.append(f"  accuracy             ours {a['ours']:.4f}   TFLM {a['tflm']:.4f}")
    head, tail = t["arena_head_bytes"], t["arena_tail_bytes"]
    rows += [
        f"  RAM                  ours {o['ram_bytes']:,} B peak (arena {o['arena_bytes']:,} + stack "
        f"{o['stack_bytes']:,} + other static {o['other_static_bytes']:,})",
        f"                       TFLM {t['arena_bytes']:,} B tensor arena, minimal (bisected in {t['arena_probes']} "
        f"probes on {t['arena_samples']} samples; head {head if head is None else format(head, ',')}, tail "
        f"{tail if tail is None else format(tail, ',')}); its stack and statics not counted",
        f"  flash                ours {o['flash_bytes']:,} B (the whole firmware: code and weights)",
        f"                       TFLM model file {t['model_file_bytes']:,} B (its runtime code not counted)",
        f"  ratio                ours peak RAM / TFLM arena {o['ram_bytes'] / t['arena_bytes']:.3f}",
    ]
    return "\n".join(rows)
