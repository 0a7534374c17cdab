"""Where a linear layer's cycles go on the Cortex-M4 model (arm kernels, Unicorn, zero wait states): the cost per
MAC of the dot loop (the slope in K), the cost per output of everything else (epilogue, tile set-up and advance:
the intercept), and the cost of the 17th row of a 17-row layer (the row left over by the 2-row tile), for QLinear,
QLinearAdd and QLinearTable; and attention and LayerNorm per MAC / per element at the digits ViT's sizes. The
closing breakdown of the digits ViT's cycles by cause is these numbers times the layers' shapes.

    python benchmarks/linear_costs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels as cases  # noqa: E402  (benchmarks/kernels.py: the same operands as the kernel table)

from mcu_attn.ir.ops.registry import spec  # noqa: E402
from mcu_attn.sim.cycles import core_cycles, core_timing  # noqa: E402
from mcu_attn.sim.kernel_calls import S8_FUNCTIONS, EmulatorBackend, KernelBindings, build_kernel_elf  # noqa: E402

CORE = "cortex-m4"


def main() -> int:
    timing = core_timing(CORE)
    backend = EmulatorBackend(build_kernel_elf("arm", CORE, S8_FUNCTIONS), CORE, profile=True)
    bindings = KernelBindings(backend, query_tiles=(1,))
    rng = np.random.default_rng(5)

    def cost(op, inputs, attrs) -> tuple[int, float]:
        if not np.array_equal(bindings.run(op, inputs, attrs), spec(op).reference(*inputs, **attrs)):
            raise SystemExit(f"{op}: the arm kernel differs from the reference")
        profile = backend.call_profiles()[-1]
        return profile.total("instructions"), float(core_cycles(profile, timing).sum())

    makers = {"QLinear": lambda r, k, n: cases._linear(rng, r, k, n, 8),
              "QLinearAdd": lambda r, k, n: cases._linear_add(rng, r, k, n),
              "QLinearTable": lambda r, k, n: cases._linear_table(rng, r, k, n)}
    print("| op | dot loop, cycles/MAC (instr/MAC) | per output: epilogue + tile control, cycles | "
          "17th row, K 32 N 32: cycles/MAC (paired rows) |")
    print("|---|---|---|---|")
    for op, make in makers.items():
        c = {(rows, k): cost(op, *make(rows, k, 32)) for rows in (16, 17) for k in (32, 64)}
        slope = (c[(16, 64)][1] - c[(16, 32)][1]) / (16 * 32 * 32)
        islope = (c[(16, 64)][0] - c[(16, 32)][0]) / (16 * 32 * 32)
        per_output = (c[(16, 32)][1] - slope * 16 * 32 * 32) / (16 * 32)
        odd = c[(17, 32)][1] - c[(16, 32)][1]
        print(f"| {op} | {slope:.3f} ({islope:.3f}) | {per_output:.1f} | {odd / 1024:.2f} "
              f"({c[(16, 32)][1] / (16 * 32 * 32):.2f}) |")
    instructions, cycles = cost("QAttention", *cases._attention(rng, 17, 8))
    print(f"\nattention S 17 head_dim 8: {instructions / (2 * 17 * 17 * 8):.2f} instr/MAC, "
          f"{cycles / (2 * 17 * 17 * 8):.2f} cycles/MAC")
    instructions, cycles = cost("QLayerNorm", *cases._layernorm(rng, 17, 32))
    print(f"layernorm rows 17 C 32: {instructions / 544:.2f} instr/element, {cycles / 544:.2f} cycles/element")
    return 0


if __name__ == "__main__":
    sys.exit(main())
