"""Kernel benchmark: instructions and ESTIMATED cycles per MAC of every integer kernel, portable (`ref`) and
DSP-extension (`arm`) side by side, on Cortex-M4 and Cortex-M7; then whole models.

Kernels: each variant is compiled for each core into the small test ELF of `mcu_attn/sim/kernel_calls.py` and
called in Unicorn on seeded inputs at the shapes the models use (linear K = 8..256 and 1..257 rows, attention
over 17..257 tokens at head sizes 8 and 16, LayerNorm, add, table). Each call's executed blocks give its
instructions; the core cycle model of `mcu_attn/sim/cycles.py` turns them into estimated cycles with
zero-wait-state memory (the kernel's operands are all in the emulated SRAM). Every call is checked against the
numpy reference, bit for bit. Attention's per-pair cost that does not grow with the head size (the softmax:
the logit compare, the table index and lookup, the running sum, and the loop) is the intercept of the cost per
(query, key) pair at head sizes 8 and 16.

Models: the bundled digits ViT (17 tokens) and the 257-token `examples/digits_long` (dense), built as int8
firmware for `stm32f407` (Cortex-M4) and `stm32` (Cortex-M7) with each kernel variant, run with `mcu-attn
simulate` (instructions per MAC, estimated cycles per MAC with the target's flash wait states and the caches the
start-up enables, bit-exact against the reference on the first test images).

    python benchmarks/kernels.py [--quick] [--markdown FILE] [--check FILE]

`--markdown FILE` writes the tables (docs/kernel-benchmarks.md is this output); `--check FILE` recomputes them and
exits 1 when FILE differs (instruction counts are deterministic, so any difference is a real change).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from mcu_attn.ir.ops.add import add_params
from mcu_attn.ir.ops.layernorm import layernorm_params
from mcu_attn.reference.qmath import quantize_multiplier, sum_requant_params
from mcu_attn.sim.cycles import core_cycles, core_timing
from mcu_attn.sim.kernel_calls import S8_FUNCTIONS, EmulatorBackend, KernelBindings, build_kernel_elf

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_vit"
LONG = ROOT / "examples" / "digits_long"
CORES = ("cortex-m4", "cortex-m7")
VARIANTS = ("ref", "arm")
SCORE_STEP = 1 / 16


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- kernel cases: (label, op, inputs, attrs, MACs or elements, unit) ----------------------------------------------
def _linear(rng, rows: int, k: int, n: int, bits: int):
    x = rng.integers(-128, 128, (rows, k)).astype(np.int8)
    low, high = (-8, 8) if bits == 4 else (-128, 128)
    w = rng.integers(low, high, (k, n)).astype(np.int8)
    pairs = [quantize_multiplier(0.7 / (k * (8 if bits == 4 else 64))) for _ in range(n)]
    attrs = dict(multiplier=tuple(m for m, _ in pairs), shift=tuple(s for _, s in pairs), y_zp=-5, bits=bits)
    return (x, w, rng.integers(-5000, 5000, n).astype(np.int32)), attrs


def _linear_add(rng, rows: int, k: int, n: int):
    """The residual fusion's epilogue: the linear's accumulator scale and the residual's, in output units."""
    (x, w, bias), attrs = _linear(rng, rows, k, n, 8)
    shift, ((_, multipliers), (r_k, (r_m,))) = sum_requant_params([([0.7 / (k * 64)] * n, 31), ([0.6], 8)])
    r = rng.integers(-128, 128, (rows, n)).astype(np.int8)
    return (x, w, bias, r), dict(multiplier=tuple(multipliers), right_shift=shift, r_multiplier=r_m,
                                 r_left_shift=r_k, r_zp=6, y_zp=-5, bits=8)


def _linear_table(rng, rows: int, k: int, n: int):
    inputs, attrs = _linear(rng, rows, k, n, 8)
    return inputs, dict(attrs, table=tuple(int(t) for t in rng.integers(-128, 128, 256)))


def _attention(rng, seq: int, head_dim: int):
    q, k, v = (rng.integers(-128, 128, (1, seq, head_dim)).astype(np.int8) for _ in range(3))
    table = tuple(int(round(2 ** 15 * np.exp(-SCORE_STEP * t))) for t in range(256))
    score = quantize_multiplier(0.02 * 0.02 / np.sqrt(head_dim) / SCORE_STEP)  # logits with a spread of ~2
    out = quantize_multiplier(0.02 / (256 * 0.02))
    return (q, k, v), dict(heads=1, head_dim=head_dim, q_zp=3, k_zp=-7, v_zp=11,
                           out_zp=-2, score_multiplier=score[0], score_shift=score[1], exp_table=table,
                           out_multiplier=out[0], out_shift=out[1])


