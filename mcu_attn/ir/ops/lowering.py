"""How an op becomes C: its emitter, registered beside the op with `@emits(...)`, and the helpers emitters share.

An emitter turns one node into kernel calls (`Call`: a C function and its argument expressions) and registers
the data those calls need through the code generator's context (`codegen.emit.EmitContext`): constant tensors
go to weights.c, op parameters (per-channel multipliers, tables, parameter structs, strides) become static
consts in model.c. Besides `emit` an entry may declare
- `view(graph, node)`: the byte offset at which the output is a contiguous block of input 0, or None (the
  memory planner then makes the output an alias and the node emits nothing);
- `inplace`: input positions the output may overwrite: the kernel reads every input element before it writes
  the output element at the same place (elementwise kernels; float attention for q);
- `scratch(graph, node, query_tile)`: kernel scratch bytes, planned in the arena like a tensor (attention
  kernels take `query_tile` query rows at a time; their scratch grows with it, their results do not);
- `guard`: (input position, `check(ctx, node) -> Call`): a test that runs as soon as that input is computed,
  in a layer function of its own; when the call returns nonzero it has written the model's output and `ma_run`
  returns at once (early exit: the rest of the model does not run for this input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.registry import OPS, attach_emitter


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Emitter:
    emit: Callable[[Any, Node], list[Call]]
    view: Callable[[Graph, Node], int | None] | None = None
    inplace: tuple[int, ...] = ()
    scratch: Callable[[Graph, Node, int], int] | None = None
    guard: tuple[int, Callable[[Any, Node], Call]] | None = None


def emits(*ops: str, view=None, inplace: tuple[int, ...] = (), scratch=None, guard=None):
    """Register `fn(ctx, node) -> list[Call]` as the emitter of the (already registered) ops `ops`."""

    def register(fn):
        attach_emitter(ops, Emitter(fn, view, inplace, scratch, guard))
        return fn

    return register


def emitter_of(node: Node) -> Emitter:
    """The node's emitter; an op without one is a UserError listing the ops code generation supports."""
    found = OPS.get(node.op)
    if found is None or found.emitter is None:
        supported = ", ".join(sorted(name for name, entry in OPS.items() if entry.emitter is not None))
        raise UserError(f"code generation does not support {node.op} (node '{node.name or node.outputs[0]}'); "
                        f"supported ops: {supported}")
    return found.emitter


# ---- helpers -----------------------------------------------------------------------------------------------------

def label(node: Node) -> str:
    return f"{node.op} node '{node.name or node.outputs[0]}'"


def require(node: Node, graph: Graph, dtype: str, positions: tuple[int, ...] = (0,)) -> None:
    """Refuse a node whose inputs at `positions` are not of `dtype` (the C kernel's element type)."""
    for position in positions:
        found = graph.type(node.inputs[position]).dtype
        if found != dtype:
            raise UserError(f"{label(node)}: input {position} is {found}; the C kernel takes {dtype}")


def rows(shape: tuple[int, ...]) -> int:
    """The number of rows of a tensor seen as [rows, last axis]."""
    return int(np.prod(shape[:-1], dtype=np.int64))


def count(graph: Graph, value: str) -> int:
    return graph.type(value).size


def only_first_output(node: Node, graph: Graph) -> None:
    """The kernels write a node's first output only: refuse a node whose other outputs (LayerNormalization's
    Mean/InvStdDev, say) are used."""
    for extra in node.outputs[1:]:
        if extra and (graph.consumers(extra) or extra in graph.outputs):
            raise UserError(f"{label(node)}: output {extra!r} is used; the C kernel produces only the first")


def per_channel(values, channels: int) -> np.ndarray:
    """A per-channel parameter (one value, or one per channel) as `channels` int64 values."""
    return np.broadcast_to(np.asarray(values, np.int64).reshape(-1), (channels,))


def repeat_count(node: Node, a_shape: tuple[int, ...], b_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """How many elements of b repeat along a (b broadcast over a's leading axes), for the Add kernels."""
    trimmed = list(b_shape)
    while trimmed and trimmed[0] == 1:
        trimmed.pop(0)
    if a_shape != out_shape or (trimmed and tuple(a_shape[len(a_shape) - len(trimmed):]) != tuple(trimmed)):
        raise UserError(f"{label(node)}: cannot add {list(b_shape)} to {list(a_shape)} (the kernel repeats the "
                        f"second operand over leading axes only)")
    return max(1, int(np.prod(trimmed, dtype=np.int64)))
