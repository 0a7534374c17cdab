"""Building an IR graph from a foreign model file, one translated node at a time (shared by the ONNX and TFLite
frontends).

`emit` types every output with the IR's own inference as it goes (no value above the frontends' size limit,
graph_checks.py), and evaluates a node whose inputs are all
constants on the spot (constant folding): shape arithmetic, mask construction and dequantized weights collapse
into constants before any pattern runs. `folded_quant` lets a frontend annotate such a folded constant with the
quantization it came from (ONNX's DequantizeLinear of an integer weight).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.frontend.graph_checks import check_constants, check_size
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import infer_types, spec
from mcu_attn.ir.types import QuantParams, TensorType, dtype_name


class GraphBuilder:
    def __init__(self, name: str) -> None:
        self.graph = Graph(name)

    # ---- the ImportContext protocol (frontend/importers.py) ---------------------------------------------------
    def const(self, value: str) -> np.ndarray | None:
        return self.graph.constants.get(value)

    def shape(self, value: str) -> tuple[int, ...]:
        return self.graph.shape(value)

    def dtype(self, value: str) -> str:
        return self.graph.type(value).dtype

    def fresh(self, hint: str) -> str:
        return self.graph.fresh(hint)

    def define_const(self, value: str, array: np.ndarray, quant: QuantParams | None = None) -> None:
        array = np.asarray(array)
        ttype = TensorType(dtype_name(array.dtype), tuple(int(d) for d in array.shape), quant)
        check_size(f"value {value!r}", list(ttype.shape), array.nbytes)
        self.graph.add_const(value, array, ttype, exact=True)

    def emit(self, op: str, inputs: list[str], outputs: list[str], attrs: dict[str, Any] | None = None) -> None:
        node = Node(op, list(inputs), list(outputs), dict(attrs or {}), outputs[0] if outputs else op)
        present = [v for v in node.inputs if v]
        if present and all(v in self.graph.constants for v in present):
            results = spec(op).run(node, [self.graph.constants[v] if v else None for v in node.inputs])
            quant = self.folded_quant(node)
            for name, result in zip(node.outputs, results):
                if name:
                    self.define_const(name, result, quant)
            return
        for name, ttype in zip(node.outputs, infer_types(self.graph, node)):
            if name:
                check_size(f"value {name!r}", list(ttype.shape), ttype.size * ttype.np_dtype.itemsize)
                self.graph.types[name] = ttype
        self.graph.append(node)

    def folded_quant(self, node: Node) -> QuantParams | None:
        """The quantization a constant folded from `node` keeps (none unless a frontend says otherwise)."""
        return None

    def reject_non_finite(self) -> None:
        """NaN or infinite weights are a broken model; -inf is legitimate only as an attention mask or an open
        bound (graph_checks.check_constants)."""
        check_constants(self.graph)


def import_error(label: str, err: Exception) -> UserError:
    """The one-line error for a node or operator whose translation raised: a malformed model must not crash
    the import, so whatever it raised is named instead (the exception type unless it says enough itself)."""
    if isinstance(err, MemoryError):
        return UserError(f"{label}: cannot import: needs more memory than this machine has")
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    kind = "" if isinstance(err, (ValueError, KeyError, IndexError, TypeError)) and text else \
        f"{type(err).__name__}{': ' if text else ''}"
    return UserError(f"{label}: cannot import: {kind}{text}")
