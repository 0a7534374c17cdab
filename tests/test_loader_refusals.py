"""Each class of malformed ONNX model the loader must refuse, built by hand: one `UserError` line that names the
tensor, attribute, input or node, raised before anything large is allocated (a batch of 65,536 included).
`python tests/test_loader_refusals.py` prints the table of classes and messages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcu_attn.api import import_model
from mcu_attn.errors import UserError

OPSET = [helper.make_opsetid("", 17)]


def _model(nodes, inputs, outputs, inits=(), opset=OPSET) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(nodes, "bad", inputs, outputs, list(inits)), opset_imports=opset)


def _io(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _with_weight(weight: TensorProto, op: str = "Add") -> onnx.ModelProto:
    """x[1, 4] op w -> y, with `weight` as w."""
    return _model([helper.make_node(op, ["x", "w"], ["y"], name="use_w")], [_io("x", [1, 4])], [_io("y", [1, 4])],
                  [weight])


def _typed(code: int) -> TensorProto:
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    tensor.data_type = code
    return tensor


def _raw_larger() -> onnx.ModelProto:
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    tensor.raw_data = tensor.raw_data + b"\0" * 8
    return _with_weight(tensor)


def _non_utf8() -> onnx.ModelProto:
    node = helper.make_node("Gelu", ["x"], ["y"], name="gelu")
    node.attribute.append(helper.make_attribute("approximate", b"\xff\xfe"))
    return _model([node], [_io("x", [1, 4])], [_io("y", [1, 4])], opset=[helper.make_opsetid("", 20)])


def _layernorm_0d() -> onnx.ModelProto:
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln")
    return _model([node], [_io("x", [])], [_io("y", [])], [numpy_helper.from_array(np.ones((), np.float32), "s")])


def _perm(perm) -> onnx.ModelProto:
    return _model([helper.make_node("Transpose", ["x"], ["y"], perm=perm, name="t")], [_io("x", [1, 4, 2])],
                  [_io("y", ["a", "b", "c"])])


def _huge_dims() -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array([65536, 65536], np.int64), "shape")
    node = helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill")
    add = helper.make_node("Add", ["x", "big"], ["y"], name="add")
    return _model([node, add], [_io("x", [1, 1])], [_io("y", ["a", "b"])], [shape])


def _batch(size: int) -> onnx.ModelProto:
    """The digits ViT with its batch dimension fixed to `size`."""
    model = onnx.load(Path(__file__).resolve().parents[1] / "examples" / "digits_vit" / "digits_vit.onnx")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = size
    return model


def _dynamo_batch(size: int) -> onnx.ModelProto:
    """A dynamo export whose reshapes follow the batch, with the batch fixed to `size`."""
    model = onnx.load(Path(__file__).resolve().parent / "fixtures" / "models" / "dynamo_op20_sdpa.onnx")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = size
    return model


def _block_size_0() -> onnx.ModelProto:
    b = numpy_helper.from_array(np.zeros((4, 1, 2), np.uint8), "b")
    scales = numpy_helper.from_array(np.ones(4, np.float32), "scales")
    node = helper.make_node("MatMulNBits", ["x", "b", "scales"], ["y"], domain="com.microsoft", K=4, N=4, bits=4,
                            block_size=0, name="mmnb")
    return _model([node], [_io("x", [1, 4])], [_io("y", [1, 4])], [b, scales],
                  [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def _attribute(value: float) -> onnx.ModelProto:
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y"], epsilon=value, name="ln")
    scale = numpy_helper.from_array(np.ones(4, np.float32), "s")
    return _model([node], [_io("x", [1, 4])], [_io("y", [1, 4])], [scale])


def _no_outputs() -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_io("x", [1, 4])], [])


def _input_type(code: int) -> onnx.ModelProto:
    return _model([helper.make_node("Identity", ["x"], ["y"], name="i")], [_io("x", [1, 4], code)],
                  [_io("y", [1, 4], code)])


def _div_zero() -> onnx.ModelProto:
    return _with_weight(numpy_helper.from_array(np.array([1, 2, 0, 4], np.float32), "w"), "Div")


# name -> (model factory, phrase the one error line must contain)
CASES: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "string tensor": (lambda: _with_weight(_typed(TensorProto.STRING)), "initializer 'w' has element type STRING"),
    "bfloat16 tensor": (lambda: _with_weight(_typed(TensorProto.BFLOAT16)), "'w' has element type BFLOAT16"),
    "float8 tensor": (lambda: _with_weight(_typed(TensorProto.FLOAT8E4M3FN)), "'w' has element type FLOAT8E4M3FN"),
    "complex tensor": (lambda: _with_weight(_typed(TensorProto.COMPLEX64)), "'w' has element type COMPLEX64"),
    "unknown element type": (lambda: _with_weight(_typed(99)), "'w' has element type 99 (unknown)"),
    "UNDEFINED element type": (lambda: _with_weight(_typed(TensorProto.UNDEFINED)), "'w' has element type UNDEFINED"),
    "raw data larger than its dims": (_raw_larger, "initializer 'w': dims [4] need 16 bytes of raw data, the model "
                                                   "has 24"),
    "input of element type bfloat16": (lambda: _input_type(TensorProto.BFLOAT16), "input 'x' has element type "
                                                                                   "BFLOAT16"),
    "non-UTF-8 attribute": (_non_utf8, "attribute 'approximate' of Gelu (node 'gelu') is not UTF-8"),
    "division by a constant 0": (_div_zero, "Div (node 'use_w'): divides by a constant that holds 0"),
    "0-d LayerNorm": (_layernorm_0d, "ln"),
    "perm out of range": (lambda: _perm([0, 1, 2 ** 40]), "node name: t"),
    "perm repeating an axis": (lambda: _perm([0, 1, 1]), "node name: t"),
    "dims that would allocate gigabytes": (_huge_dims, "value 'big' of ConstantOfShape (node 'fill') [65536, 65536] "
                                                       "would take 16,384 MiB"),
    "batch of 65,536 (fixed reshape)": (lambda: _batch(65536), "Reshape"),
    "batch of 65,536 (reshape follows it)": (lambda: _dynamo_batch(65536), "would take"),
    "block_size=0": (_block_size_0, "mmnb"),
    "NaN weight": (lambda: _with_weight(numpy_helper.from_array(np.array([1, np.nan, 0, 1], np.float32), "w")),
                   "weight 'w' contains NaN"),
    "+inf added (not a mask)": (lambda: _with_weight(numpy_helper.from_array(
        np.array([1, np.inf, 0, 1], np.float32), "w")), "weight 'w' contains infinity, and Add"),
    "-inf added, not before a Softmax": (lambda: _with_weight(numpy_helper.from_array(
        np.array([1, -np.inf, 0, 1], np.float32), "w")), "does not use it as an attention mask"),
    "NaN attribute": (lambda: _attribute(float("nan")), "attribute 'epsilon' of LayerNormalization (node 'ln') is nan"),
    "inf attribute": (lambda: _attribute(float("inf")), "attribute 'epsilon' of LayerNormalization (node 'ln') is inf"),
    "no outputs": (_no_outputs, "the model has no outputs"),
}


def _refusal(factory: Callable[[], onnx.ModelProto], tmp: Path) -> str:
    path = tmp / "bad.onnx"
    path.write_bytes(factory().SerializeToString())
    with pytest.raises(UserError) as caught:
        import_model(path)
    return str(caught.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_loader_refuses(case, tmp_path):
    factory, phrase = CASES[case]
    message = _refusal(factory, tmp_path)
    assert "\n" not in message and phrase in message, message


def test_a_real_mask_may_hold_minus_infinity(tmp_path):
    """-inf added to scores right before a Softmax is a mask, and imports."""
    mask = numpy_helper.from_array(np.array([[0, -np.inf], [0, 0]], np.float32), "mask")
    nodes = [helper.make_node("Add", ["x", "mask"], ["s"], name="masked"),
             helper.make_node("Softmax", ["s"], ["y"], axis=-1, name="softmax")]
    path = tmp_path / "mask.onnx"
    onnx.save(_model(nodes, [_io("x", [2, 2])], [_io("y", [2, 2])], [mask]), path)
    assert [n.op for n in import_model(path).nodes] == ["Add", "Softmax"]


def main() -> None:
    """Print the table of loader refusals (class, message) in markdown."""
    import tempfile

    print("| malformed model | message |\n|---|---|")
    for name in sorted(CASES):
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "bad.onnx"
            path.write_bytes(CASES[name][0]().SerializeToString())
            try:
                import_model(path)
                message = "IMPORTED (not refused)"
            except UserError as err:
                message = str(err).replace(scratch, "T").replace("|", "\\|")
        print(f"| {name} | `{message}` |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
