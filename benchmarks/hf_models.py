"""Deploy every transformers / timm / torch.nn fixture (tests/fixtures/hf_manifest.json) and print one table row each.

For each model: the attention blocks `import_model` finds (count, heads x head_dim, causal); the float reference's
largest absolute difference from onnxruntime on 4 seeded inputs; the int8 integer reference's error against the
float reference on 8 seeded inputs (calibrated on 32 others), as the largest absolute difference divided by the
largest float output; then `mcu-attn build --target stm32 --bits 8` (flash and RAM of the linked firmware) and
`mcu-attn simulate --limit 2` (bit-exactness against the integer reference, instructions per inference). A step
that fails ends the row with its one-line error.

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
from mcu_attn.passes.quantize import quantize_graph, run_quantized
from mcu_attn.reference.interpreter import run_stack
from mcu_attn.summary import attention_blocks

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
HEADER = ("| model | exporter | attention (blocks, heads x dim, causal) | float vs ORT | int8 vs float | flash | RAM "
          "| emulated | instructions |\n|---|---|---|---|---|---|---|---|---|")


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcu_attn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def _failed(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def row(entry: dict, scratch: Path) -> str:
    path = FIXTURES / entry["file"]
    cells = [entry["name"], entry["exporter"] + f" {entry['opset']}"]
    try:
        graph = import_model(path)
    except UserError as err:
        return "| " + " | ".join(cells + [f"not imported: {err}"] + [""] * 6) + " |"
    blocks = attention_blocks(graph)
    shapes = sorted({(b["heads"], b["head_dim"], b["causal"]) for b in blocks})
    cells.append(f"{len(blocks)}, " + ", ".join(f"{h}x{d}{' causal' if c else ''}" for h, d, c in shapes)
                 if blocks else "none found")
    samples = random_samples(graph, 44)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = np.stack([session.run(None, {entry["input"]: x.astype(entry["dtype"])})[0] for x in samples[:4]])
    cells.append(f"{np.abs(run_stack(graph, samples[:4]) - theirs).max():.1e}")
    calib = samples[12:]
    try:
        quantized = quantize_graph(graph, calib, 8)
        reference = run_stack(graph, samples[:8])
        error = np.abs(run_quantized(quantized, samples[:8]) - reference).max() / np.abs(reference).max()
        cells.append(f"{error:.3f}")
    except UserError as err:
        return "| " + " | ".join(cells + [f"not quantized: {err}"] + [""] * 4) + " |"
    np.save(scratch / "calib.npy", calib)
    built = _cli("build", path, "--target", "stm32", "-o", scratch / "fw", "--bits", "8", "--calib",
                 scratch / "calib.npy")
    if built.returncode:
        return "| " + " | ".join(cells + [f"not built: {_failed(built)}"] + [""] * 3) + " |"
    report = json.loads((scratch / "fw" / "report.json").read_text())
    cells += [f"{report['flash_bytes']:,} B", f"{report['ram_bytes']:,} B"]
    simulated = _cli("simulate", scratch / "fw", "--limit", "2", "--json")
    if simulated.returncode:
        return "| " + " | ".join(cells + [f"not emulated: {_failed(simulated)}", ""]) + " |"
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
