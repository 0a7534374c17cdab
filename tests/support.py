"""Paths and helpers shared by the tests (importable thanks to pytest's pythonpath setting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
DIGITS = ROOT / "examples" / "digits_vit"


def manifest() -> list[dict]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, exactly as a user would, without progress lines: whether a step lasts
    long enough to print one depends on the machine's load (tests/test_progress.py checks them)."""
    return subprocess.run([sys.executable, "-m", "mcu_attn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600, env={**os.environ, "MCU_ATTN_PROGRESS": "0"})


def without_activation_qdq(path) -> bytes:
    """The model with every activation QuantizeLinear -> DequantizeLinear pair removed (what the frontend's
    AbsorbActivationQDQ turns a QDQ model into; weights keep their own dequantization)."""
    import onnx

    model = onnx.load(path)
    producers = {o: n for n in model.graph.node for o in n.output}
    bypass = {n.output[0]: producers[n.input[0]].input[0] for n in model.graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in producers
              and producers[n.input[0]].op_type == "QuantizeLinear"}
    kept = [n for n in model.graph.node if not (n.op_type == "DequantizeLinear" and n.output[0] in bypass)]
    for node in kept:
        node.input[:] = [bypass.get(v, v) for v in node.input]
    kept += [onnx.helper.make_node("Identity", [bypass[o.name]], [o.name]) for o in model.graph.output
             if o.name in bypass]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model.SerializeToString()
