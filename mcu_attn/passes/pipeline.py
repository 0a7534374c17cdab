"""The pipelines: explicit, ordered lists of passes, each with the reason it runs where it does."""

from __future__ import annotations

from mcu_attn.passes.cleanup import CanonicalLinear, DeadCode, DropIdentities


def frontend_pipeline() -> list:
    return [
        DropIdentities(),   # exporters leave Identity/Dropout and no-op reshapes; patterns should not see them
        CanonicalLinear(),  # MatMul/Gemm by a constant (+ bias Add) is one Linear: what the kernels implement
        DeadCode(),         # folding and fusion leave values nobody reads
    ]