def _layernorm(rng, rows: int, c: int):
    attrs, bias = layernorm_params(rng.uniform(0.5, 1.5, c) / 0.05, rng.integers(-20, 20, c), 4)
    return ((rng.integers(-128, 128, (1, rows, c)).astype(np.int8), np.asarray(bias, np.int64)),
            dict(attrs, eps=int(round(c * c * 1e-5 / 0.05 ** 2))))


def _add(rng, rows: int, c: int):
    s_a, s_b, s_y = 0.05, 0.03, 0.07
    a, b = (rng.integers(-128, 128, (1, rows, c)).astype(np.int8) for _ in range(2))
    return (a, b), dict(a_zp=3, b_zp=-4, **add_params(s_a / s_y, s_b / s_y), out_zp=1)


def kernel_cases(quick: bool) -> list[tuple]:
    rng = np.random.default_rng(2024)
    cases = []
    rows_k = [(1, 32), (17, 8), (17, 32), (17, 64), (17, 256), (257, 32)] if not quick else [(17, 32), (17, 64)]
    for rows, k in rows_k:
        cases.append((f"linear s8 rows {rows} K {k} N 32", "QLinear", *_linear(rng, rows, k, 32, 8), rows * k * 32))
    for rows, k in [(17, 32), (17, 128)] if not quick else [(17, 32)]:
        cases.append((f"linear+add s8 rows {rows} K {k} N 32", "QLinearAdd", *_linear_add(rng, rows, k, 32),
                      rows * k * 32))
    for rows, k in [(17, 32)] if not quick else []:
        cases.append((f"linear+table s8 rows {rows} K {k} N 64", "QLinearTable", *_linear_table(rng, rows, k, 64),
                      rows * k * 64))
    for rows, k in ([(17, 32), (17, 64), (17, 256)] if not quick else [(17, 64)]):
        cases.append((f"linear s4 rows {rows} K {k} N 32", "QLinear", *_linear(rng, rows, k, 32, 4), rows * k * 32))
    for seq in ((17, 65, 257) if not quick else (17,)):
        for dim in (8, 16):
            cases.append((f"attention S {seq} head_dim {dim}", "QAttention", *_attention(rng, seq, dim),
                          2 * seq * seq * dim))
    for rows, c in ((17, 32), (17, 64), (257, 32)) if not quick else ((17, 32),):
        cases.append((f"layernorm rows {rows} C {c}", "QLayerNorm", *_layernorm(rng, rows, c), rows * c))
    cases.append(("add 17 x 32", "QAdd", *_add(rng, 17, 32), 17 * 32))
    table = tuple(int(t) for t in rng.integers(-128, 128, 256))
    cases.append(("table 17 x 64", "QTable", (rng.integers(-128, 128, (17, 64)).astype(np.int8),), dict(table=table),
                  17 * 64))
    return cases


def measure_kernels(quick: bool) -> dict:
    """{(core, variant, label): (instructions, cycles)}; raises if any call differs from the reference."""
    from mcu_attn.ir.ops.registry import spec

    cases = kernel_cases(quick)
    results = {}
    for core in CORES:
        timing = core_timing(core)
        for variant in VARIANTS:
            _progress(f"kernels: {variant} on {core} ({len(cases)} cases)")
            backend = EmulatorBackend(build_kernel_elf(variant, core, S8_FUNCTIONS), core, profile=True)
            bindings = KernelBindings(backend, query_tiles=(1,))
            for label, op, inputs, attrs, _ in cases:
                got = bindings.run(op, inputs, attrs)
                if not np.array_equal(got, spec(op).reference(*inputs, **attrs)):
                    raise SystemExit(f"{label}: {variant} kernel on {core} differs from the reference")
                profile = backend.call_profiles()[-1]
                results[(core, variant, label)] = (profile.total("instructions"),
                                                   float(core_cycles(profile, timing).sum()))
    return results


