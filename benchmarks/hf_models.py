"""Deploy every transformers / timm / torch.nn fixture (tests/fixtures/hf_manifest.json) and print one table row each.

For each model: the attention blocks `import_model` finds (count, heads x head_dim, causal); the float reference's
largest absolute difference from onnxruntime on 4 held-out inputs (for onnxruntime's quantized models: a QDQ model
against onnxruntime without its activation Q/DQ pairs, which is what our float reference is; a QOperator model as
imported, before its ops are lowered, against onnxruntime running it as written); the held-out digits accuracy
(tests/fixtures/digits_tasks.py: every fixture was trained on the digits) of the float reference, of the int8 and
of the int4 integer references, calibrated on the 64 stored training images; the int8 output error against the
float reference on the held-out inputs, as the largest absolute difference divided by the largest float output;
then `mcu-attn build --target stm32 --bits 8` (flash and RAM of the linked firmware) and `mcu-attn simulate
--limit 2` (bit-exactness against the integer reference, instructions per inference). A step that fails ends the
row with its one-line error. A fixture without a digits task (the Keras model) is measured on seeded random
inputs and has no accuracy.

    python benchmarks/hf_models.py [NAME ...]        (progress on stderr, the Markdown table on stdout)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mcu_attn.api import import_model
from mcu_attn.data import random_samples
from mcu_attn.errors import UserError
from mcu_attn.frontend.onnx import load_onnx
from mcu_attn.passes.quantize import quantize_graph, run_quantized
from mcu_attn.reference.interpreter import run_stack

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
sys.path[:0] = [str(FIXTURES), str(ROOT / "tests")]
from digits_tasks import held_out, predictions  # noqa: E402
from support import without_activation_qdq  # noqa: E402

from mcu_attn.summary import attention_blocks  # noqa: E402

HEADER = ("| model | exporter | attention (blocks, heads x dim, causal) | float vs ORT | accuracy float / int8 / int4 "
          "| int8 vs float | flash | RAM | emulated | instructions |\n|---|---|---|---|---|---|---|---|---|---|")
COLUMNS = 10


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcu_attn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def _failed(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def _end(cells: list[str], message: str) -> str:
    return "| " + " | ".join(cells + [message] + [""] * (COLUMNS - len(cells) - 1)) + " |"


def _data(entry: dict, graph) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(calibration inputs, evaluation inputs, labels or None) in the model's input dtype."""
    if "input_kind" in entry:
        calib, test_x, test_y = held_out(entry["input_kind"])
        return calib.astype(entry["dtype"]), test_x.astype(entry["dtype"]), test_y
    samples = random_samples(graph, 44).astype(entry["dtype"])
    return samples[12:], samples[:8], None


def _ort_difference(entry: dict, path: Path, graph, inputs: np.ndarray) -> float:
    model: str | bytes = str(path)
    if entry["quantization"] == "qdq":
        model = without_activation_qdq(path)
    elif entry["quantization"] == "qoperator":
        graph = load_onnx(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the model as written
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    theirs = np.stack([session.run(None, {entry["input"]: x})[0] for x in inputs])
    return float(np.abs(run_stack(graph, inputs) - theirs).max())


def _accuracy(entry: dict, outputs: np.ndarray, labels: np.ndarray | None) -> str:
    if labels is None:
        return "-"
    return f"{100 * np.mean(predictions(entry['readout'], outputs) == labels):.1f}"


def row(entry: dict, scratch: Path) -> str:
    path = FIXTURES / entry["file"]
    cells = [entry["name"], entry["exporter"] + f" {entry['opset']}"]
    try:
        graph = import_model(path)
    except UserError as err:
        return _end(cells, f"not imported: {err}")
    blocks = attention_blocks(graph)
    shapes = sorted({(b["heads"], b["head_dim"], b["causal"]) for b in blocks})
    cells.append(f"{len(blocks)}, " + ", ".join(f"{h}x{d}{' causal' if c else ''}" for h, d, c in shapes)
                 if blocks else "none found")
    calib, inputs, labels = _data(entry, graph)
    cells.append(f"{_ort_difference(entry, path, graph, inputs[:4]):.1e}")
    reference = run_stack(graph, inputs)
    try:
        int8 = run_quantized(quantize_graph(graph, calib, 8), inputs)
        int4 = run_quantized(quantize_graph(graph, calib, 4), inputs)
    except UserError as err:
        return _end(cells, f"not quantized: {err}")
    cells.append(" / ".join(_accuracy(entry, y, labels) for y in (reference, int8, int4)))
    cells.append(f"{np.abs(int8 - reference).max() / np.abs(reference).max():.3f}")
    np.save(scratch / "calib.npy", calib)
    built = _cli("build", path, "--target", "stm32", "-o", scratch / "fw", "--bits", "8", "--calib",
                 scratch / "calib.npy")
    if built.returncode:
        return _end(cells, f"not built: {_failed(built)}")
    report = json.loads((scratch / "fw" / "report.json").read_text())
    cells += [f"{report['flash_bytes']:,} B", f"{report['ram_bytes']:,} B"]
    simulated = _cli("simulate", scratch / "fw", "--limit", "2", "--json")
    if simulated.returncode:
        return _end(cells, f"not emulated: {_failed(simulated)}")
    result = json.loads(simulated.stdout)
    cells += ["bit-exact" if result["bit_exact"] else "NOT bit-exact", f"{result['instructions']:,}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    entries = json.loads((FIXTURES / "hf_manifest.json").read_text())
    wanted = sys.argv[1:]
    entries = [e for e in entries if not wanted or e["name"] in wanted]
    rows = []
    for index, entry in enumerate(entries, 1):
        print(f"[{index}/{len(entries)}] {entry['name']}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(row(entry, Path(scratch)))
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
