"""Bad input: one line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import DIGITS, FIXTURES, run_cli

MODEL = DIGITS / "digits_vit.onnx"


def _tiny_model(path: Path, *, op: str = "Relu", domain: str = "", weight: np.ndarray | None = None,
                seq: int | str = 4) -> Path:
    """x[1, seq, 4] @ W -> op -> y: small enough to build every broken variant from."""
    weight = np.ones((4, 4), np.float32) if weight is None else weight
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node(op, ["h"], ["y"], name="act", domain=domain)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, 4])],
                              [numpy_helper.from_array(weight, "w")])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error must contain)."""
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp / "truncated.onnx").write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    (tmp / "text.onnx").write_text('{"not": "a model"}\n')
    return {
        "missing": (tmp / "absent.onnx", "no such file"),
        "empty": (tmp / "empty.onnx", "empty file"),
        "random": (tmp / "random.onnx", "not an ONNX model"),
        "truncated": (tmp / "truncated.onnx", "ONNX model"),
        "text": (tmp / "text.onnx", "ONNX model"),
        "unknown op": (_tiny_model(tmp / "custom.onnx", op="FancyOp", domain="com.example"), "FancyOp"),
        "nan weights": (_tiny_model(tmp / "nan.onnx", weight=np.full((4, 4), np.nan, np.float32)), "NaN"),
        "dynamic sequence": (_tiny_model(tmp / "dynseq.onnx", seq="seq"), "dynamic dimension 'seq'"),
        "directory": (tmp, "directory"),
    }


CASES = ["missing", "empty", "random", "truncated", "text", "unknown op", "nan weights", "dynamic sequence",
         "directory"]


def _assert_clean_failure(result, phrase: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert phrase in lines[0], lines[0]


@pytest.mark.parametrize("case", CASES)
def test_inspect_rejects(case: str, tmp_path: Path) -> None:
    path, phrase = _bad_files(tmp_path)[case]
    _assert_clean_failure(run_cli("inspect", path), phrase)


@pytest.mark.parametrize("case", CASES)
def test_eval_rejects_and_writes_nothing(case: str, tmp_path: Path) -> None:
    path, phrase = _bad_files(tmp_path)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_cli("eval", path, "--float", "--data", DIGITS / "data" / "test_x.npy", "--outputs",
                     out_dir / "logits.npy")
    _assert_clean_failure(result, phrase)
    assert list(out_dir.iterdir()) == []


def test_unknown_ops_are_all_listed(tmp_path: Path) -> None:
    nodes = [helper.make_node("Frob", ["x"], ["a"], name="first", domain="com.example"),
             helper.make_node("Relu", ["a"], ["b"], name="ok"),
             helper.make_node("Blur", ["x"], ["c"], name="second", domain="com.example"),
             helper.make_node("Add", ["b", "c"], ["y"], name="sum")]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                     helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "two.onnx")
    result = run_cli("inspect", tmp_path / "two.onnx")
    _assert_clean_failure(result, "unsupported ONNX ops")
    assert "Frob (node 'first')" in result.stderr and "Blur (node 'second')" in result.stderr


@pytest.mark.parametrize("data_shape, phrase", [((5, 8, 9), "needs [1, 8, 8]"), ((0, 8, 8), "non-empty")])
def test_eval_rejects_data_of_wrong_shape(tmp_path: Path, data_shape, phrase) -> None:
    np.save(tmp_path / "x.npy", np.zeros(data_shape, np.float32))
    _assert_clean_failure(run_cli("eval", MODEL, "--float", "--data", tmp_path / "x.npy"), phrase)


def test_eval_rejects_label_count_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    result = run_cli("eval", MODEL, "--float", "--data", DIGITS / "data" / "test_x.npy", "--labels", tmp_path / "y.npy")
    _assert_clean_failure(result, "3 labels for 450 samples")


def test_unknown_target_and_bad_flags() -> None:
    _assert_clean_failure(run_cli("inspect"), "model")
    _assert_clean_failure(run_cli("frobnicate"), "invalid choice")


@pytest.mark.parametrize("value", [2, -1])
def test_attention_is_causal_outside_its_two_values_is_refused(tmp_path: Path, value: int) -> None:
    """onnxruntime reads is_causal as `== 1`, a bool() would read it as causal: neither is the spec's 0 or 1."""
    model = onnx.load(FIXTURES / "models" / "dynamo_op23_sdpa.onnx")
    attention = next(n for n in model.graph.node if n.op_type == "Attention")
    next(a for a in attention.attribute if a.name == "is_causal").i = value
    onnx.save(model, tmp_path / "m.onnx")
    result = run_cli("inspect", tmp_path / "m.onnx")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and f"is_causal {value}: the Attention op takes 0 or 1" in lines[0]
