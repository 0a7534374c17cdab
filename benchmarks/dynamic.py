"""Energy that depends on the input (docs/dynamic.md): mean estimated energy per inference, or per step, with and
without token pruning, early exit and streaming, emulated on the firmware and checked bit for bit.

    python benchmarks/dynamic.py [--model digits_vit|digits_long|sensor_stream|all] [--target stm32] [--limit N]

For each example model: the int8 build without a technique, then with each (`auto` within the default tolerance
of 0.01, chosen on the bundled calibration data), built for --target and simulated in Unicorn on the test split
(the first --limit samples; default all): the firmware's accuracy, whether its outputs (and its exits or skipped
steps) equal the numpy reference's on every sample, and the mean instructions, cycles and energy per inference
(estimates: docs/cycle-model.md; by exit class, three profiled samples per class). The early-exit rows also
give the cycles of one early-exited input and of one full input. The sensor stream is run as a stream of its
2,000 test positions: re-running the whole window at every step against ma_step, exact and event-driven.
Prints one Markdown table per model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CLASSIFIERS = {
    "digits_vit": (EXAMPLES / "digits_vit" / "digits_vit.onnx", EXAMPLES / "digits_vit" / "data"),
    "digits_long": (EXAMPLES / "digits_long" / "digits_long_dense.onnx", EXAMPLES / "digits_long" / "data"),
}
STREAM = (EXAMPLES / "sensor_stream" / "sensor_stream.onnx", EXAMPLES / "sensor_stream" / "data")
TECHNIQUES = (("none", {}), ("token pruning", {"token_prune": "auto"}), ("early exit", {"early_exit": "auto"}))
PER_CLASS = 3


def _build_and_simulate(model: Path, data: Path, target: str, options: dict, x, y, root: Path) -> dict:
    from mcu_attn.build import build
    from mcu_attn.options import BuildOptions
    from mcu_attn.sim.run import SimOptions, simulate

    out = root / f"build{len(list(root.iterdir()))}"
    report = build(model, target, out, BuildOptions(calib=str(data / "calib.npy"), **options))
    result = simulate(str(out), x, y, SimOptions(profile_per_class=PER_CLASS))
    return {"report": report, "result": result}


def _choice(report: dict) -> str:
    dynamic = report.get("dynamic", {})
    for key, name in (("token_prune", "--token-prune"), ("early_exit", "--early-exit")):
        if key in dynamic:
            chosen = dynamic[key]["chosen"]
            return f"`{name} {chosen}`" if chosen else f"`{name} auto`: none within tolerance"
    return "-"


def classifier_table(name: str, target: str, limit: int | None) -> list[str]:
    model, data = CLASSIFIERS[name]
    x, y = np.load(data / "test_x.npy"), np.load(data / "test_y.npy")
    if limit:
        x, y = x[:limit], y[:limit]
    lines = [f"{name} ({model.name}, int8, {target}, {len(x)} test samples)", "",
             "| technique | choice | accuracy (firmware) | bit-exact | mean instructions | mean cycles | "
             "mean energy | vs none |", "|---|---|---|---|---|---|---|---|"]
    base = None
    notes = []
    with tempfile.TemporaryDirectory(prefix="mcu-attn-dynamic-") as work:
        for technique, options in TECHNIQUES:
            run = _build_and_simulate(model, data, target, options, x, y, Path(work))
            result, mean = run["result"], run["result"]["mean"]
            exact = result["bit_exact"] and mean.get("exits_match", True)
            base = base or mean["mean_energy_uj"]
            lines.append(f"| {technique} | {_choice(run['report'])} | {result['accuracy']:.4f} | "
                         f"{'yes' if exact else 'NO'} | {mean['mean_instructions']:,.0f} | {mean['mean_cycles']:,.0f} | "
                         f"{mean['mean_energy_uj']:,.1f} uJ | {mean['mean_energy_uj'] / base:.3f} |")
            if "exit_fraction" in mean:
                rows = {row["exit"]: row for row in mean["classes"]}
                notes.append(f"early exit: {mean['exit_fraction']:.3f} of the samples exit; one early-exited input "
                             f"~{rows[1]['cycles']:,.0f} cycles (sample {rows[1]['profiled_samples'][0]}), one full "
                             f"input ~{rows[0]['cycles']:,.0f} cycles (sample {rows[0]['profiled_samples'][0]}), "
                             f"estimates at {result['estimate']['clock_hz'] / 1e6:.0f} MHz")
    return lines + [""] + notes


def stream_table(target: str, limit: int | None) -> list[str]:
    model, data = STREAM
    x, y = np.load(data / "stream_x.npy"), np.load(data / "stream_y.npy")
    if limit:
        x, y = x[:limit], y[:limit]
    lines = [f"sensor_stream ({model.name}, int8, {target}, a stream of {len(x)} positions)", "",
             "| per step | choice | accuracy per step (firmware) | bit-exact | computed steps | mean instructions | "
             "mean cycles | mean energy | vs re-running the window |", "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    with tempfile.TemporaryDirectory(prefix="mcu-attn-dynamic-") as work:
        for label, streaming in (("exact", "0"), ("event-driven", "auto")):
            run = _build_and_simulate(model, data, target, {"streaming": streaming}, x, y, Path(work))
            result, mean, window = run["result"], run["result"]["mean"], run["result"]["window"]
            if label == "exact":
                lines.append(f"| re-running the window (ma_run) | - | {window['accuracy']:.4f} | "
                             f"{'yes' if window['bit_exact'] else 'NO'} | 1.000 | {window['instructions']:,} | "
                             f"{window['cycles']:,} | {window['energy_uj']:,.1f} uJ | 1.000 |")
            exact = result["bit_exact"] and result["computed_match"]
            choice = f"`--streaming {streaming}` ({run['report']['stream']['delta']} input steps)"
            lines.append(f"| ma_step, {label} | {choice} | {result['accuracy']:.4f} | {'yes' if exact else 'NO'} | "
                         f"{result['computed_fraction']:.3f} | {mean['mean_instructions']:,.0f} | "
                         f"{mean['mean_cycles']:,.0f} | {mean['mean_energy_uj']:,.1f} uJ | "
                         f"{result['step_vs_window']:.3f} |")
            notes.append(f"{label}: the stream's output equals the window model's on "
                         f"{window['stream_equals_window']:.3f} of the steps with a whole window behind them; "
                         f"{result['computed_fraction']:.3f} of the steps computed")
    return lines + [""] + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits_vit", "digits_long", "sensor_stream", "all"), default="all")
    parser.add_argument("--target", default="stm32")
    parser.add_argument("--limit", type=int, help="the first N test samples (or stream positions) only")
    args = parser.parse_args()
    names = ("digits_vit", "digits_long", "sensor_stream") if args.model == "all" else (args.model,)
    for name in names:
        lines = stream_table(args.target, args.limit) if name == "sensor_stream" else \
            classifier_table(name, args.target, args.limit)
        print("\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    main()
