"""--sram-budget BYTES: the query tile of the attention kernels chosen to fit the planned RAM (arena + input and
output buffers), or a one-line error naming the minimum; and the per-layer plan `build` prints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.build import BuildOptions, build, planned_sizes
from mcu_attn.compiler import QUERY_TILES
from mcu_attn.codegen.emit import generate
from mcu_attn.errors import UserError
from mcu_attn.passes.quantize import quantize_graph
from mcu_attn.targets.table import get_target
from support import DIGITS, run_cli

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"


@pytest.fixture(scope="module")
def planned_by_tile() -> dict[int, int]:
    """Planned RAM of the int8 digits ViT per query tile (its attention layers are the peak)."""
    graph = quantize_graph(import_model(MODEL), np.load(CALIB), 8)
    target = get_target("host")  # the builds below; a host build copies no tables to RAM
    return {tile: planned_sizes(graph, generate(graph, tile), target)["ram_bytes"] for tile in QUERY_TILES}


def test_scratch_grows_with_the_tile(planned_by_tile) -> None:
    sizes = [planned_by_tile[t] for t in sorted(planned_by_tile)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_every_tile_plan_reaches_the_busiest_layer() -> None:
    """The arena of the int8 digits ViT equals the bytes live in its busiest layer, for every tile: no plan
    can be smaller (rule 5 keeps the best of its placement orders)."""
    graph = quantize_graph(import_model(MODEL), np.load(CALIB), 8)
    for tile in QUERY_TILES:
        plan = generate(graph, tile).plan
        assert plan.arena_bytes == max(plan.live_bytes(i) for i in range(len(graph.nodes)))


def test_budget_picks_the_largest_tile_that_fits(tmp_path, planned_by_tile) -> None:
    for tile in (16, 4, 1):
        budget = planned_by_tile[tile] + 1
        options = BuildOptions(bits=8, calib=str(CALIB), sram_budget=budget, check_samples=1)
        report = build(MODEL, "host", tmp_path / f"t{tile}", options)
        assert report["query_tile"] == tile and report["sram_budget"] == budget
        assert report["arena_bytes"] + 64 + 10 <= budget  # int8 input [1,8,8] and logits [1,10]
        assert report["host_check"]["bit_exact"]  # any tile: the same results


def test_budget_below_the_minimum_is_refused(tmp_path, planned_by_tile) -> None:
    minimum = planned_by_tile[1]
    with pytest.raises(UserError, match=f"smallest plan needs {minimum:,} B"):
        build(MODEL, "host", tmp_path / "small", BuildOptions(bits=8, calib=str(CALIB), sram_budget=minimum - 1))
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "cli", "--bits", "8", "--calib", CALIB,
                     "--sram-budget", "100")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"needs {minimum:,} B" in result.stderr and not (tmp_path / "cli").exists()
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "cli", "--sram-budget", "0")
    assert result.returncode == 2 and "above 0" in result.stderr and not (tmp_path / "cli").exists()


def test_build_prints_the_plan_per_layer(tmp_path) -> None:
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "q8", "--bits", "8", "--calib", CALIB)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "q8" / "report.json").read_text())
    kernels = [layer for layer in report["layers"] if layer["kind"] != "view"]
    plan, built = result.stdout.split("planned RAM per layer")[1].split("\nbuilt ")  # the plan comes before
    lines = plan.strip().splitlines()[1:]
    assert len(lines) == len(kernels) and built.startswith(str(tmp_path / "q8"))
    peak = max(layer["live_bytes"] for layer in kernels)
    assert peak <= report["arena_bytes"]
    marked = [line for line in lines if line.endswith("<- peak")]
    assert marked and all(f"{peak:,} B" in line for line in marked)
    attention = [layer for layer in kernels if layer["op"] == "QAttention"]
    assert attention and all(layer["scratch_bytes"] == 8 * 8 + 8 for layer in attention)  # query tile 1, head_dim 8
