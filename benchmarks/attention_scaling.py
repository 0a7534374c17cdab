"""How one attention block scales with sequence length, dense against sparse attention patterns.

For n = 64 ... 1024 it writes a single self-attention block as ONNX (q/k/v/out projections, explicit
MatMul/Softmax/MatMul attention, E = 16, one head), builds it as int8 firmware for the STM32F746 (dense,
`--attention local:16` and any `--patterns`), runs one inference in the emulator and prints instructions,
estimated cycles (the whole block, and its attention kernel alone), RAM and estimated energy, with the growth
factor per doubling of n. Dense attention work grows ~4x per doubling, local attention ~2x. No build holds the
n x n score matrix: RAM is O(n) for all.

`--patterns linformer:K` measures Linformer's cost: the block's keys and values projected along the sequence to K
rows (passes/linformer.py) at `--tolerance 0.5`, since random weights and inputs have no accuracy to keep; the
attention is n queries over K keys.

A pattern's attention work is its number of (query, key) pairs: `--patterns` also prints, per pattern, the
attention kernel's cycles beside what the pairs predict. The prediction is a cost model fitted (least squares)
on the dense and local rows of the same run, cycles = a * pairs + b * queries (a per key visited and a per
query row), so a strided pattern of n/K keys per query should land on a * n * n/K + b * n.

    python benchmarks/attention_scaling.py [--lengths 64 128 256 512 1024] [--window 16] [--query-tiles 1 4 16]
                                           [--patterns strided:8 dilated:8,2 block:16,1] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mcu_attn.build import BuildOptions, build
from mcu_attn.errors import UserError
from mcu_attn.ir.pattern import AttentionPattern
from mcu_attn.sim.run import SimOptions, simulate

EMBED = 16
LINFORMER_TOLERANCE = 0.5  # relative error of the block's output against dense, on its 4 random calibration inputs
TARGET = "stm32f746"


def attention_block(seq: int, path: Path, seed: int = 0, weights: dict[str, np.ndarray] | None = None,
                    position: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
    """x[1,seq,E] (+ a constant position code [seq, E], when given) -> softmax(q k^T / sqrt(E) (+ a constant
    additive mask [seq, seq], when given)) v -> out projection, as an exporter would spell it; projections
    `weights` ("q", "k", "v", "o": [E, E]) or seeded random ones."""
    rng = np.random.default_rng(seed)
    weights = weights or {n: rng.standard_normal((EMBED, EMBED)) / np.sqrt(EMBED) for n in "qkvo"}
    inits = [numpy_helper.from_array(np.asarray(weights[n], np.float32), f"w{n}") for n in "qkvo"]
    inits += [numpy_helper.from_array(np.float32(1 / np.sqrt(EMBED)), "scale"),
              numpy_helper.from_array(np.array([1, seq, 1, EMBED], np.int64), "heads"),
              numpy_helper.from_array(np.array([1, seq, EMBED], np.int64), "merged")]
    nodes, source = [], "x"
    if position is not None:
        inits.append(numpy_helper.from_array(np.asarray(position, np.float32)[None], "position"))
        nodes.append(helper.make_node("Add", ["x", "position"], ["xp"]))
        source = "xp"
    for name in "qkv":
        nodes += [helper.make_node("MatMul", [source, f"w{name}"], [f"{name}p"]),
                  helper.make_node("Reshape", [f"{name}p", "heads"], [f"{name}r"])]
    nodes += [helper.make_node("Transpose", ["qr"], ["qt"], perm=[0, 2, 1, 3]),
              helper.make_node("Transpose", ["kr"], ["kt"], perm=[0, 2, 3, 1]),
              helper.make_node("Transpose", ["vr"], ["vt"], perm=[0, 2, 1, 3]),
              helper.make_node("MatMul", ["qt", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"])]
    if mask is not None:
        inits.append(numpy_helper.from_array(np.asarray(mask, np.float32), "mask"))
        nodes.append(helper.make_node("Add", ["ss", "mask"], ["sm"]))
    nodes += [helper.make_node("Softmax", ["sm" if mask is not None else "ss"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "vt"], ["o"]),
              helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ot", "merged"], ["om"]),
              helper.make_node("MatMul", ["om", "wo"], ["y"])]
    graph = helper.make_graph(nodes, f"attention_{seq}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, EMBED])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, EMBED])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def measure(seq: int, attention: str, work: Path, query_tile: int = 1, timeout_s: int = 1800) -> dict:
    model, calib = work / f"block_{seq}.onnx", work / f"calib_{seq}.npy"
    if not model.exists():
        attention_block(seq, model)
        np.save(calib, np.random.default_rng(1).standard_normal((4, seq, EMBED)).astype(np.float32))
    out = work / f"{attention.replace(':', '_')}_{seq}_t{query_tile}"
    # Linformer keeps a block only within --tolerance of dense: a random block's outputs are no accuracy to keep,
    # so a loose tolerance lets the projection through (the cost is measured, not the accuracy)
    tolerance = LINFORMER_TOLERANCE if attention.startswith("linformer:") else None
    report = build(model, TARGET, out, BuildOptions(bits=8, calib=str(calib), attention=attention,
                                                    tolerance=tolerance, query_tile=query_tile))
    if tolerance is not None and not all(b["replaced"] for b in report["attention_choice"]["blocks"]):
        raise UserError(f"{attention}: the block was not projected within --tolerance {tolerance}")
    result = simulate(str(out), None, None, SimOptions(limit=1, timeout_s=timeout_s))
    attention_cycles = sum(layer["cycles"] for layer in result["layers"] if layer["op"] == "QAttention")
    return {"instructions": result["instructions"], "cycles": result["cycles"], "energy_uj": result["energy_uj"],
            "ram": report["ram_bytes"], "bit_exact": result["bit_exact"], "attention_cycles": attention_cycles,
            "pairs": key_pairs(attention, seq)}


def linformer_rows(attention: str) -> int:
    """K of `linformer:K`."""
    return int(attention.split(":")[1])


def key_pairs(attention: str, seq: int) -> int:
    """The (query, key) pairs attention `attention` visits in a block of seq tokens (Linformer: n queries over K
    projected keys)."""
    if attention.startswith("linformer:"):
        return seq * linformer_rows(attention)
    return seq * seq if attention == "dense" else int(AttentionPattern.parse(attention).allowed(seq).sum())


def pair_model(rows: list[dict]) -> tuple[float, float]:
    """(cycles per pair, cycles per query row) of the attention kernel, least squares over `rows`."""
    design = np.array([[row["pairs"], row["n"]] for row in rows], float)
    cycles = np.array([row["attention_cycles"] for row in rows], float)
    (per_pair, per_row), *_ = np.linalg.lstsq(design, cycles, rcond=None)
    return float(per_pair), float(per_row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--query-tiles", type=int, nargs="+", default=[1],
                        help="query rows per attention kernel tile: one row per tile and mode")
    parser.add_argument("--timeout", type=int, default=1800,
                        help="host seconds one emulated inference may take (dense n=1024 needs several minutes)")
    parser.add_argument("--patterns", nargs="*", default=[],
                        help="more --attention patterns to measure beside dense and local (strided:8 block:16,1 ...)")
    parser.add_argument("--json", help="also write the measured rows to this file")
    args = parser.parse_args()
    measured = []
    modes = [(attention, tile) for attention in ("dense", f"local:{args.window}", *args.patterns)
             for tile in args.query_tiles]
    print(f"one attention block, E={EMBED}, int8, {TARGET}, Unicorn; cycles and energy are estimates")
    print(f"{'n':>5} {'attention':<14} {'tile':>4} {'instructions':>13} {'cycles':>12} {'x/prev row':>10} "
          f"{'attn cycles':>12} {'RAM B':>8} {'uJ':>9} bit-exact")
    with tempfile.TemporaryDirectory() as tmp:
        previous: dict[tuple, tuple[int, int]] = {}  # (mode, tile) -> (n, cycles) of the last measured row
        first: dict[tuple, tuple[int, int]] = {}
        for seq in args.lengths:
            for mode in modes:
                attention, tile = mode
                try:
                    row = measure(seq, attention, Path(tmp), tile, args.timeout)
                except UserError as err:  # e.g. an inference that runs past --timeout
                    print(f"{seq:>5} {attention:<14} {tile:>4} not measured: {err}", flush=True)
                    continue
                measured.append({"n": seq, "attention": attention, "tile": tile, **row})
                growth = row["cycles"] / previous[mode][1] if mode in previous else float("nan")
                previous[mode] = (seq, row["cycles"])
                first.setdefault(mode, (seq, row["cycles"]))
                print(f"{seq:>5} {attention:<14} {tile:>4} {row['instructions']:>13,} {row['cycles']:>12,} "
                      f"{growth:>10.2f} {row['attention_cycles']:>12,} {row['ram']:>8,} {row['energy_uj']:>9.1f} {row['bit_exact']}", flush=True)
        cycles = {(row["attention"], row["tile"], row["n"]): row["cycles"] for row in measured}
        for mode in modes:
            if mode in first and first[mode][0] != previous[mode][0]:
                low = first[mode][0]
                ratios = [f"cycles(n={high}) / cycles(n={low}) = {cycles[(*mode, high)] / cycles[(*mode, low)]:.1f}"
                          for high in sorted({512, previous[mode][0]}) if high > low and (*mode, high) in cycles]
                print(f"{mode[0]} (query tile {mode[1]}): " + ", ".join(ratios))
    if args.patterns:
        print_pair_predictions(measured, args.patterns, f"local:{args.window}")
    if args.json:
        Path(args.json).write_text(json.dumps({"target": TARGET, "embed": EMBED, "rows": measured}, indent=2) + "\n")


def print_pair_predictions(measured: list[dict], patterns: list[str], local: str) -> None:
    """Each pattern's attention-kernel cycles beside the pair model fitted on dense (n <= 512: the DSP kernel) and
    local rows (query tile 1)."""
    basis = [row for row in measured if row["tile"] == 1 and (row["attention"] == local or (
        row["attention"] == "dense" and row["n"] <= 512))]
    if len(basis) < 2:
        return
    per_pair, per_row = pair_model(basis)
    print(f"attention kernel cost model (dense n <= 512 and {local}): {per_pair:.1f} cycles per (query, key) "
          f"pair + {per_row:.1f} per query row")
    for row in measured:
        if row["tile"] == 1 and row["attention"] in patterns:
            predicted = per_pair * row["pairs"] + per_row * row["n"]
            print(f"{row['n']:>5} {row['attention']:<14} pairs {row['pairs']:>9,} attention cycles "
                  f"{row['attention_cycles']:>11,} predicted {predicted:>13,.0f} ({row['attention_cycles'] / predicted - 1:+.1%})")


if __name__ == "__main__":
    main()
