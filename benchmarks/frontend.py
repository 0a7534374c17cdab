"""Frontend benchmark: for every fixture model, ONNX nodes before and IR nodes after normalisation, the import
time, and the float reference's time per sample. Wall-clock figures vary by machine: read them as relative.

    python benchmarks/frontend.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx

from mcu_attn.api import import_model
from mcu_attn.reference.interpreter import run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    entries = json.loads((ROOT / "tests" / "fixtures" / "manifest.json").read_text())
    images = np.load(ROOT / "examples" / "digits_vit" / "data" / "test_x.npy")[:50]
    print(f"{'model':<24} {'onnx nodes':>10} {'ir nodes':>9} {'import ms':>10} {'ref ms/sample':>14}")
    for entry in entries:
        path = ROOT / "tests" / "fixtures" / entry["file"]
        started = time.perf_counter()
        graph = import_model(path)
        imported = time.perf_counter() - started
        started = time.perf_counter()
        for image in images:
            run(graph, {graph.inputs[0]: image[None]})
        per_sample = (time.perf_counter() - started) / len(images)
        onnx_nodes = len(onnx.load(path).graph.node)
        print(f"{entry['name']:<24} {onnx_nodes:>10} {len(graph.nodes):>9} {imported * 1e3:>10.0f} "
              f"{per_sample * 1e3:>14.2f}")


if __name__ == "__main__":
    main()
