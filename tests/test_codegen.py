"""Generated C projects, compiled with the host cc and run through their harness.

- the digits ViT float baseline (--bits 32) against the numpy reference on the 450 test images;
- reproducibility: two builds give byte-identical trees;
- hand-built integer graphs (every integer op of docs/integer-kernels.md plus the layout ops) bit-exact
  against the numpy interpreter;
- bad input to `build`: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.build import MARKER, BuildOptions, build
from mcu_attn.codegen.emit import EXECUTABLE, generate
from mcu_attn.codegen.host_run import make, run_harness
from mcu_attn.data import accuracy
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import infer_types
from mcu_attn.ir.pattern import AttentionPattern
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.reference.interpreter import run
from mcu_attn.reference.qmath import quantize_multiplier
from mcu_attn.summary import summarize

from support import DIGITS, ROOT, run_cli

MODEL = DIGITS / "digits_vit.onnx"


@pytest.fixture(scope="module")
def float_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("float") / "build"
    build(MODEL, "host", out, BuildOptions(bits=32))
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_float_build_matches_numpy_reference(float_build, digits_test):
    x, y = digits_test
    graph = import_model(MODEL)
    samples = x.astype(np.float32).reshape((len(x),) + graph.shape(graph.inputs[0]))
    got = run_harness(float_build / EXECUTABLE, samples, np.float32, graph.shape(graph.outputs[0]))
    expected = np.stack([run(graph, {graph.inputs[0]: s})[graph.outputs[0]] for s in samples])
    # float32 kernels sum in their own order and use expf/erff: a few ulps per op through 2 blocks; logits are
    # O(10), so 1e-4 leaves ~10x headroom over the measured ~1e-5 while catching any real error
    assert np.abs(got - expected).max() < 1e-4
    assert accuracy(got, y) == accuracy(expected, y)
    assert np.array_equal(got.argmax(-1), expected.argmax(-1))


def test_report(float_build):
    report = json.loads((float_build / "report.json").read_text())
    assert {"target", "params", "macs", "flash_bytes", "ram_bytes", "elf", "attention", "layers"} <= set(report)
    assert report["target"] == "host" and report["elf"] == EXECUTABLE
    graph = import_model(MODEL)
    summary = summarize(graph)
    assert (report["params"], report["macs"]) == (summary["params"], summary["macs"])
    assert report["ram_bytes"] == 5 * 17 * 32 * 4           # see test_codegen_memory.test_digits_vit_plan
    assert report["flash_bytes"] >= 4 * report["params"]
    assert len(report["attention"]) == 2 and len(report["layers"]) == len(graph.nodes)
    views = [layer["name"] for layer in report["layers"] if layer["kind"] == "view"]
    assert views == ["/Reshape_output_0", "/Gather_output_0"]
    assert report["host_check"]["max_abs_error"] < 1e-4
    assert (float_build / MARKER).is_file()


def test_reproducible_and_relocatable(float_build, tmp_path):
    other = tmp_path / "again"
    build(MODEL, "host", other, BuildOptions(bits=32))
    first, second = tree(float_build), tree(other)
    assert first == second
    for name, content in first.items():
        for path in (str(float_build), str(other), str(ROOT), str(tmp_path)):
            assert path.encode() not in content, f"{name} mentions {path}"


def test_rebuild_replaces_a_build_dir(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):  # the second build replaces the first: the directory holds nothing else
        result = run_cli("build", MODEL, "--target", "host", "-o", out, "--bits", "32")
        assert result.returncode == 0, result.stderr
    assert "arena 10,880 B" in result.stdout
    (out / "stale.txt").write_text("left from before")
    _expect_clean_failure(run_cli("build", MODEL, "--target", "host", "-o", out, "--bits", "32"), "stale.txt")
    assert (out / "stale.txt").is_file()
    result = run_cli("build", MODEL, "--target", "host", "-o", out, "--bits", "32", "--force")
    assert result.returncode == 0, result.stderr
    assert not (out / "stale.txt").exists() and (out / EXECUTABLE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or retired trees left


def test_harness_rejects_bad_input_size(float_build):
    executable = str(float_build / EXECUTABLE)
    sample = np.zeros(64, np.float32).tobytes()
    for data, phrase in ((b"", "no input samples"), (sample + sample[:10], "inside sample 1")):
        result = subprocess.run([executable], input=data, capture_output=True)
        assert result.returncode == 2 and phrase in result.stderr.decode()
    result = subprocess.run([executable], input=sample * 3, capture_output=True)
    assert result.returncode == 0 and len(result.stdout) == 3 * 10 * 4


def test_int8_build_from_the_quantizer(tmp_path):
    report = build(MODEL, "host", tmp_path / "q8", BuildOptions(bits=8, calib=str(DIGITS / "data" / "calib.npy")))
    assert report["host_check"]["bit_exact"] and report["host_check"]["samples"] == 16
    assert report["input"]["dtype"] == "int8" and "zero_point" in report["input"]
    header = (tmp_path / "q8" / "model.h").read_text()
    assert "void ma_run(const int8_t *in, int8_t *out);" in header and "MA_INPUT_SCALE" in header


# ---- hand-built graphs, bit-exact ------------------------------------------------------------------------------

class Builder:
    """A small IR graph: one int8 (or float) input, nodes appended with inferred types."""

    def __init__(self, shape, dtype="int8", seed=0):
        self.rng = np.random.default_rng(seed)
        self.graph = Graph("handmade")
        quant = QuantParams((0.05,), (3,)) if dtype == "int8" else None
        self.graph.add_input("x", TensorType(dtype, tuple(shape), quant))

    def const(self, array, dtype=None):
        array = np.asarray(array)
        ttype = TensorType(dtype, array.shape) if dtype else None
        return self.graph.add_const("c", array, ttype)

    def node(self, op, inputs, **attrs):
        name = self.graph.fresh(op.lower())
        node = Node(op, list(inputs), [name], attrs, name)
        ttype = infer_types(self.graph, node)[0]
        quant = QuantParams((0.05,), (int(self.rng.integers(-20, 20)),)) if ttype.dtype == "int8" else None
        self.graph.types[name] = TensorType(ttype.dtype, ttype.shape, quant)
        self.graph.append(node)
        return name

    def multiplier(self, low=1e-3, high=0.5):
        return quantize_multiplier(float(self.rng.uniform(low, high)))

    def qlinear(self, x, n, bits=8):
        k = self.graph.shape(x)[-1]
        limit = 8 if bits == 4 else 128
        w = self.const(self.rng.integers(-limit, limit, (k, n)).astype(np.int8), "int4" if bits == 4 else None)
        bias = self.const(self.rng.integers(-5000, 5000, n).astype(np.int32))
        pairs = [self.multiplier(1e-3, 2e-2) for _ in range(n)]
        return self.node("QLinear", [x, w, bias], multiplier=tuple(m for m, _ in pairs),
                         shift=tuple(s for _, s in pairs), y_zp=int(self.rng.integers(-10, 10)), bits=bits)

    def finish(self, out):
        self.graph.outputs = [out]
        return self.graph


def check_bit_exact(graph: Graph, directory: Path, count: int = 6, seed: int = 0, cflags: str | None = None) -> None:
    project = generate(graph)
    for name, content in project.files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    in_type, out_type = graph.type(graph.inputs[0]), graph.type(graph.outputs[0])
    rng = np.random.default_rng(seed)
    if in_type.dtype == "int8":
        samples = rng.integers(-128, 128, (count,) + in_type.shape).astype(np.int8)
    else:
        samples = rng.standard_normal((count,) + in_type.shape).astype(np.float32)
    got = run_harness(make(directory, cflags), samples, out_type.np_dtype, out_type.shape)
    expected = np.stack([run(graph, {graph.inputs[0]: s})[graph.outputs[0]] for s in samples])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bits,k", [(8, 16), (8, 7), (4, 16), (4, 7)])
def test_qlinear(tmp_path, bits, k):
    b = Builder((1, 5, k), seed=k + bits)
    check_bit_exact(b.finish(b.qlinear("x", 9, bits)), tmp_path)


ATTENTION = [AttentionPattern(), AttentionPattern(5), AttentionPattern(4, causal=True), AttentionPattern(3, 2),
             AttentionPattern(0, 1, causal=True)]


def attention_graph(pattern: AttentionPattern) -> Graph:
    heads, head_dim, seq = 2, 4, 11
    b = Builder((1, seq, heads * head_dim), seed=pattern.window)
    q, k, v = (b.qlinear("x", heads * head_dim) for _ in range(3))
    score, out = b.multiplier(0.05, 0.5), b.multiplier(1e-4, 5e-3)
    table = tuple(int(round(2 ** 15 * np.exp(-t / 16))) for t in range(256))
    attn = b.node("QAttention", [q, k, v], heads=heads, head_dim=head_dim, q_zp=3, k_zp=-2, v_zp=1, out_zp=-4,
                  score_multiplier=score[0], score_shift=score[1], exp_table=table, out_multiplier=out[0],
                  out_shift=out[1], pattern=pattern)
    return b.finish(attn)


@pytest.mark.parametrize("pattern", ATTENTION, ids=lambda p: p.describe())
def test_qattention(tmp_path, pattern):
    check_bit_exact(attention_graph(pattern), tmp_path)


SANITIZE = "-O1 -g -std=c99 -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all"


def _sanitizers_available(tmp_path: Path) -> bool:
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    result = subprocess.run(["cc", *SANITIZE.split(), str(probe), "-o", str(tmp_path / "probe")],
                            capture_output=True)
    return result.returncode == 0


def test_sanitizers(tmp_path, float_build, digits_test):
    """The generated code and kernels under AddressSanitizer and UndefinedBehaviorSanitizer."""
    if not _sanitizers_available(tmp_path):
        pytest.skip("the host cc cannot build with -fsanitize=address,undefined")
    check_bit_exact(attention_graph(AttentionPattern(3, 2)), tmp_path / "int", cflags=SANITIZE)
    copy = tmp_path / "float"
    for name, content in tree(float_build).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(content)
    samples = digits_test[0][:16].astype(np.float32).reshape(16, 1, 8, 8)
    plain = run_harness(float_build / EXECUTABLE, samples, np.float32, (1, 10))
    (copy / EXECUTABLE).unlink()
    checked = run_harness(make(copy, SANITIZE), samples, np.float32, (1, 10))
    np.testing.assert_allclose(checked, plain, rtol=0, atol=1e-5)  # -O1 vs -O2: same source, same float ops


def test_qlayernorm_qtable_qadd_qrequant(tmp_path):
    from mcu_attn.ir.ops.add import add_params as add_params_of
    from mcu_attn.ir.ops.layernorm import layernorm_params

    channels = 12
    b = Builder((1, 6, channels), seed=5)
    attrs, bias = layernorm_params(b.rng.uniform(10, 40, channels), b.rng.integers(-40, 40, channels), 2)
    norm = b.node("QLayerNorm", ["x", b.const(np.asarray(bias, np.int64))], **attrs, eps=7)
    table = b.node("QTable", [norm], table=tuple(int(v) for v in b.rng.integers(-128, 128, 256)))
    add_params = dict(a_zp=2, b_zp=-5, **add_params_of(*b.rng.uniform(0.3, 1.5, 2)), out_zp=1)
    row = b.const(b.rng.integers(-128, 128, channels).astype(np.int8))
    added = b.node("QAdd", [table, row], **add_params)              # b repeats over the leading axes
    summed = b.node("QAdd", [added, "x"], **add_params)              # same shapes, both at run time
    m, s = b.multiplier(0.5, 1.5)
    check_bit_exact(b.finish(b.node("QRequant", [summed], in_zp=1, multiplier=m, shift=s, out_zp=-7)), tmp_path)


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_layout_ops(tmp_path, dtype):
    b = Builder((1, 6, 8), dtype=dtype, seed=9)
    reshaped = b.node("Reshape", ["x", b.const(np.array([1, 6, 2, 4]))])
    moved = b.node("Transpose", [reshaped], perm=(0, 2, 1, 3))                # [1, 2, 6, 4]
    sliced = b.node("Slice", [moved], starts=(0, 5, 1), ends=(2, -100, 4), axes=(1, 2, 3), steps=(1, -2, 2))
    taken = b.node("Gather", [sliced, b.const(np.array([1, 0, 1, 1]))], axis=2)  # irregular indices
    row = b.node("Gather", [taken, b.const(np.array(1))], axis=1)              # one contiguous block: a view
    flat = b.node("Unsqueeze", [row], axes=(0,))
    squeezed = b.node("Squeeze", [flat], axes=(0,))                            # [1, 4, 2]
    constant = b.const(np.arange(8, dtype=np.int8 if dtype == "int8" else np.float32).reshape(1, 4, 2))
    joined = b.node("Concat", [squeezed, constant, squeezed], axis=2)          # [1, 4, 6]
    check_bit_exact(b.finish(joined), tmp_path)


def test_output_that_views_the_input_is_copied(tmp_path):
    b = Builder((2, 3, 4), dtype="float32")
    check_bit_exact(b.finish(b.node("Gather", ["x", b.const(np.array(1))], axis=0)), tmp_path)


def test_unsupported_op_is_named():
    b = Builder((1, 4), dtype="float32")
    graph = b.finish(b.node("Softmax", ["x"]))
    with pytest.raises(UserError, match="does not support Softmax"):
        generate(graph)


# ---- bad input ---------------------------------------------------------------------------------------------------

def _expect_clean_failure(result, phrase: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert phrase in lines[0], lines[0]


@pytest.mark.parametrize("args,phrase", [
    (["--target", "esp32"], "unknown target 'esp32'"),
    (["--target", "stm32", "--bits", "4"], "pass --calib C.npy"),
    (["--target", "host", "--bits", "7"], "invalid choice: 7"),
    (["--target", "host", "--bits", "8"], "pass --calib C.npy"),
    (["--target", "stm32"], "pass --calib C.npy (a stack of typical inputs), or --bits 32 for the float baseline"),
    (["--target", "host", "--bits", "32", "--calib", "absent.npy"], "no such file"),
])
def test_bad_build_arguments(tmp_path, args, phrase):
    out = tmp_path / "out"
    _expect_clean_failure(run_cli("build", MODEL, "-o", out, *args), phrase)
    assert list(tmp_path.iterdir()) == []


def test_foreign_output_directory_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    _expect_clean_failure(run_cli("build", MODEL, "--target", "host", "-o", out), MARKER)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    target_file = tmp_path / "file"
    target_file.write_text("x")
    _expect_clean_failure(run_cli("build", MODEL, "--target", "host", "-o", target_file), "not a directory")


def test_unsupported_model_leaves_nothing(tmp_path):
    from test_bad_input import _tiny_model

    model = _tiny_model(tmp_path / "softmax.onnx", op="Softmax")
    out = tmp_path / "out"
    _expect_clean_failure(run_cli("build", model, "--target", "host", "-o", out, "--bits", "32"),
                          "does not support Softmax")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["softmax.onnx"]


def test_failed_rebuild_keeps_the_previous_build(tmp_path, float_build, monkeypatch):
    import mcu_attn.build as build_module

    out = tmp_path / "out"
    before = tree(float_build)
    for name, content in before.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)

    def broken(*args, **kwargs):
        raise RuntimeError("harness exploded")

    monkeypatch.setattr(build_module, "host_check", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        build(MODEL, "host", out, BuildOptions(bits=32))
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow  # 450 images through the compiled harness per bit width; the default run checks a few
@pytest.mark.parametrize("bits", [8, 4])
def test_integer_host_build_is_bit_exact_on_the_whole_test_split(tmp_path, bits, digits_test):
    """The compiled C of the quantized digits ViT equals the numpy integer reference on all 450 images."""
    from mcu_attn.build import host_check
    from mcu_attn.passes.quantize import quantize_graph

    images, _ = digits_test
    calib = DIGITS / "data" / "calib.npy"
    build(MODEL, "host", tmp_path / "q", BuildOptions(bits=bits, calib=str(calib)))
    graph = quantize_graph(import_model(MODEL), np.load(calib), bits)  # deterministic: the graph build() used
    check = host_check(tmp_path / "q", graph, images)
    assert check["samples"] == 450 and check["bit_exact"], check


def test_missing_parents_are_made_and_removed_again_on_failure(tmp_path, monkeypatch):
    import mcu_attn.build as build_module

    build(MODEL, "host", tmp_path / "a" / "b", BuildOptions(bits=32))
    assert (tmp_path / "a" / "b" / "report.json").is_file()

    def broken_check(*args, **kwargs):
        raise UserError("compiler exploded")

    monkeypatch.setattr(build_module, "host_check", broken_check)
    with pytest.raises(UserError, match="exploded"):
        build(MODEL, "host", tmp_path / "x" / "y" / "z", BuildOptions(bits=32))
    assert not (tmp_path / "x").exists()
