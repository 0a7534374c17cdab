"""All IR ops. Importing this package registers every op module in `OPS` (see registry.py: one op, one module)."""

from mcu_attn.ir.ops import (add, attention, attention_step, conv, early_exit, elementwise, embedding,  # noqa: F401
                             im2col, int8_pointwise, layernorm, linear, linear_epilogue, mul, qoperator, quant,
                             reduce, rmsnorm, rotary, tensor, token_select)
from mcu_attn.ir.ops.registry import OPS, OpSpec, infer_types, is_kind, node_macs, spec

__all__ = ["OPS", "OpSpec", "infer_types", "is_kind", "node_macs", "spec"]
