"""`mcu-attn sweep`: the grid, the Pareto front, the recommendation, the cache, failed points, the reports."""

from __future__ import annotations

import json
import shutil

import pytest

from mcu_attn.api import import_model
from mcu_attn.errors import UserError
from mcu_attn.options import BuildOptions
from mcu_attn.report import plots
from mcu_attn.report.html import agreement, build_html, sweep_html
from mcu_attn.sweep import (SweepOptions, build_command, default_grid, describe, mark_pareto, parse_grid, points,
                            recommend)
from support import DIGITS, FIXTURES, ROOT, run_cli

MODEL = DIGITS / "digits_vit.onnx"
EXAMPLES = ROOT / "examples"
DATA = DIGITS / "data"
POINT_KEYS = {"config", "accuracy", "energy_uj", "cycles", "instructions", "flash_bytes", "ram_bytes", "pareto"}

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


def test_default_grid_follows_the_model() -> None:
    grid = default_grid(import_model(MODEL))
    assert grid == {"bits": [32, 8, 4], "attention": ["dense", "local:4,global:1", "auto"], "prune": [0.0, 0.25, 0.5]}
    assert len(points(grid, "c.npy")) == 27
    band = default_grid(import_model(FIXTURES / "models" / "legacy_op18_band.onnx"))
    assert band["attention"][:2] == ["dense", "model"]  # the window the model was trained with is a point


def test_grid_overrides() -> None:
    defaults = {"bits": [32, 8, 4], "prune": [0.0, 0.5]}
    grid = parse_grid(("attention=dense,local:8,global:1,auto", "bits=8"), defaults)
    assert grid["attention"] == ["dense", "local:8,global:1", "auto"] and grid["bits"] == [8]
    split = parse_grid(("prune-heads=0,0.5", "prune-ffn=0.25"), defaults)
    assert "prune" not in split
    options = points(split, "c.npy")
    assert {(o.prune_heads, o.prune_ffn) for o in options} == {(0.0, 0.25), (0.5, 0.25)}
    for bad, phrase in ((("speed=1",), "AXIS=V1,V2"), (("bits=eight",), "must be numbers"),
                        (("prune=0.5", "prune-ffn=0.5"), "not both"), (("bits=8", "bits=4"), "given twice"),
                        (("prune=1.5",), "--prune-heads 1.5")):
        with pytest.raises(UserError, match=phrase):
            points(parse_grid(bad, defaults), "c.npy")


def test_pattern_and_low_rank_axes() -> None:
    """Attention values are any --attention pattern; low-rank is an axis of its own; the description and the
    build command say which technique a point uses."""
    grid = parse_grid(("attention=dilated:8,2,block:4,1,2,global:1,strided:4+local:4", "low-rank=none,auto,8"),
                      {"bits": [8]})
    assert grid["attention"] == ["dilated:8,2", "block:4,1,2,global:1", "strided:4,local:4"]
    options = points(grid, "c.npy")
    assert len(options) == 9 and {o.low_rank for o in options} == {None, "auto", "8"}
    chosen = next(o for o in options if o.attention == "strided:4,local:4" and o.low_rank == "8")
    assert describe(chosen) == "int8 strided:4,local:4 low-rank 8"
    assert "--attention strided:4,local:4 --low-rank 8" in build_command("m.onnx", "stm32", "c.npy", chosen)
    with pytest.raises(UserError, match="--low-rank 0"):
        points(parse_grid(("low-rank=0",), {"bits": [8]}), "c.npy")


def _point(bits, accuracy, energy, flash=100, ram=10, cycles=None):
    return {"config": {"bits": bits, "attention": "dense", "prune_heads": 0.0, "prune_ffn": 0.0},
            "describe": f"{bits}", "accuracy": accuracy, "energy_uj": energy, "cycles": cycles or energy,
            "flash_bytes": flash, "ram_bytes": ram, "key": f"k{bits}-{energy}"}


