"""--attention dense|PATTERN|auto: parsing, substitution, attention mass, the automatic choice, bad input, local
attention all the way to bit-exact firmware, and models trained with a band, a strided and a block-sparse mask:
each recognised as its pattern, its sparse kernel against the dense kernel with the mask."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcu_attn.api import evaluate, import_model
from mcu_attn.build import BuildOptions, build
from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.pattern import DENSE, AttentionPattern
from mcu_attn.passes.quantize import quantize_graph, run_quantized
from mcu_attn.passes.sparsify import AttentionChoice, apply, attention_mass, auto_candidates, choose
from mcu_attn.reference.interpreter import run
from support import DIGITS, FIXTURES, run_cli

MODEL = DIGITS / "digits_vit.onnx"
BAND = FIXTURES / "models" / "legacy_op18_band.onnx"  # trained with |i-j| <= 2 plus the cls token as global
# models trained with a constant pattern mask (generate_torch_fixtures.py, generate_pattern_fixtures.py)
TRAINED = {"legacy_op18_band": "local:4,global:1", "legacy_op18_strided": "strided:4,global:1",
           "legacy_op18_block": "block:4,0,2,global:1"}
DATA = DIGITS / "data"


@pytest.fixture(scope="module")
def graph():
    return import_model(MODEL)


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return np.load(DATA / "calib.npy")[:48]


PARSED = [("dense", AttentionChoice("dense")), ("auto", AttentionChoice("auto")),
          ("local:8", AttentionChoice("pattern", AttentionPattern(8))),
          ("local:4,global:1", AttentionChoice("pattern", AttentionPattern(4, 1))),
          ("local:4,strided:4", AttentionChoice("pattern", AttentionPattern(4, stride=4))),
          ("block:4,1,global:1", AttentionChoice("pattern", AttentionPattern(global_tokens=1, block=4, block_local=1)))]


@pytest.mark.parametrize("text, expected", PARSED)
def test_parse(text, expected) -> None:
    assert AttentionChoice.parse(text) == expected and AttentionChoice.parse(text).describe() == text


@pytest.mark.parametrize("text, phrase", [("local:0", "at least 1"), ("local:-3", "at least 1"),
                                          ("local:4,global:-1", "negative"), ("sparse", "expected dense"),
                                          ("local:four", "expected dense")])
def test_parse_rejects(text, phrase) -> None:
    with pytest.raises(UserError, match=phrase):
        AttentionChoice.parse(text)


def test_apply_sets_every_block_and_rejects_impossible_windows(graph) -> None:
    local = apply(graph, AttentionChoice.parse("local:4,global:1"))
    blocks = [n for n in local.nodes if n.op == "Attention"]
    assert len(blocks) == 2 and all(n.attrs["pattern"] == AttentionPattern(4, 1) for n in blocks)
    assert all(n.attrs["pattern"] == DENSE for n in graph.nodes if n.op == "Attention")  # the input is untouched
    with pytest.raises(UserError, match="larger than the sequence"):
        apply(graph, AttentionChoice.parse("local:18"))
    with pytest.raises(UserError, match="no local tokens"):
        apply(graph, AttentionChoice.parse("local:4,global:17"))


def test_attention_mass(graph, calib) -> None:
    dense = attention_mass(graph, calib[:8], AttentionChoice("dense"))
    # the whole dense softmax: 1 up to float64 rounding of 17-term sums
    assert all(abs(mass - 1.0) < 1e-9 for mass in dense.values())
    masses = [attention_mass(graph, calib[:8], AttentionChoice.parse(f"local:{w}")) for w in (2, 4, 8, 16)]
    for block in dense:
        series = [m[block] for m in masses]
        assert series == sorted(series) and 0.0 < series[0] < series[-1] <= 1.0
    with_global = attention_mass(graph, calib[:8], AttentionChoice.parse("local:4,global:1"))
    assert all(with_global[b] > masses[1][b] for b in dense)


def test_auto_meets_the_tolerance(graph, calib) -> None:
    chosen, report = choose(graph, calib, AttentionChoice("auto"), tolerance=0.01)
    assert report["tried"][-1]["attention"] == report["chosen"] != "dense"
    assert report["metric"] == "top1" and report["tried"][-1]["error"] <= 0.01
    assert all(t["error"] > 0.01 for t in report["tried"][:-1])
    _, loose = choose(graph, calib, AttentionChoice("auto"), tolerance=1.0)
    # everything is within a 100% tolerance: the cheapest pattern wins
    assert loose["chosen"] == auto_candidates(graph)[0].describe() and len(loose["tried"]) == 1
    assert set(report["attention_mass"]) == {n.name for n in chosen.nodes if n.op == "Attention"}


def test_local_attention_accuracy_is_reported(calib, digits_test) -> None:
    images, labels = digits_test
    result = evaluate(MODEL, images, labels, BuildOptions(bits=32, attention="local:8,global:1"), calib)
    assert result["attention"]["chosen"] == "local:8,global:1" and 0.9 < result["accuracy"] <= 1.0


@pytest.mark.parametrize("args, phrase", [(["--attention", "local:0"], "at least 1"),
                                          (["--attention", "local:99"], "larger than the sequence"),
                                          (["--attention", "auto"], "needs calibration data")])
def test_cli_rejects(args, phrase) -> None:
    result = run_cli("eval", MODEL, "--float", "--data", DATA / "test_x.npy", *args)
    assert result.returncode == 2 and phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_local_attention_firmware_is_bit_exact(tmp_path) -> None:
    out = tmp_path / "local"
    built = run_cli("build", MODEL, "--target", "stm32f407", "-o", out, "--bits", "8", "--calib", DATA / "calib.npy",
                    "--attention", "local:4,global:1")
    assert built.returncode == 0, built.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["attention_choice"]["chosen"] == "local:4,global:1"
    assert all((b["window"], b["global_tokens"]) == (4, 1) for b in report["attention"])
    simulated = run_cli("simulate", out, "--data", DATA / "test_x.npy", "--limit", "8", "--json", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["bit_exact"] is True


@pytest.mark.parametrize("name", TRAINED)
def test_dense_keeps_a_trained_pattern_as_a_mask(name: str) -> None:
    graph = import_model(FIXTURES / "models" / f"{name}.onnx")
    pattern = AttentionPattern.parse(TRAINED[name])
    assert [n.attrs["pattern"] for n in graph.nodes if n.op == "Attention"] == [pattern] * 2
    dense = apply(graph, AttentionChoice("dense"))
    blocks = [n for n in dense.nodes if n.op == "Attention"]
    assert all(n.attrs["pattern"] == DENSE and len(n.inputs) == 4 for n in blocks)
    mask = dense.const(blocks[0].inputs[3])
    assert np.array_equal(mask == 0, pattern.allowed(17)) and np.all(np.isinf(mask) | (mask == 0))


def test_a_dense_model_has_no_pattern_to_keep() -> None:
    plain = apply(import_model(MODEL), AttentionChoice("dense"))  # a dense model has no band to keep
    assert all(len(n.inputs) == 3 for n in plain.nodes if n.op == "Attention")


@pytest.mark.parametrize("name", TRAINED)
def test_trained_sparse_kernel_equals_dense_kernel_with_the_mask(digits_test, name: str) -> None:
    """The integer references of the two graphs on all 450 test images, the float ones on 20: identical."""
    images, _ = digits_test
    graph = import_model(FIXTURES / "models" / f"{name}.onnx")
    dense = apply(graph, AttentionChoice("dense"))
    calib = np.load(DATA / "calib.npy")
    for sample in check_stack(graph, images[:20], "data"):
        assert np.array_equal(run(graph, {graph.inputs[0]: sample})[graph.outputs[0]],
                              run(dense, {dense.inputs[0]: sample})[dense.outputs[0]])
    sparse_q, dense_q = quantize_graph(graph, calib, 8), quantize_graph(dense, calib, 8)
    assert [len(n.inputs) for n in dense_q.nodes if n.op == "QAttention"] == [4, 4]  # q, k, v and the 0/1 mask
    assert np.array_equal(run_quantized(sparse_q, images), run_quantized(dense_q, images))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
@pytest.mark.slow  # two firmware builds per model, 12 images each in the emulator
@pytest.mark.parametrize("name", TRAINED)
def test_trained_firmware_sparse_equals_dense_with_mask(tmp_path, name: str) -> None:
    """Both kernels as firmware in the emulator: the same output bytes; the dense one scans every key's mask."""
    from mcu_attn.sim.build_dir import BuildDir
    from mcu_attn.sim.elf import load_firmware
    from mcu_attn.sim.run import unicorn_outputs

    outputs, instructions, flash = {}, {}, {}
    images = np.load(DATA / "test_x.npy")[:12]
    for kernel, extra in (("sparse", []), ("dense", ["--attention", "dense"])):
        out = tmp_path / kernel
        built = run_cli("build", FIXTURES / "models" / f"{name}.onnx", "--target", "stm32f407", "-o", out, "--bits", "8", "--calib",
                        DATA / "calib.npy", *extra)
        assert built.returncode == 0, built.stderr
        report = json.loads((out / "report.json").read_text())
        assert "ma_attention_s8" in report["kernels"]
        flash[kernel] = report["flash_bytes"]
        directory = BuildDir(str(out))
        outputs[kernel] = unicorn_outputs(directory, load_firmware(directory.elf), directory.prepare(images))
        simulated = run_cli("simulate", out, "--data", DATA / "test_x.npy", "--limit", "2", "--json")
        assert simulated.returncode == 0 and json.loads(simulated.stdout)["bit_exact"] is True
        instructions[kernel] = json.loads(simulated.stdout)["instructions"]
    assert outputs["sparse"] == outputs["dense"]
    assert flash["dense"] > flash["sparse"]  # the dense build carries each block's [S, S] mask
    # the dense kernel scans every key's mask byte; at 17 tokens the block pattern's per-row key set (a few ranges
    # and a progression of key blocks, ma_attention_keys.h) costs more than that scan: 2 % more instructions
    if name != "legacy_op18_block":
        assert instructions["dense"] > instructions["sparse"]


@pytest.mark.parametrize("bits", [32, 8])
def test_dense_kernel_with_a_mask_on_the_host(tmp_path, bits) -> None:
    """--attention dense on the band model: the float kernel adds the mask, the integer one skips masked keys."""
    options = BuildOptions(bits=bits, calib=str(DATA / "calib.npy"), attention="dense", check_samples=8)
    report = build(BAND, "host", tmp_path / "dense", options)
    assert report["attention_choice"]["chosen"] == "dense"
    assert "_mask" in (tmp_path / "dense" / "weights.c").read_text()
    check = report["host_check"]
    # float: the C kernel's expf and summation order against numpy's, on logits of magnitude ~10
    assert check["bit_exact"] if bits == 8 else check["max_abs_error"] < 1e-4


def test_integer_attention_refuses_learned_biases() -> None:
    graph = apply(import_model(BAND), AttentionChoice("dense"))
    node = next(n for n in graph.nodes if n.op == "Attention")
    mask = graph.const(node.inputs[3])
    graph.constants[node.inputs[3]] = np.where(np.isfinite(mask), 0.25, mask).astype(np.float32)
    with pytest.raises(UserError, match="0 and -inf only"):
        quantize_graph(graph, np.load(DATA / "calib.npy")[:8], 8)
