"""--attention auto compares what the model outputs: a classifier's top-1, otherwise the relative error of every
output (a causal model's first position, which no window changes, decides nothing), or a metric the caller gives.

The sequence-output fixtures come from tests/fixtures/generate_sequence_fixture.py (seeded): one attention block
whose attention falls off with distance, [1, 32, 16] in and out, one of them causal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.generate_sequence_fixture import CAUSAL_MODEL, MODEL as SEQUENCE_MODEL, calibration
from mcu_attn.api import import_model
from mcu_attn.data import check_stack
from mcu_attn.passes.sparsify import AttentionChoice, apply, choose, output_metric, relative_error, top1_change
from mcu_attn.reference.interpreter import run_stack
from support import DIGITS, FIXTURES, run_cli

DYNAMO_CAUSAL = FIXTURES / "models" / "dynamo_op17_causal.onnx"  # the digits ViT, causal, logits [1, 10]
TOLERANCE = 0.01  # the default: one point of top-1 agreement, or 1 % relative error


@pytest.mark.parametrize("model, metric", [(DIGITS / "digits_vit.onnx", "top1"), (DYNAMO_CAUSAL, "top1"),
                                           (SEQUENCE_MODEL, "relative-error"), (CAUSAL_MODEL, "relative-error")])
def test_the_metric_follows_the_output(model, metric) -> None:
    graph = import_model(model)
    chosen = output_metric(graph)
    assert chosen.name == metric and repr(graph.outputs[0]) in chosen.description


@pytest.mark.parametrize("model", [SEQUENCE_MODEL, CAUSAL_MODEL])
def test_auto_keeps_a_sequence_within_the_tolerance(model) -> None:
    graph = import_model(model)
    samples = check_stack(graph, calibration(), "calibration")
    chosen, report = choose(graph, samples, AttentionChoice("auto"), TOLERANCE)
    assert report["metric"] == "relative-error" and "relative error" in report["compared"]
    assert report["chosen"] != "dense"
    dense = run_stack(graph, samples)
    error = relative_error(dense, run_stack(chosen, samples))
    assert error <= TOLERANCE and error == report["tried"][-1]["error"]
    assert all(t["error"] > TOLERANCE for t in report["tried"][:-1])  # nothing cheaper was within it


def test_first_position_top1_would_have_passed_a_window_that_moves_the_causal_outputs() -> None:
    """The old comparison (top-1 at position 0) accepts local:2 on a causal model; the outputs say otherwise."""
    graph = import_model(CAUSAL_MODEL)
    samples = check_stack(graph, calibration(), "calibration")
    dense = run_stack(graph, samples)
    narrow = run_stack(apply(graph, AttentionChoice.parse("local:2")), samples)
    assert top1_change(dense[:, :, :1], narrow[:, :, :1]) == 0.0  # position 0 sees only itself either way
    assert relative_error(dense, narrow) > TOLERANCE


def test_auto_on_the_dynamo_causal_classifier() -> None:
    graph = import_model(DYNAMO_CAUSAL)
    samples = check_stack(graph, np.load(DIGITS / "data" / "calib.npy")[:48], "calibration")
    chosen, report = choose(graph, samples, AttentionChoice("auto"), TOLERANCE)
    assert report["metric"] == "top1" and "top-1 class of output 'logits' [1, 10]" in report["compared"]
    assert report["chosen"] != "dense"
    assert top1_change(run_stack(graph, samples), run_stack(chosen, samples)) <= TOLERANCE


def test_a_given_metric_and_the_cli_report(tmp_path) -> None:
    graph = import_model(SEQUENCE_MODEL)
    samples = check_stack(graph, calibration(), "calibration")

    def max_abs(dense, trial):
        return float(np.abs(dense - trial).max())
    _, report = choose(graph, samples, AttentionChoice("auto"), 0.05, metric=max_abs)
    assert report["metric"] == "custom" and report["compared"].startswith("max_abs of output 'y'")
    np.save(tmp_path / "calib.npy", samples)
    for extra, metric in (([], "relative-error"), (["--auto-metric", "top1"], "top1")):
        done = run_cli("eval", SEQUENCE_MODEL, "--float", "--data", tmp_path / "calib.npy", "--attention", "auto",
                       "--calib", tmp_path / "calib.npy", "--json", *extra)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["attention"]["metric"] == metric
    shown = run_cli("eval", SEQUENCE_MODEL, "--float", "--data", tmp_path / "calib.npy", "--attention", "auto",
                    "--calib", tmp_path / "calib.npy")
    assert "compared all values of output 'y' [1, 32, 16]: relative error" in shown.stdout