def test_pareto_front_and_goals() -> None:
    results = [_point(32, 0.96, 100.0, flash=900), _point(8, 0.97, 30.0, flash=300), _point(4, 0.95, 20.0, flash=200),
               _point(8, 0.94, 40.0, flash=300), {"config": {}, "describe": "x", "error": "does not fit"}]
    mark_pareto(results)
    assert [r["pareto"] for r in results] == [False, True, True, False, False]
    sweep = SweepOptions("stm32", "c", "d", "l", goal="battery", max_drop=0.005)
    best, _ = recommend(results, sweep)  # the baseline is the fp32 dense point: 0.96, so 0.955 at least
    assert best is results[1]
    loose, _ = recommend(results, SweepOptions("stm32", "c", "d", "l", goal="battery", max_drop=0.02))
    assert loose is results[2]
    size, _ = recommend(results, SweepOptions("stm32", "c", "d", "l", goal="size", max_flash=250))
    assert size is results[2]
    none, why = recommend(results, SweepOptions("stm32", "c", "d", "l", goal="size", max_flash=10))
    assert none is None and "no point meets" in why


def test_reports_without_matplotlib_say_what_the_plots_need(monkeypatch) -> None:
    monkeypatch.setattr(plots, "_pyplot", lambda: None)
    results = [_point(8, 0.97, 30.0)]
    mark_pareto(results)
    payload = {"model": "m.onnx", "target": "stm32", "points": results, "computed": 1, "cached": 0}
    page = sweep_html(payload, plots.pareto_png(results))
    assert plots.PLOTS_NOTE in page and "<img" not in page and "<table>" in page
    report = {"target": "host", "bits": 8, "params": 1, "macs": 2, "flash_bytes": 3, "ram_bytes": 4, "layers": [
        {"name": "a<b", "op": "QLinear", "macs": 2, "live_bytes": 4, "kind": "kernel", "symbol": "s"}]}
    page = build_html(report)
    assert plots.PLOTS_NOTE in page and "a&lt;b" in page  # model names are escaped


def test_reports_say_how_the_firmware_output_compares() -> None:
    assert agreement({"bit_exact": True}) == "bit-exact"
    assert agreement({"bit_exact": False}) == "differs"
    floating = {"bit_exact": False, "within_tolerance": True, "max_abs_error": 3.5e-06}
    assert agreement(floating) == "within tolerance (float build), max |error| 3.5e-06"
    assert agreement({**floating, "within_tolerance": False}).startswith("outside the tolerance")