def kernel_table(results: dict, quick: bool) -> list[str]:
    lines = ["| kernel, shape | unit | M4 ref instr | M4 arm instr | M4 ref cycles | M4 arm cycles | "
             "M7 ref cycles | M7 arm cycles |", "|---|---|---|---|---|---|---|---|"]
    for label, op, _, _, count in kernel_cases(quick):
        unit = "per MAC" if op in ("QLinear", "QLinearAdd", "QLinearTable", "QAttention") else "per element"
        cells = [results[(core, variant, label)][i] / count for core, i, variant in
                 [("cortex-m4", 0, "ref"), ("cortex-m4", 0, "arm"), ("cortex-m4", 1, "ref"), ("cortex-m4", 1, "arm"),
                  ("cortex-m7", 1, "ref"), ("cortex-m7", 1, "arm")]]
        lines.append(f"| {label} | {unit} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return lines


def softmax_table(results: dict, quick: bool) -> list[str]:
    """Per (query, key) pair: the cost at head sizes 8 and 16 and its intercept (what does not grow with D)."""
    lines = ["| S | variant | instr per pair, D 8 | instr per pair, D 16 | softmax and loop per pair (intercept) |",
             "|---|---|---|---|---|"]
    for seq in ((17, 65, 257) if not quick else (17,)):
        for variant in VARIANTS:
            per_pair = [results[("cortex-m4", variant, f"attention S {seq} head_dim {d}")][0] / seq ** 2
                        for d in (8, 16)]
            lines.append(f"| {seq} | {variant} | {per_pair[0]:.1f} | {per_pair[1]:.1f} | "
                         f"{2 * per_pair[0] - per_pair[1]:.1f} |")
    return lines


# ---- whole models -----------------------------------------------------------------------------------------------
def measure_models(quick: bool, scratch: Path) -> list[dict]:
    from mcu_attn.build import build
    from mcu_attn.options import BuildOptions
    from mcu_attn.sim.run import SimOptions, simulate

    models = [("digits ViT (17 tokens)", DIGITS / "digits_vit.onnx", DIGITS, 60),
              ("digits_long dense (257 tokens)", LONG / "digits_long_dense.onnx", LONG, 8)]
    rows = []
    for name, model, folder, samples in models[: (1 if quick else 2)]:
        calib = folder / "data" / "calib.npy"
        x = np.load(folder / "data" / "test_x.npy")[: (8 if quick else samples)]
        y = np.load(folder / "data" / "test_y.npy")[: len(x)]
        for target in ("stm32f407", "stm32"):
            for variant in VARIANTS:
                _progress(f"model: {name} on {target}, {variant} kernels")
                out = scratch / f"{model.stem}_{target}_{variant}"
                build(model, target, out, BuildOptions(bits=8, calib=str(calib), kernels=variant))
                r = simulate(str(out), x, y, SimOptions(model=str(model), calib=str(calib)))
                rows.append(dict(model=name, target=target, core=r["core"], variant=variant, macs=r["macs"],
                                 samples=r["samples"], bit_exact=r["bit_exact"], accuracy=r["accuracy"],
                                 instructions=r["instructions"], cycles=r["cycles"],
                                 instructions_per_mac=r["instructions_per_mac"], cycles_per_mac=r["cycles_per_mac"]))
    return rows


def model_table(rows: list[dict]) -> list[str]:
    lines = ["| model | target | kernels | MACs | instructions | instr/MAC | cycles (estimate) | cycles/MAC | "
             "bit-exact |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | `{r['target']}` ({r['core']}) | {r['variant']} | {r['macs']:,} | "
                     f"{r['instructions']:,} | {r['instructions_per_mac']:.2f} | {r['cycles']:,} | "
                     f"{r['cycles_per_mac']:.2f} | {r['bit_exact']} ({r['samples']} samples) |")
    return lines


def report(quick: bool) -> str:
    kernels = measure_kernels(quick)
    with tempfile.TemporaryDirectory(prefix="mcu-attn-kernels-") as scratch:
        models = measure_models(quick, Path(scratch))
    parts = ["<!-- generated by `python benchmarks/kernels.py --markdown docs/kernel-benchmarks.md`; do not edit -->",
             "# Kernel benchmarks (emulated instruction counts; cycles are ESTIMATES, docs/cycle-model.md)", "",
             "## Kernels, per MAC or per element (Unicorn, zero-wait-state memory, bit-exact against the reference)",
             "", *kernel_table(kernels, quick), "",
             "## Attention per (query, key) pair on Cortex-M4 (dense, one head, query tile 1)", "",
             *softmax_table(kernels, quick), "",
             "## Whole models, int8 (`mcu-attn build` + `mcu-attn simulate`; flash wait states included)", "",
             *model_table(models), ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few shapes and the digits ViT only")
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--check", help="exit 1 when this file's tables differ from a fresh run")
    args = parser.parse_args()
    text = report(args.quick)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.check:
        committed = Path(args.check).read_text()
        if committed != text:
            print(f"{args.check} is out of date: run python benchmarks/kernels.py --markdown {args.check}",
                  file=sys.stderr)
            raise SystemExit(1)


if __name__ == "__main__":
    main()
