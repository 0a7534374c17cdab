"""All IR ops. Importing this package registers every op family in `OPS`."""

from mcu_attn.ir.ops import elementwise, nn, qops, quant, tensor  # noqa: F401  (registration side effects)
from mcu_attn.ir.ops.registry import OPS, OpSpec, infer_types, node_macs, spec

__all__ = ["OPS", "OpSpec", "infer_types", "node_macs", "spec"]