@pytest.mark.parametrize("args, phrase", [
    (["--target", "host"], "choose a Cortex-M --target"),
    (["--target", "stm32", "--max-drop", "0.01"], "give --goal too"),
    (["--target", "stm32", "--grid", "bits=7"], "--bits 7"),
    (["--target", "stm32", "--grid", "colour=red"], "AXIS=V1,V2"),
])
def test_bad_sweep_input_is_one_line(tmp_path, args, phrase) -> None:
    result = run_cli("sweep", MODEL, "--calib", DATA / "calib.npy", "--data", DATA / "test_x.npy", "--labels",
                     DATA / "test_y.npy", "-o", tmp_path / "out", *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and phrase in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


@needs_gcc
def test_small_sweep_end_to_end_with_cache_and_a_failed_point(tmp_path, digits_test) -> None:
    import numpy as np

    images, labels = digits_test
    np.save(tmp_path / "x.npy", images[:60])
    np.save(tmp_path / "y.npy", labels[:60])
    np.save(tmp_path / "calib.npy", np.load(DATA / "calib.npy")[:48])
    common = ["sweep", MODEL, "--target", "stm32", "--calib", tmp_path / "calib.npy", "--data", tmp_path / "x.npy",
              "--labels", tmp_path / "y.npy", "-o", tmp_path / "sweep", "--grid", "prune=0", "--jobs", "2"]
    first = run_cli(*common, "--grid", "bits=8,4", "--grid", "attention=dense", "--goal", "size", "--json")
    assert first.returncode == 0, first.stderr
    payload = json.loads(first.stdout)
    assert len(payload["points"]) == 2 and payload["computed"] == 2
    for point in payload["points"]:
        assert POINT_KEYS <= set(point) and point["bit_exact"] is True, point
    int8, int4 = payload["points"]
    assert int4["flash_bytes"] < int8["flash_bytes"]
    assert payload["recommended"]["key"] == int4["key"] and "--bits 4" in payload["recommended"]["command"]
    assert any(p["pareto"] for p in payload["points"])
    again = run_cli(*common, "--grid", "bits=8,4,32", "--grid", "attention=dense,local:99", "--json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["cached"] == 2 and rerun["computed"] == 4  # fp32 dense, and three local:99 points that fail
    failed = [p for p in rerun["points"] if "error" in p]
    assert len(failed) == 3 and all("larger than the sequence" in p["error"] for p in failed)
    assert not any(p["pareto"] for p in failed)
    # the float point's C kernels round differently from numpy: checked against the simulator's tolerance
    fp32 = next(p for p in rerun["points"] if p["config"]["bits"] == 32 and "error" not in p)
    assert fp32["within_tolerance"] is True and fp32["max_abs_error"] < 1e-3, fp32
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert saved["points"] == rerun["points"]
    page = (tmp_path / "sweep" / "report.html").read_text()
    assert "Selected point" in page and "Energy by kernel" in page and "http" not in page  # self-contained
    assert (tmp_path / "sweep" / "pareto.png").is_file() == (plots._pyplot() is not None)


@needs_gcc
@pytest.mark.slow  # the default grid: 27 firmware builds and emulated inferences
def test_default_digits_sweep(tmp_path) -> None:
    result = run_cli("sweep", MODEL, "--target", "stm32", "--calib", DATA / "calib.npy", "--data",
                     DATA / "test_x.npy", "--labels", DATA / "test_y.npy", "-o", tmp_path / "sweep", "--goal",
                     "battery", "--max-drop", "0.01", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    measured = [p for p in payload["points"] if "error" not in p]
    assert len(payload["points"]) == 27 and len(measured) >= 12
    # int builds match the reference bit for bit; float builds within the simulator's tolerance (their C
    # kernels round differently from numpy)
    assert all(p["bit_exact"] if p["config"]["bits"] != 32 else p["within_tolerance"] for p in measured)
    front = [p for p in measured if p["pareto"]]
    assert front and payload["recommended"] is not None
    baseline = next(p for p in measured if p["key"] == payload["baseline"])
    chosen = next(p for p in measured if p["key"] == payload["recommended"]["key"])
    assert chosen["accuracy"] >= baseline["accuracy"] - 0.01 and chosen["energy_uj"] < baseline["energy_uj"]


def test_input_dependent_axes() -> None:
    grid = parse_grid(("bits=32,8", "token-prune=none,auto", "early-exit=none,0.9,after:1,auto"), {"bits": [8]})
    assert grid["early-exit"] == ["none", "0.9,after:1", "auto"]
    options = points(grid, "c.npy")
    # fp32 keeps only its point without a technique: the techniques are integer-only
    assert len(options) == 1 + 2 * 3 and all(o.bits == 8 for o in options if o.token_prune or o.early_exit)
    chosen = next(o for o in options if o.token_prune == "auto" and o.early_exit == "0.9,after:1")
    assert describe(chosen) == "int8 model token-prune auto early-exit 0.9,after:1"
    assert build_command("m.onnx", "stm32", "c.npy", chosen).endswith(
        "--token-prune auto --early-exit 0.9,after:1")
    with pytest.raises(UserError, match="--early-exit '2'"):
        points(parse_grid(("early-exit=2",), {"bits": [8]}), "c.npy")


def test_only_a_causal_model_reads_data_as_a_stream(tmp_path) -> None:
    import numpy as np

    from mcu_attn.sweep import evaluation_data

    np.save(tmp_path / "rows.npy", np.zeros((20, 8), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(20, np.int64))
    options = SweepOptions("stm32", str(DATA / "calib.npy"), str(tmp_path / "rows.npy"), str(tmp_path / "y.npy"))
    with pytest.raises(UserError, match="samples have shape"):  # rows of 8 are not positions of the digits ViT
        evaluation_data(import_model(MODEL), options)
    stream = EXAMPLES / "sensor_stream" / "data"
    options = SweepOptions("stm32", "c.npy", str(stream / "stream_x.npy"), str(stream / "stream_y.npy"))
    windows, labels, (positions, _) = evaluation_data(import_model(EXAMPLES / "sensor_stream" / "sensor_stream.onnx"),
                                                      options)
    assert windows.shape[1:] == (1, 32, 24) and len(windows) == len(labels) == len(positions) - 31
    assert (windows[-1, 0] == positions[-32:]).all()


@needs_gcc
def test_early_exit_point_reports_the_mean_over_the_data(tmp_path, digits_test) -> None:
    import numpy as np

    images, labels = digits_test
    np.save(tmp_path / "x.npy", images[:40])
    np.save(tmp_path / "y.npy", labels[:40])
    common = ["--target", "stm32", "--calib", DATA / "calib.npy"]
    result = run_cli("sweep", MODEL, *common, "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
                     "-o", tmp_path / "sweep", "--grid", "bits=8", "--grid", "attention=dense", "--grid", "prune=0",
                     "--grid", "early-exit=none,0.9,after:0", "--jobs", "1", "--json")
    assert result.returncode == 0, result.stderr
    full, early = json.loads(result.stdout)["points"]
    assert early["bit_exact"] is True and early["energy_per"] == "inference, mean over --data", early
    assert 0 < early["energy_classes"]["early exit 1"] < 1 and early["instructions"] < full["instructions"]
    # the point's figures are `simulate`'s mean over the same data on the point's own firmware
    simulated = run_cli("simulate", tmp_path / "sweep" / "points" / early["key"] / "build", "--data",
                        tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--json")
    assert simulated.returncode == 0, simulated.stderr
    mean = json.loads(simulated.stdout)["mean"]
    assert early["energy_uj"] == mean["mean_energy_uj"] and early["instructions"] == round(mean["mean_instructions"])
    page = (tmp_path / "sweep" / "report.html").read_text()
    assert "early-exit 0.9,after:0" in page and "exit early" in page and "mean per inference" in page


@needs_gcc
def test_streaming_point_reports_energy_per_step(tmp_path) -> None:
    import numpy as np

    data = EXAMPLES / "sensor_stream" / "data"
    np.save(tmp_path / "x.npy", np.load(data / "stream_x.npy")[:120])
    np.save(tmp_path / "y.npy", np.load(data / "stream_y.npy")[:120])
    model = EXAMPLES / "sensor_stream" / "sensor_stream.onnx"

    def sweep(x, y, out):
        return run_cli("sweep", model, "--target", "stm32", "--calib", data / "calib.npy", "--data", x, "--labels", y,
                       "-o", out, "--grid", "bits=8", "--grid", "attention=model", "--grid", "prune=0", "--grid",
                       "streaming=none,0", "--jobs", "1", "--json")

    result = sweep(tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "stream")
    assert result.returncode == 0, result.stderr
    window, step = json.loads(result.stdout)["points"]
    assert step["energy_per"] == "step" and step["bit_exact"] is True and step["computed_fraction"] == 1.0, step
    assert step["energy_uj"] < window["energy_uj"] / 4  # ma_step computes one of the window's 32 positions
    assert step["accuracy"] == window["accuracy"]  # the exact stream answers as the window does, bit for bit
    windows = sweep(data / "test_x.npy", data / "test_y.npy", tmp_path / "windows")
    failed = json.loads(windows.stdout)["points"][1]
    assert "a stream of positions" in failed["error"], failed
