"""Readable layer names: dynamo's counters (val_84) become block0.attention, block0.q_proj, ... in reports and
C symbols; names that already say where a node sits (the legacy exporter's, tf2onnx's) are kept."""

from __future__ import annotations

import re

from mcu_attn.api import import_model
from mcu_attn.compiler import compile_model
from mcu_attn.options import BuildOptions
from mcu_attn.summary import summarize
from support import FIXTURES

DYNAMO = FIXTURES / "models" / "dynamo_op17_causal.onnx"
LEGACY = FIXTURES / "models" / "legacy_op17_mha.onnx"


def test_dynamo_counters_become_places_in_the_model() -> None:
    graph = import_model(DYNAMO)
    names = [node.name for node in graph.nodes]
    assert not [name for name in names if re.fullmatch(r"(val|node_\w+?)_\d+", name)], names
    assert [b["name"] for b in summarize(graph)["attention"]] == ["block0.attention", "block1.attention"]
    for block in ("block0", "block1"):
        assert {f"{block}.{role}" for role in ("q_proj", "k_proj", "v_proj", "out_proj")} <= set(names)
    assert len(set(names)) == len(names)
    assert "logits" in names and "layer_norm" in names  # names that already say something are kept


def test_names_reach_the_c_symbols() -> None:
    project = compile_model(DYNAMO, BuildOptions(bits=32)).project
    symbols = [layer["symbol"] for layer in project.layers]
    assert any(symbol.endswith("_block0_attention") for symbol in symbols), symbols
    assert not any(re.search(r"_val_\d+$", symbol) for symbol in symbols), symbols


def test_readable_names_are_kept() -> None:
    before = [block["name"] for block in summarize(import_model(LEGACY))["attention"]]
    assert all(name.startswith("/") and "attn" in name for name in before), before
