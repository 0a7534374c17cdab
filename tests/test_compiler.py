"""The one compile function (mcu_attn/compiler.py), the int8 default, and simulate replaying a build's options."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcu_attn.api import evaluate
from mcu_attn.compiler import STEPS, Compilation, compile_model
from mcu_attn.errors import UserError
from mcu_attn.options import BuildOptions
from mcu_attn.passes.quantize import run_quantized
from support import DIGITS, FIXTURES, run_cli

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
DATA = DIGITS / "data"

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


def test_steps_run_in_order_and_only_once() -> None:
    compilation = Compilation(MODEL, BuildOptions(calib=str(CALIB))).run("quantize")
    assert compilation.done == ["import", "prune", "factor", "sparsify", "dynamic", "quantize"] and compilation.project is None
    quantized = compilation.graph
    compilation.run("emit")
    assert compilation.done == list(STEPS) and compilation.graph is quantized  # earlier steps are not rerun
    assert compilation.project.query_tile == compilation.query_tile == 1


def test_eval_uses_the_graph_build_compiles(digits_test) -> None:
    images, labels = digits_test
    options = BuildOptions(bits=4, calib=str(CALIB), attention="local:8,global:1")
    result = evaluate(MODEL, images[:40], labels[:40], options)
    graph = compile_model(MODEL, options, until="emit").graph
    assert np.array_equal(result["outputs"], run_quantized(graph, images[:40]))
    assert result["attention"]["chosen"] == "local:8,global:1" and result["quantization"]["weight_bits"] == 4


def test_a_float_model_without_calibration_is_refused_in_one_line(tmp_path) -> None:
    with pytest.raises(UserError, match=r"pass --calib C\.npy .* or --bits 32 for the float baseline"):
        compile_model(MODEL, BuildOptions(), until="quantize")
    out = tmp_path / "out"
    result = run_cli("build", MODEL, "--target", "stm32", "-o", out)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--calib" in lines[0] and "--bits 32" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_prequantized_model_needs_calibration_only_for_what_it_does_not_quantize() -> None:
    """The QDQ fixture quantizes its weights and most activations itself: without --calib the compile gets
    past the float-model check and stops at the first activation the model gives no scale for."""
    model = FIXTURES / "models" / "quant_qdq.onnx"
    with pytest.raises(UserError, match=r"has no quantization scale in the model: pass --calib C\.npy"):
        compile_model(model, BuildOptions(), until="quantize")


def test_options_round_trip_through_the_record() -> None:
    options = BuildOptions(bits=4, calib="/somewhere/c.npy", attention="auto", tolerance=0.02, sram_budget=9000)
    record = json.loads(json.dumps(options.record("source/calib.npy")))
    assert record["calib"] == "source/calib.npy"
    assert BuildOptions.from_record(record, "/elsewhere/c.npy") == BuildOptions(
        bits=4, calib="/elsewhere/c.npy", attention="auto", tolerance=0.02, sram_budget=9000)
    with pytest.raises(UserError, match="unknown to this mcu-attn version"):
        BuildOptions.from_record({**record, "fold_everything": True}, None)


@needs_gcc
def test_default_build_is_int8_and_simulate_replays_its_options(tmp_path, digits_test) -> None:
    from mcu_attn.sim.build_dir import BuildDir

    out = tmp_path / "fw"
    built = run_cli("build", MODEL, "--target", "stm32", "-o", out, "--calib", CALIB, "--attention", "auto")
    assert built.returncode == 0, built.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["bits"] == 8 and report["options"]["bits"] == 8
    assert report["options"]["attention"] == "auto" and report["options"]["calib"] == "source/calib.npy"
    replayed = BuildDir(out)
    assert replayed.options == BuildOptions(calib=str(out / "source" / "calib.npy"), attention="auto")
    assert replayed.compilation.reports["attention"]["chosen"] == report["attention_choice"]["chosen"]
    x, y = digits_test
    simulated = run_cli("simulate", out, "--data", DATA / "test_x.npy", "--labels", DATA / "test_y.npy",
                        "--limit", "4", "--json")
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["bit_exact"] is True
    del report["options"]
    (out / "report.json").write_text(json.dumps(report))
    stale = run_cli("simulate", out, "--limit", "1")
    assert stale.returncode == 2 and "records no build options" in stale.stderr
