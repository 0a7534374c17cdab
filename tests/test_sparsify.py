"""--attention dense|local:W[,global:G]|auto: parsing, substitution, attention mass, the automatic choice,
bad input, and local attention all the way to bit-exact firmware."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcu_attn.api import evaluate, import_model
from mcu_attn.errors import UserError
from mcu_attn.passes.sparsify import AttentionChoice, apply, attention_mass, choose
from support import DIGITS, run_cli

MODEL = DIGITS / "digits_vit.onnx"
DATA = DIGITS / "data"


@pytest.fixture(scope="module")
def graph():
    return import_model(MODEL)


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return np.load(DATA / "calib.npy")[:48]


@pytest.mark.parametrize("text, expected", [("dense", AttentionChoice("dense")), ("auto", AttentionChoice("auto")),
                                            ("local:8", AttentionChoice("local", 8, 0)),
                                            ("local:4,global:1", AttentionChoice("local", 4, 1))])
def test_parse(text, expected) -> None:
    assert AttentionChoice.parse(text) == expected and AttentionChoice.parse(text).describe() == text


@pytest.mark.parametrize("text, phrase", [("local:0", "at least 1"), ("local:-3", "at least 1"),
                                          ("local:4,global:-1", "negative"), ("sparse", "expected dense"),
                                          ("local:four", "expected dense")])
def test_parse_rejects(text, phrase) -> None:
    with pytest.raises(UserError, match=phrase):
        AttentionChoice.parse(text)


def test_apply_sets_every_block_and_rejects_impossible_windows(graph) -> None:
    local = apply(graph, AttentionChoice("local", 4, 1))
    blocks = [n for n in local.nodes if n.op == "Attention"]
    assert len(blocks) == 2 and all((n.attrs["window"], n.attrs["global_tokens"]) == (4, 1) for n in blocks)
    assert all(n.attrs.get("window", 0) == 0 for n in graph.nodes if n.op == "Attention")  # the input is untouched
    with pytest.raises(UserError, match="larger than the sequence"):
        apply(graph, AttentionChoice("local", 18))
    with pytest.raises(UserError, match="no local tokens"):
        apply(graph, AttentionChoice("local", 4, 17))


def test_attention_mass(graph, calib) -> None:
    dense = attention_mass(graph, calib[:8], AttentionChoice("dense"))
    # the whole dense softmax: 1 up to float64 rounding of 17-term sums
    assert all(abs(mass - 1.0) < 1e-9 for mass in dense.values())
    masses = [attention_mass(graph, calib[:8], AttentionChoice("local", w, 0)) for w in (2, 4, 8, 16)]
    for block in dense:
        series = [m[block] for m in masses]
        assert series == sorted(series) and 0.0 < series[0] < series[-1] <= 1.0
    with_global = attention_mass(graph, calib[:8], AttentionChoice("local", 4, 1))
    assert all(with_global[b] > masses[1][b] for b in dense)


def test_auto_meets_the_tolerance(graph, calib) -> None:
    chosen, report = choose(graph, calib, AttentionChoice("auto"), tolerance=0.01)
    assert report["tried"][-1]["attention"] == report["chosen"] != "dense"
    assert report["tried"][-1]["agreement_with_dense"] >= 0.99
    assert all(t["agreement_with_dense"] < 0.99 for t in report["tried"][:-1])
    _, loose = choose(graph, calib, AttentionChoice("auto"), tolerance=1.0)
    assert loose["chosen"] == "local:2"  # everything is within a 100% tolerance: the smallest window wins
    assert set(report["attention_mass"]) == {n.name for n in chosen.nodes if n.op == "Attention"}


def test_local_attention_accuracy_is_reported(calib, digits_test) -> None:
    images, labels = digits_test
    result = evaluate(MODEL, images, labels, 32, calib, "local:8,global:1")
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
