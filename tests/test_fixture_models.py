"""Every exporter variant in tests/fixtures: attention is recognised with the right geometry, and the float
reference reproduces onnxruntime on the whole digits test split (450 images)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnxruntime as ort
import pytest

from support import FIXTURES, manifest, run_cli, without_activation_qdq
from mcu_attn.api import import_model
from mcu_attn.data import accuracy
from mcu_attn.reference.interpreter import run

ENTRIES = manifest()
# float32 reference vs onnxruntime: both accumulate ~64-term dot products in float32 in different orders,
# so logits (|logit| < 30) agree to a few 1e-6; 1e-4 is the bound and leaves room for that.
LOGIT_TOLERANCE = 1e-4


def test_manifest_covers_every_exporter_family() -> None:
    exporters = {e["exporter"] for e in ENTRIES}
    assert {"legacy", "dynamo", "tf2onnx"} <= exporters, exporters
    assert any(e["exporter"].startswith("ort-quant") for e in ENTRIES)
    assert len(ENTRIES) >= 14


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_inspect_finds_attention_blocks(entry: dict) -> None:
    result = run_cli("inspect", FIXTURES / entry["file"], "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"inputs", "outputs", "params", "macs", "ops", "attention"} <= set(summary)
    blocks = summary["attention"]
    assert len(blocks) == entry["blocks"]
    for block in blocks:
        assert (block["heads"], block["head_dim"], block["seq_len"]) == (entry["heads"], entry["head_dim"],
                                                                         entry["seq_len"])
        assert block["window"] == entry["window"]
        assert block["causal"] == entry["causal"]
        assert block["global_tokens"] == entry["global_tokens"]
    assert summary["params"] > 10_000 and summary["macs"] > 100_000


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_reference_matches_onnxruntime(entry: dict, digits_test) -> None:
    images, labels = digits_test
    path = str(FIXTURES / entry["file"])
    graph = import_model(path)
    # Graph optimisations off: onnxruntime then executes the model as written; its optimised QDQ path switches
    # to integer kernels with other rounding, a different model. A QDQ model's activation pairs are recorded
    # parameters in our float reference, so onnxruntime runs it without them too.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = without_activation_qdq(path) if entry.get("quantization") == "qdq" else path
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    ours = np.stack([run(graph, {graph.inputs[0]: x[None]})[graph.outputs[0]] for x in images])
    theirs = np.stack([session.run(None, {input_name: x[None]})[0] for x in images])
    assert np.abs(ours - theirs).max() <= LOGIT_TOLERANCE
    assert accuracy(ours, labels) == accuracy(theirs, labels)


def test_every_float_export_normalises_to_the_same_ir() -> None:
    """The same architecture exported by legacy/dynamo exporters at any opset, with MHA, SDPA, explicit
    attention or the ONNX Attention op, becomes the same IR op histogram as the example model."""
    from support import DIGITS

    expected = dict(Counter(n.op for n in import_model(DIGITS / "digits_vit.onnx").nodes))
    for entry in ENTRIES:
        if entry["exporter"].split("+")[0] in ("legacy", "dynamo"):
            ops = dict(Counter(n.op for n in import_model(FIXTURES / entry["file"]).nodes))
            assert ops == expected, entry["name"]


def test_prequantized_weights_keep_their_own_scales() -> None:
    """QDQ weights fold to float with the model's QuantParams; requantizing with them gives back exactly the
    int8 tensors stored in the file."""
    import onnx
    from onnx import numpy_helper

    path = FIXTURES / "models" / "quant_qdq.onnx"
    stored = [numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer
              if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    graph = import_model(path)
    linears = [n for n in graph.nodes if n.op == "Linear"]
    assert len(linears) == 14 and len(stored) == 14
    for node in linears:
        ttype = graph.type(node.inputs[1])
        assert ttype.quant is not None and ttype.quant.axis == 1 and ttype.quant.bits == 8
        recovered = np.rint(graph.const(node.inputs[1]) / np.array(ttype.quant.scale, np.float32)).astype(np.int8)
        candidates = (recovered, recovered.T)  # Gemm(transB=1) stores the weight [out, in]
        assert any(np.array_equal(r, s) for r in candidates for s in stored if r.shape == s.shape), node.name
