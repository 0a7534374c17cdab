"""Checks every frontend (ONNX, TFLite) applies to the graph it builds: sizes, divisors and non-finite constants.

- `check_size`: no graph input, constant or computed value above `MAX_TENSOR_BYTES`;
- `check_divisor`: no division by a constant that holds 0;
- `check_constants`: no constant holds NaN, and ±inf only where it is an identity bound (Max/Min/Clip, whose
  spec says `allows_inf`) or a real attention mask: -inf (never +inf) read by an op whose spec allows it (Add)
  and added to scores that go on to a Softmax (through at most a few mask-carrying ops).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError

# The largest tensor the frontend accepts: 32x the largest flash (2 MB) and 64x the largest SRAM (1 MB) in the
# target table, so no model for any target comes near it, while a model that would make the host reference
# allocate gigabytes (a batch of 65,536, a huge ConstantOfShape) is refused before it allocates.
MAX_TENSOR_BYTES = 64 << 20

# ops where a non-finite constant operand is an identity bound, by input position: Clip(x, -inf, +inf), Max with
# -inf and Min with +inf change nothing
_BOUNDS = {("Clip", 1): -np.inf, ("Clip", 2): np.inf, ("Max", None): -np.inf, ("Min", None): np.inf}
_MASK_PATH_OPS = frozenset({"Add", "Where", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Cast", "Slice",
                            "Transpose", "Identity"})


def check_size(what: str, shape: list[int], nbytes: int) -> None:
    if nbytes > MAX_TENSOR_BYTES:
        raise UserError(f"{what} {shape} would take {nbytes / 2**20:,.0f} MiB; mcu-attn refuses tensors above "
                        f"{MAX_TENSOR_BYTES >> 20} MiB (microcontroller models are far smaller: export with batch 1 "
                        f"and the sequence length the device runs)")


def check_divisor(node_label: str, divisor: np.ndarray | None) -> None:
    if divisor is not None and np.any(divisor == 0):
        raise UserError(f"{node_label}: divides by a constant that holds 0")


def check_constants(graph) -> None:
    """No NaN in any constant; ±inf only as an identity bound or an attention mask (module docstring)."""
    for name, array in graph.constants.items():
        if not np.issubdtype(array.dtype, np.floating) or np.all(np.isfinite(array)):
            continue
        if np.isnan(array).any():
            raise UserError(f"weight {name!r} contains NaN")
        for consumer in graph.consumers(name):
            if not _inf_allowed(graph, consumer, name, array):
                raise UserError(f"weight {name!r} contains infinity, and {consumer.op} (node "
                                f"'{consumer.name or consumer.outputs[0]}') does not use it as an attention mask "
                                "(-inf added to scores before a Softmax) or a bound")


def _inf_allowed(graph, node, name: str, array: np.ndarray) -> bool:
    """The reader's spec allows infinite constants (`allows_inf`), and `array`'s are a bound in the direction
    that changes nothing, or -inf of a mask (an Add whose result reaches a Softmax)."""
    from mcu_attn.ir.ops import spec

    if not spec(node.op).allows_inf:
        return False
    infinities = set(np.unique(array[np.isinf(array)]).tolist())
    for position, value in enumerate(node.inputs):
        if value != name:
            continue
        bound = _BOUNDS.get((node.op, position), _BOUNDS.get((node.op, None)))
        if bound is not None:
            if infinities != {bound}:
                return False
        elif infinities != {-np.inf} or not _reaches_softmax(graph, node):
            return False
    return True


def _reaches_softmax(graph, node, hops: int = 6) -> bool:
    """True when `node`'s output reaches a Softmax through at most `hops` mask-carrying ops (other readers, such
    as the masked-row guard's ReduceMax, may read the mask too)."""
    if hops == 0:
        return False
    readers = [reader for out in node.outputs for reader in graph.consumers(out)]
    return any(reader.op == "Softmax" or (reader.op in _MASK_PATH_OPS and _reaches_softmax(graph, reader, hops - 1))
               for reader in readers)
