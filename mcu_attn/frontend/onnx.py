"""ONNX → IR. The only module that imports `onnx`.

Steps, in order:
1. read and check the file (missing, empty, not protobuf, not a valid model → UserError);
2. fix the batch dimension of every graph input to 1 (and any dimension `bind` gives); any other dynamic
   dimension, such as a dynamic sequence length, is refused: the IR has static shapes only;
3. walk the nodes in order, translating each into IR ops (opset-aware `importers.RULES`, or a plain copy for
   ops with ONNX semantics), typing every value as we go with the IR's own inference; a node whose inputs are
   all constants is evaluated on the spot (constant folding), so Shape→Gather→Concat→Reshape chains, runtime
   `Sqrt(head_dim)` scale chains and mask construction all collapse into constants before any pattern runs;
   ops the IR does not know are folded with onnx's reference evaluator when their inputs are constant;
4. collect every node that cannot be imported and report them together; refuse NaN/inf weights.
What is refused before, during and after these steps, and why, is in `onnx_checks.py`: any exception a node
raises while it is imported becomes a one-line UserError naming that node.
DequantizeLinear of a constant folds to float weights annotated with the model's own QuantParams.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mcu_attn.errors import UserError
from mcu_attn.frontend.builder import GraphBuilder, import_error
from mcu_attn.frontend.importers import RULES, OnnxNode, Unsupported
from mcu_attn.frontend.graph_checks import check_divisor, check_size
from mcu_attn.frontend.onnx_checks import check_inferred_sizes, check_model, check_tensor
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import OPS
from mcu_attn.ir.types import QuantParams, TensorType, dtype_name

ONNX_OPS = {(("" if "." not in n else n.rsplit(".", 1)[0]), n.rsplit(".", 1)[-1]): s.name
            for s in OPS.values() for n in s.onnx}


def supported_onnx_ops() -> list[str]:
    """Every ONNX op the frontend imports (domain-qualified outside the default domain)."""
    names = {f"{d}.{o}" if d else o for d, o in list(ONNX_OPS) + list(RULES)}
    return sorted(names)


def read_model(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        check_model(source, f"model {source.graph.name or '(unnamed)'}")
        return source
    path = os.fspath(source)
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected an .onnx file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: empty file, expected an ONNX model")
    try:
        model = onnx.load(path)
    except Exception as err:  # protobuf raises several types for garbage
        raise UserError(f"{path}: not an ONNX model ({type(err).__name__})") from None
    if not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise UserError(f"{path}: not an ONNX model (no graph, nodes or opset)")
    check_model(model, path)
    return model


def _attr_value(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return tuple(v.decode() if isinstance(v, bytes) else v for v in value)
    return value


def _input_type(value_info: onnx.ValueInfoProto, bind: Mapping[str, tuple[int, ...]]) -> TensorType:
    ttype = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type"):
        raise UserError(f"input {value_info.name!r} is not a tensor")
    elem = helper.tensor_dtype_to_np_dtype(ttype.elem_type)
    if value_info.name in bind:
        return TensorType(dtype_name(elem), tuple(bind[value_info.name]))
    dims = []
    for axis, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append(int(dim.dim_value))
        elif axis == 0:
            dims.append(1)  # the batch: a model runs one sample at a time
        else:
            label = dim.dim_param or "?"
            raise UserError(f"input {value_info.name!r} has a dynamic dimension {label!r} at axis {axis}: "
                            "only the batch may be dynamic; export with a fixed sequence length")
    return TensorType(dtype_name(elem), tuple(dims))


class _Importer(GraphBuilder):
    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__(model.graph.name or "model")
        self.model = model
        self.opsets = {o.domain if o.domain != "ai.onnx" else "": o.version for o in model.opset_import}
        self.unsupported = Unsupported()

    def folded_quant(self, node: Node) -> QuantParams | None:
        return _dequantized_params(node, self.graph) if node.op == "DequantizeLinear" else None

    # ---- the walk -------------------------------------------------------------------------------------------
    def run(self, bind: Mapping[str, np.ndarray]) -> Graph:
        graph = self.graph
        for init in self.model.graph.initializer:
            check_tensor(init, f"initializer {init.name!r}")  # again: external data is loaded by now
            self.define_const(init.name, numpy_helper.to_array(init))
        bound_shapes = {k: tuple(np.asarray(v).shape) for k, v in bind.items()}
        for value_info in self.model.graph.input:
            if value_info.name in graph.constants:
                continue
            if value_info.name in bind and not np.issubdtype(np.asarray(bind[value_info.name]).dtype, np.floating):
                self.define_const(value_info.name, np.asarray(bind[value_info.name]))
                continue
            graph.add_input(value_info.name, _input_type(value_info, bound_shapes))
            ttype = graph.type(value_info.name)
            check_size(f"input {value_info.name!r}", list(ttype.shape), ttype.size * ttype.np_dtype.itemsize)
        check_inferred_sizes(self.model, {**bound_shapes, **{name: graph.shape(name) for name in graph.inputs}})
        for proto in self.model.graph.node:
            self._import_node(proto)
        self.unsupported.raise_if_any()
        graph.outputs = [o.name for o in self.model.graph.output]
        for name in graph.outputs:
            if name not in graph.types:
                raise UserError(f"graph output {name!r} is never computed")
        self.reject_non_finite()
        graph.prune_unused()
        return graph

    def _import_node(self, proto: onnx.NodeProto) -> None:
        domain = "" if proto.domain in ("", "ai.onnx") else proto.domain
        label = f"{proto.op_type} (node '{proto.name or (proto.output[0] if proto.output else '?')}')"
        try:
            node = OnnxNode(proto.op_type, domain, list(proto.input), list(proto.output),
                            {a.name: _attr_value(a) for a in proto.attribute}, proto.name,
                            self.opsets.get(domain, self.opsets.get("", 1)))
            self._translate(proto, node, domain)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001  (a malformed node must not crash the import: name it instead)
            raise import_error(label, err) from None

    def _translate(self, proto: onnx.NodeProto, node: OnnxNode, domain: str) -> None:
        missing = [v for v in node.inputs if v and v not in self.graph.types]
        if missing:
            return  # fed by an unsupported node: that one is already reported
        if node.op_type == "Div" and len(node.inputs) > 1:
            check_divisor(node.label, self.const(node.inputs[1]))
        if (domain, node.op_type) in RULES:
            RULES[(domain, node.op_type)](self, node)
        elif (domain, node.op_type) in ONNX_OPS:
            self.emit(ONNX_OPS[(domain, node.op_type)], node.inputs, node.outputs, node.attrs)
        elif all(v in self.graph.constants for v in node.inputs if v):
            self._fold_foreign(proto, node)
        else:
            self.unsupported.labels.append(node.label)

    def _fold_foreign(self, proto: onnx.NodeProto, node: OnnxNode) -> None:
        """Evaluate an op the IR does not know (ConstantOfShape, Range, ...) on constant inputs."""
        from onnx.reference import ReferenceEvaluator

        feeds = {v: self.graph.constants[v] for v in proto.input if v}
        inputs = [helper.make_tensor_value_info(v, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                  for v, a in feeds.items()]
        outputs = [helper.make_tensor_value_info(v, onnx.TensorProto.UNDEFINED, None) for v in proto.output if v]
        single = helper.make_model(helper.make_graph([proto], "fold", inputs, outputs),
                                   opset_imports=list(self.model.opset_import))
        try:
            results = ReferenceEvaluator(single).run(None, feeds)
        except Exception as err:  # onnx's evaluator raises anything; the reason goes into the error
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            self.unsupported.labels.append(f"{node.label} [constant, but onnx's evaluator failed: {reason}]")
            return
        for name, result in zip([v for v in proto.output if v], results):
            self.define_const(name, np.asarray(result))


def _dequantized_params(node: Node, graph: Graph) -> QuantParams | None:
    """QuantParams of a constant folded through DequantizeLinear (the model's own weight quantization)."""
    quantized = graph.constants[node.inputs[0]]
    scale = np.asarray(graph.constants[node.inputs[1]], np.float64).reshape(-1)
    zp = (np.asarray(graph.constants[node.inputs[2]]).reshape(-1) if len(node.inputs) > 2 and node.inputs[2]
          else np.zeros(scale.shape, np.int64))
    if node.attr("block_size", 0):
        return None
    axis = None if scale.size == 1 else int(node.attr("axis", 1)) % quantized.ndim
    bits = 4 if graph.type(node.inputs[0]).dtype in ("int4", "uint4") else 8 * quantized.dtype.itemsize
    return QuantParams(tuple(float(s) for s in scale), tuple(int(z) for z in zp), axis, bits)


def load_onnx(source: str | os.PathLike | onnx.ModelProto, bind: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Import an ONNX model into an (unoptimised) IR graph; `bind` fixes non-float inputs to given values."""
    model = read_model(source)
    if isinstance(source, (str, os.PathLike)) and any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        onnx.load_external_data_for_model(model, os.path.dirname(os.fspath(source)) or ".")
    return _Importer(model).run(bind or {})
