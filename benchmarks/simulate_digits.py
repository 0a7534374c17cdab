"""Simulation benchmark: the bundled digits ViT, int8, built for three Cortex-M targets and run in Unicorn.

For each target: whether the firmware matches the numpy reference bit for bit (and its accuracy) on the first
test images, then the per-inference instructions, ESTIMATED cycles and energy (docs/cycle-model.md), the README's
table row (flash and RAM from the build report), and the layers that cost the most cycles. Needs arm-none-eabi-gcc. Equivalent to, per target:

    mcu-attn build examples/digits_vit/digits_vit.onnx --target T -o DIR --bits 8 \
        --calib examples/digits_vit/data/calib.npy
    mcu-attn simulate DIR --data examples/digits_vit/data/test_x.npy --labels examples/digits_vit/data/test_y.npy \
        --limit 60 --top 3

    python benchmarks/simulate_digits.py [--samples N] [--top K] [--targets stm32,stm32f407,nrf52840]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from mcu_attn.build import BuildOptions, build
from mcu_attn.sim.run import SimOptions, simulate

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_vit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--targets", default="stm32,stm32f407,nrf52840")
    args = parser.parse_args()
    model, calib = DIGITS / "digits_vit.onnx", DIGITS / "data" / "calib.npy"
    x = np.load(DIGITS / "data" / "test_x.npy")[:args.samples]
    y = np.load(DIGITS / "data" / "test_y.npy")[:args.samples]
    results, reports = [], []
    with tempfile.TemporaryDirectory(prefix="mcu-attn-bench-") as scratch:
        for target in args.targets.split(","):
            out = Path(scratch) / target
            reports.append(build(model, target, out, BuildOptions(bits=8, calib=str(calib))))
            results.append(simulate(str(out), x, y, SimOptions(model=str(model), calib=str(calib))))

    print(f"digits ViT int8, {results[0]['macs']:,} MACs; Unicorn; cycles and energy are estimates")
    print(f"{'target':<10} {'core':<10} {'MHz':>4} {'bit-exact':>9} {'acc':>6} {'instructions':>13} {'cycles':>11} "
          f"{'instr/MAC':>9} {'cyc/MAC':>8} {'ms':>7} {'uJ':>8}")
    for r in results:
        mhz = r["estimate"]["clock_hz"] / 1e6
        energy = f"{r['energy_uj']:.1f}" if r["energy_uj"] is not None else "n/a"
        print(f"{r['target']:<10} {r['core']:<10} {mhz:>4.0f} {str(r['bit_exact']):>9} {r['accuracy']:>6.3f} "
              f"{r['instructions']:>13,} {r['cycles']:>11,} {r['instructions_per_mac']:>9.2f} "
              f"{r['cycles_per_mac']:>8.2f} {r['time_ms']:>7.2f} {energy:>8}")
    print("\n| target | flash | RAM | instructions | cycles (estimate) | time | energy (estimate) |\n"
          "|---|---|---|---|---|---|---|")
    for r, report in zip(results, reports):
        energy = f"{r['energy_uj']:,.1f} µJ" if r["energy_uj"] is not None else "n/a"
        print(f"| `{r['target']}` ({r['core']}, {r['estimate']['clock_hz'] / 1e6:.0f} MHz) | "
              f"{report['flash_bytes']:,} B | {report['ram_bytes']:,} B | {r['instructions']:,} | {r['cycles']:,} | "
              f"{r['time_ms']:.1f} ms | {energy} |")
    for r in results:
        print(f"\n{r['target']}: top {args.top} layers by estimated cycles")
        for layer in sorted(r["layers"], key=lambda item: -item["cycles"])[:args.top]:
            print(f"  {layer['name']:<48} {layer['op'] or '-':<11} {layer['instructions']:>10,} instr "
                  f"{layer['cycles']:>10,} cycles {layer['share'] * 100:5.1f}%")
        by_op: dict[str, int] = {}
        for layer in r["layers"]:
            by_op[layer["op"] or "-"] = by_op.get(layer["op"] or "-", 0) + layer["cycles"]
        total = sum(by_op.values())
        print("  by op: " + ", ".join(f"{op} {cycles / total:.0%}" for op, cycles in
                                      sorted(by_op.items(), key=lambda item: -item[1]) if cycles))


if __name__ == "__main__":
    main()
