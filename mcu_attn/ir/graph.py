"""The IR graph: named values, typed, single assignment, nodes in topological order.

Values are strings. A value is a graph input, a constant (`constants`, a numpy array) or the output of exactly
one node. `types` holds the `TensorType` of every value. Use-lists (`consumers`) and the producer index are
derived from `nodes` and rebuilt lazily after any edit made through the editing methods; passes never touch
`nodes` directly, so the indices stay true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from mcu_attn.ir.types import TensorType


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


class Graph:
    def __init__(self, name: str = "model") -> None:
        self.name = name
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.types: dict[str, TensorType] = {}
        self.constants: dict[str, np.ndarray] = {}
        self._nodes: list[Node] = []
        self._index: tuple[dict[str, Node], dict[str, list[Node]]] | None = None
        self._counter = 0
        self.meta: dict[str, object] = {}  # what passes report about the graph (e.g. "quantization")

    # ---- reading -------------------------------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes)

    def _indices(self) -> tuple[dict[str, Node], dict[str, list[Node]]]:
        if self._index is None:
            producers: dict[str, Node] = {}
            consumers: dict[str, list[Node]] = {}
            for node in self._nodes:
                for out in node.outputs:
                    producers[out] = node
                for inp in node.inputs:
                    if inp:
                        consumers.setdefault(inp, []).append(node)
            self._index = (producers, consumers)
        return self._index

    def producer(self, value: str) -> Node | None:
        return self._indices()[0].get(value)

    def consumers(self, value: str) -> list[Node]:
        return list(self._indices()[1].get(value, []))

    def is_const(self, value: str) -> bool:
        return value in self.constants

    def const(self, value: str) -> np.ndarray:
        return self.constants[value]

    def type(self, value: str) -> TensorType:
        return self.types[value]

    def shape(self, value: str) -> tuple[int, ...]:
        return self.types[value].shape

    def is_private(self, nodes: Iterable[Node], result: str) -> bool:
        """True when no value the `nodes` compute, other than `result`, is a graph output or read by a node
        outside them: the subgraph can be replaced by whatever computes `result`."""
        nodes = list(nodes)
        inside = {id(n) for n in nodes}
        return not any(out and out != result and
                       (out in self.outputs or any(id(r) not in inside for r in self.consumers(out)))
                       for node in nodes for out in node.outputs)

    # ---- editing -------------------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A value name not used yet."""
        while True:
            self._counter += 1
            name = f"{hint}_{self._counter}"
            if name not in self.types:
                return name

    def add_input(self, name: str, ttype: TensorType) -> None:
        self.inputs.append(name)
        self.types[name] = ttype

    def add_const(self, hint: str, array: np.ndarray, ttype: TensorType | None = None, exact: bool = False) -> str:
        name = hint if exact else self.fresh(hint)
        self.constants[name] = array
        self.types[name] = ttype or TensorType.of(array)
        return name

    def set_nodes(self, nodes: Iterable[Node]) -> None:
        self._nodes = list(nodes)
        self._index = None

    def append(self, node: Node) -> Node:
        self._nodes.append(node)
        self._index = None
        return node

    def insert_before(self, anchor: Node, new_nodes: Iterable[Node]) -> None:
        position = self._position(anchor)
        self._nodes[position:position] = list(new_nodes)
        self._index = None

    def insert_after(self, anchor: Node, new_nodes: Iterable[Node]) -> None:
        position = self._position(anchor) + 1
        self._nodes[position:position] = list(new_nodes)
        self._index = None

    def remove(self, nodes: Iterable[Node]) -> None:
        doomed = {id(n) for n in nodes}
        self._nodes = [n for n in self._nodes if id(n) not in doomed]
        self._index = None

    def replace_uses(self, old: str, new: str) -> None:
        """Every reader of `old` reads `new` instead. Graph outputs keep their public names: when `old` is one,
        the node computing `new` is renamed to produce `old`, and the stale definition gets a fresh name.
        `new` computes what `old` did, so the activation parameters a QDQ model gave `old`
        (meta["qdq_activation_qparams"], recorded before the frontend's fusions) are `new`'s."""
        recorded = self.meta.get("qdq_activation_qparams")
        if isinstance(recorded, dict) and old in recorded:
            recorded[new] = recorded[old]
        if old in self.outputs and new not in self.inputs and new not in self.constants:
            stale = self.fresh(f"{old}_replaced")
            self._rename(old, stale)
            self._rename(new, old)
            return
        for node in self._nodes:
            node.inputs = [new if i == old else i for i in node.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]
        self._index = None

    def set_inputs(self, node: Node, inputs: Iterable[str]) -> None:
        """Give `node` new inputs (the use-lists follow)."""
        node.inputs = list(inputs)
        self._index = None

    def _rename(self, old: str, new: str) -> None:
        for node in self._nodes:
            node.inputs = [new if i == old else i for i in node.inputs]
            node.outputs = [new if o == old else o for o in node.outputs]
        self.types[new] = self.types.pop(old)
        self._index = None

    def touch(self) -> None:
        """Call after editing a node's inputs or outputs in place."""
        self._index = None

    def _position(self, node: Node) -> int:
        for position, candidate in enumerate(self._nodes):
            if candidate is node:
                return position
        raise KeyError(f"node {node.name or node.op} is not in the graph")

    def prune_unused(self) -> int:
        """Drop nodes whose outputs nobody reads and constants nobody reads; returns how many nodes went."""
        live = set(self.outputs)
        kept: list[Node] = []
        for node in reversed(self._nodes):
            if any(o in live for o in node.outputs):
                kept.append(node)
                live.update(i for i in node.inputs if i)
        removed = len(self._nodes) - len(kept)
        self._nodes = list(reversed(kept))
        self._index = None
        for name in [c for c in self.constants if c not in live]:
            del self.constants[name]
        defined = set(self.inputs) | set(self.constants) | {o for n in self._nodes for o in n.outputs}
        for name in [t for t in self.types if t not in defined]:
            del self.types[name]
        return removed

    def copy(self) -> "Graph":
        """A structural copy; constant arrays are shared (passes replace constants, never mutate them)."""
        other = Graph(self.name)
        other.inputs = list(self.inputs)
        other.outputs = list(self.outputs)
        other.types = dict(self.types)
        other.constants = dict(self.constants)
        other._nodes = [Node(n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.name) for n in self._nodes]
        other._counter = self._counter
        other.meta = dict(self.meta)
        return other
