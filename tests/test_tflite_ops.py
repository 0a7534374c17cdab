"""Each TFLite operator the frontend imports, in a one- or two-operator float model written with the flatbuffer
builder: our float reference must give what TensorFlow Lite Micro's interpreter gives on the same file (GELU,
which that interpreter does not register, against its formula)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime  # the test extra installs tflite-micro

from mcu_attn.api import import_model, run_reference, supported_tflite_ops
from tflite_writer import TfliteWriter


# float32 kernels in TFLM and numpy round differently (summation order, exp/tanh implementations): a few ulps of
# values O(1); 1e-5 relative is far above that and far below any translation mistake
TOLERANCE = 1e-5
RNG = np.random.default_rng(7)


def test_the_operators_a_keras_transformer_converts_to_are_supported() -> None:
    assert set(supported_tflite_ops()) >= {
        "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "ADD", "SUB", "MUL", "RESHAPE", "TRANSPOSE", "MEAN",
        "SQUARED_DIFFERENCE", "RSQRT", "GELU", "TANH", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "CONCATENATION",
        "GATHER", "STRIDED_SLICE", "NEG", "CONV_2D", "DEPTHWISE_CONV_2D"}


def tflm(path, x: np.ndarray) -> np.ndarray:
    interpreter = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    interpreter.set_input(x, 0)
    interpreter.invoke()
    return interpreter.get_output(0)


def ours(path, x: np.ndarray) -> np.ndarray:
    return next(iter(run_reference(path, {"x": x}).values()))


def check(path, x: np.ndarray) -> None:
    np.testing.assert_allclose(ours(path, x), tflm(path, x), rtol=TOLERANCE, atol=TOLERANCE)


def single(tmp_path, name: str, x_shape, y_shape, extra=(), options=None, dtype=np.float32):
    """A model of one operator `name` reading x (and constant `extra` inputs) into y."""
    w = TfliteWriter()
    x = w.tensor("x", np.float32, x_shape)
    inputs = [x] + [w.const(f"c{i}", np.asarray(c)) for i, c in enumerate(extra)]
    y = w.tensor("y", dtype, y_shape)
    w.op(name, inputs, [y], options)
    return w.save(tmp_path / f"{name.lower()}.tflite", [x], [y])


@pytest.mark.parametrize("name", ["TANH", "LOGISTIC", "NEG", "RELU", "RELU6", "SQRT", "RSQRT", "EXP", "ABS", "LOG"])
def test_unary(tmp_path, name) -> None:
    x = RNG.standard_normal((1, 3, 5)).astype(np.float32) * 3
    if name in ("SQRT", "RSQRT", "LOG"):
        x = np.abs(x) + 0.1
    check(single(tmp_path, name, x.shape, x.shape), x)


def test_relu_n1_to_1_against_its_formula(tmp_path) -> None:  # TFLM does not register it
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(1, 4, 6)
    path = single(tmp_path, "RELU_N1_TO_1", x.shape, x.shape)
    np.testing.assert_array_equal(ours(path, x), np.clip(x, -1, 1))


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_against_its_formula(tmp_path, approximate) -> None:
    x = np.linspace(-5, 5, 40, dtype=np.float32).reshape(1, 4, 10)
    path = single(tmp_path, "GELU", x.shape, x.shape, options={"Approximate": approximate})
    if approximate:
        expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    else:
        expected = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(ours(path, x), expected, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("name, activation", [(name, activation) for name in ("ADD", "SUB", "MUL", "DIV")
                                               for activation in (0, 1, 3)]
                         + [("SQUARED_DIFFERENCE", 0), ("MAXIMUM", 0), ("MINIMUM", 0)])
def test_binary_with_broadcast_constant_and_fused_activation(tmp_path, name, activation) -> None:
    x = RNG.standard_normal((1, 4, 6)).astype(np.float32) * 4
    c = RNG.uniform(0.5, 2.0, (1, 1, 6)).astype(np.float32)
    options = {"FusedActivationFunction": activation} if activation else None
    check(single(tmp_path, name, x.shape, x.shape, [c], options), x)


@pytest.mark.parametrize("activation", [0, 1, 2, 3])
@pytest.mark.parametrize("keep", [True, False])
def test_fully_connected(tmp_path, activation, keep) -> None:
    x = RNG.standard_normal((1, 5, 8)).astype(np.float32)
    weight = RNG.standard_normal((6, 8)).astype(np.float32)
    bias = RNG.standard_normal(6).astype(np.float32)
    out = (1, 5, 6) if keep else (5, 6)
    path = single(tmp_path, "FULLY_CONNECTED", x.shape, out, [weight, bias],
                  {"FusedActivationFunction": activation, "KeepNumDims": keep})
    check(path, x)


def test_fully_connected_flattens_its_input(tmp_path) -> None:
    x = RNG.standard_normal((1, 2, 4)).astype(np.float32)
    weight = RNG.standard_normal((3, 8)).astype(np.float32)
    check(single(tmp_path, "FULLY_CONNECTED", x.shape, (1, 3), [weight]), x)


@pytest.mark.parametrize("adj_x, adj_y", [(False, False), (False, True), (True, False)])
def test_batch_matmul_of_two_run_time_operands(tmp_path, adj_x, adj_y) -> None:
    w = TfliteWriter()
    x = w.tensor("x", np.float32, (1, 2, 3, 4))
    t = w.tensor("t", np.float32, (1, 2, 4, 3))
    y = w.tensor("y", np.float32, (1, 2, 4, 4) if adj_x else (1, 2, 3, 3))
    w.op("TRANSPOSE", [x, w.const("perm", np.array([0, 1, 3, 2], np.int32))], [t])
    w.op("BATCH_MATMUL", [x, x] if adj_x or adj_y else [x, t], [y], {"AdjX": adj_x, "AdjY": adj_y})
    check(w.save(tmp_path / "bmm.tflite", [x], [y]), RNG.standard_normal((1, 2, 3, 4)).astype(np.float32))


@pytest.mark.parametrize("name, keep, axes, out", [("MEAN", True, [2], (1, 3, 1)), ("MEAN", False, [1, 2], (1,)),
                                                    ("SUM", True, [-1], (1, 3, 1))])
def test_reductions(tmp_path, name, keep, axes, out) -> None:
    x = RNG.standard_normal((1, 3, 5)).astype(np.float32)
    check(single(tmp_path, name, x.shape, out, [np.array(axes, np.int32)], {"KeepDims": keep}), x)


def test_softmax_with_beta(tmp_path) -> None:
    x = RNG.standard_normal((1, 2, 7)).astype(np.float32) * 3
    check(single(tmp_path, "SOFTMAX", x.shape, x.shape, options={"Beta": 0.5}), x)


def test_layout(tmp_path) -> None:
    x = RNG.standard_normal((1, 4, 6)).astype(np.float32)
    check(single(tmp_path, "RESHAPE", x.shape, (1, 2, 12), [np.array([1, 2, 12], np.int32)]), x)
    check(single(tmp_path, "TRANSPOSE", x.shape, (6, 4, 1), [np.array([2, 1, 0], np.int32)]), x)
    check(single(tmp_path, "CONCATENATION", x.shape, (1, 4, 9), [np.ones((1, 4, 3), np.float32)], {"Axis": 2}), x)
    check(single(tmp_path, "GATHER", x.shape, (1, 3, 6), [np.array([3, 0, 3], np.int32)], {"Axis": 1}), x)


@pytest.mark.parametrize("begin, end, strides, masks, out", [
    ([0, 0, 0], [1, 1, 6], [1, 1, 1], {"ShrinkAxisMask": 2}, (1, 6)),              # Keras' x[:, 0, :]
    ([0, 1, 0], [0, 4, 0], [1, 2, 1], {"BeginMask": 5, "EndMask": 5}, (1, 2, 6)),
    ([0, -1, 5], [1, 0, 0], [1, -1, -2], {"EndMask": 2}, (1, 4, 3)),               # reversed, negative strides
    ([0, -1, 0], [1, 0, 6], [1, 1, 1], {"ShrinkAxisMask": 2}, (1, 6)),             # the last row
])
def test_strided_slice(tmp_path, begin, end, strides, masks, out) -> None:
    x = RNG.standard_normal((1, 4, 6)).astype(np.float32)
    consts = [np.array(v, np.int32) for v in (begin, end, strides)]
    check(single(tmp_path, "STRIDED_SLICE", x.shape, out, consts, masks), x)


def test_strided_slice_with_offset_ends(tmp_path) -> None:  # TFLM ignores `offset`: numpy says what it means
    x = RNG.standard_normal((1, 4, 6)).astype(np.float32)
    consts = [np.array(v, np.int32) for v in ([0, 1, 2], [1, 2, 2], [1, 1, 1])]
    path = single(tmp_path, "STRIDED_SLICE", x.shape, (1, 2, 2), consts, {"Offset": True})
    np.testing.assert_array_equal(ours(path, x), x[0:1, 1:3, 2:4])


def test_quantize_dequantize_boundary_keeps_the_parameters(tmp_path) -> None:
    """A float input quantized to int8 and back: our float reference is the identity (the rounding is the
    integer build's business), and both float values carry the int8 tensor's parameters."""
    w = TfliteWriter()
    x = w.tensor("x", np.float32, (1, 8))
    q = w.tensor("q", np.int8, (1, 8), quant=([0.05], [3], None))
    r = w.tensor("r", np.int8, (1, 8), quant=([0.05], [3], None))
    y = w.tensor("y", np.float32, (1, 8))
    w.op("QUANTIZE", [x], [q])
    w.op("TANH", [q], [r])
    w.op("DEQUANTIZE", [r], [y])
    path = w.save(tmp_path / "qdq.tflite", [x], [y])
    graph = import_model(path)
    for value in (graph.inputs[0], graph.outputs[0]):
        quant = graph.type(value).quant
        assert (quant.scale, quant.zero_point) == ((pytest.approx(0.05),), (3,))
    x_value = np.linspace(-2, 2, 8, dtype=np.float32).reshape(1, 8)
    np.testing.assert_allclose(ours(path, x_value), np.tanh(x_value), rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("name, weight_shape, options", [
    ("CONV_2D", (4, 3, 3, 2), {"Padding": 0, "StrideH": 1, "StrideW": 1}),                    # SAME
    ("CONV_2D", (4, 3, 3, 2), {"Padding": 1, "StrideH": 2, "StrideW": 1, "FusedActivationFunction": 1}),
    ("CONV_2D", (3, 2, 3, 2), {"Padding": 0, "StrideH": 2, "StrideW": 2, "DilationHFactor": 2}),
    ("DEPTHWISE_CONV_2D", (1, 3, 3, 4), {"Padding": 0, "StrideH": 1, "StrideW": 1, "DepthMultiplier": 2}),
    ("DEPTHWISE_CONV_2D", (1, 2, 2, 2), {"Padding": 1, "StrideH": 2, "StrideW": 2, "DepthMultiplier": 1,
                                         "FusedActivationFunction": 3}),
])
def test_convolutions_nhwc(tmp_path, name, weight_shape, options) -> None:
    x = RNG.standard_normal((1, 7, 6, 2)).astype(np.float32)
    weight = RNG.standard_normal(weight_shape).astype(np.float32)
    channels = weight_shape[0] if name == "CONV_2D" else weight_shape[3]
    bias = RNG.standard_normal(channels).astype(np.float32)
    out = _conv_output(x.shape, weight_shape, name, options)
    check(single(tmp_path, name, x.shape, out, [weight, bias], options), x)


def _conv_output(x_shape, w_shape, name, options) -> tuple[int, ...]:
    """NHWC output shape as TFLite computes it (SAME: ceil(n / s); VALID: ceil((n - (k-1) d) / s))."""
    kh, kw = w_shape[1:3]
    sizes = []
    for n, k, s, d in ((x_shape[1], kh, options["StrideH"], options.get("DilationHFactor", 1)),
                       (x_shape[2], kw, options["StrideW"], options.get("DilationWFactor", 1))):
        sizes.append(-(-n // s) if options["Padding"] == 0 else -(-(n - (k - 1) * d) // s))
    channels = w_shape[0] if name == "CONV_2D" else w_shape[3]
    return (1, *sizes, channels)
