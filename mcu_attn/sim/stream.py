"""`simulate` of a `--streaming` build on a stream of positions (docs/dynamic.md, "Streaming").

Given `--data` of one position per sample ([S, F]: a stream), the firmware runs the stream the way a sensor
would feed it:
1. `ma_harness_reset`, then `ma_harness_step` once per position (unhooked): each output and whether the step
   was computed (`ma_harness_computed`) are compared, step by step, with the numpy reference of ma_step
   (reference/stream.py). Accuracy is per step, against the label of the newest position, from the first step
   with a whole window behind it (what re-running the window can answer).
2. The whole window for comparison: the window model (`ma_run`) on the windows ending at every step from
   T - 1 on, in numpy (accuracy on the same steps, and whether the stream's output equals the window's: it must,
   bit for bit, when no step is skipped and the window covers the receptive field), and in the firmware on
   every T-th of them (bit-exact check); one of them is profiled: the energy of re-running the window.
3. Energy per step: the steps fall into classes (computed while the ring buffers fill, computed with full ring
   buffers, skipped by the event test); the first `per_class` steps of each class are replayed from a reset
   state and profiled (sim/dynamic.py weights them by the share of steps in each class).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.progress import progress
from mcu_attn.sim import dynamic

CLASSES = {0: "skipped step", 1: "step, rings filling", 2: "step"}


def is_stream_data(build, data: np.ndarray) -> bool:
    """True for a streaming build given one position per sample ([S, F], [S, 1, F] or [S, 1, 1, F])."""
    stream = build.report.get("stream")
    return stream is not None and data.ndim >= 2 and int(np.prod(data.shape[1:])) == int(stream["input_count"]) \
        and data.shape[1:] != tuple(build.input.shape)


def stream_windows(positions: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of `window` positions ending at each position from window - 1 on ([N, window, ...]), and
    those end positions."""
    ends = np.arange(window - 1, len(positions))
    return np.stack([positions[e - window + 1:e + 1] for e in ends]), ends


def _classes(computed: np.ndarray, window: int) -> np.ndarray:
    """Per step: 0 skipped, 1 computed before the rings are full (fewer than `window` computed so far), 2 full."""
    seen = np.cumsum(computed)
    return np.where(~computed, 0, np.where(seen < window, 1, 2))


def simulate_stream(build, runner, data: np.ndarray, labels: np.ndarray | None, overrides: dict, estimate,
                    per_class: int) -> dict:
    """The streaming payload (module docstring); `estimate(profile)` is run.estimate_payload for this build."""
    from mcu_attn.data import top1
    from mcu_attn.reference.interpreter import run_stack
    from mcu_attn.reference.qmath import quantize
    from mcu_attn.reference.stream import run_stream
    from mcu_attn.sim.profile import LayerRef

    info = build.report["stream"]
    compilation = build.compilation
    if compilation.step is None:
        raise UserError(f"{build.path}: report.json records a stream, the rebuilt reference has none")
    source = build.graph.type(build.graph.inputs[0]).quant
    positions = quantize(data.reshape(len(data), -1), source.scale[0], source.zero_point[0]).astype(np.int8)
    expected, computed = run_stream(compilation.step, positions, compilation.delta)
    window = build.input.shape[1]
    attention_window = max((int(layer_window) for layer_window in _windows(compilation.step)), default=1)

    fw = runner.firmware
    runner.call("ma_harness_reset")
    got, flags = [], []
    with progress("simulating the stream (unicorn)", total=len(positions), unit="steps") as advance:
        for position in positions:
            got.append(build.decode(runner.call("ma_harness_step", "ma_harness_step_input", position.tobytes())))
            flags.append(int.from_bytes(bytes(runner.uc.mem_read(fw.address("ma_harness_computed"), 4)), "little"))
            advance()
    got = np.stack(got).reshape(expected.shape)
    payload = {"mode": "stream", "steps": int(len(positions)), "delta": int(compilation.delta),
               "bit_exact": bool(np.array_equal(got, expected)),
               "mismatched_steps": int(np.sum(np.any(got.reshape(len(got), -1) != expected.reshape(len(got), -1),
                                                     axis=1))),
               "computed_fraction": float(computed.mean()),
               "computed_match": bool(np.array_equal(np.array(flags, bool), computed))}

    # the whole window, ending at every step from T - 1 on
    windows, ends = stream_windows(positions, window)
    windows = windows.reshape((len(ends),) + build.input.shape)
    window_expected = run_stack(build.graph, windows).astype(build.output.np_dtype)
    checked = ends[::window]
    window_got = np.stack([build.decode(runner.infer(windows[e - window + 1].tobytes())) for e in checked])
    payload["window"] = {"samples_checked": int(len(checked)),
                         "bit_exact": bool(np.array_equal(window_got, window_expected[checked - window + 1])),
                         "stream_equals_window": float(np.mean([np.array_equal(expected[e], window_expected[i])
                                                                for i, e in enumerate(ends)]))}
    if labels is not None:
        truth = labels[ends]
        payload["accuracy"] = float(np.mean(top1(build.dequantize(got[ends])) == truth))
        payload["reference_accuracy"] = float(np.mean(top1(build.dequantize(expected[ends])) == truth))
        payload["window"]["accuracy"] = float(np.mean(top1(build.dequantize(window_expected)) == truth))
    with progress("profiling the whole window (unicorn)", total=1) as advance:
        _, profile = runner.profile(windows[-1].tobytes(), build.layers(fw.symbols))
        advance()
    whole = estimate(profile)
    payload["window"].update({key: whole[key] for key in ("instructions", "cycles", "energy_uj", "time_ms")})

    step_layers = [LayerRef(layer["name"], layer["symbol"], fw.address(layer["symbol"]), layer.get("op"))
                   for layer in info["layers"] if layer.get("symbol")]
    classes = _classes(computed, attention_window)

    def measure(index: int) -> dict:
        runner.call("ma_harness_reset")
        for position in positions[:index]:
            runner.call("ma_harness_step", "ma_harness_step_input", position.tobytes())
        run = lambda: runner.call("ma_harness_step", "ma_harness_step_input", positions[index].tobytes())  # noqa
        result = estimate(runner.profile_run(run, step_layers)[1])
        return {key: result[key] for key in ("instructions", "cycles", "energy_uj")}

    mean = dynamic.mean_over_classes(classes, {}, measure, per_class)
    for row in mean["classes"]:
        row["class"] = CLASSES[row["exit"]]
    payload["mean"] = mean
    payload["mean"]["method"] = ("per class of step (skipped, computed while the ring buffers fill, computed), the "
                                 "mean of its profiled steps weighted by the share of steps in the class")
    if whole["energy_uj"] and mean["mean_energy_uj"] is not None:
        payload["step_vs_window"] = mean["mean_energy_uj"] / whole["energy_uj"]
    return payload


def _windows(step) -> list[int]:
    return [node.attrs["window"] for node in step.nodes if node.op == "QAttentionStep"]


def format_lines(result: dict) -> list[str]:
    lines = [f"stream of {result['steps']} steps: ma_step outputs vs numpy reference "
             + ("bit-exact" if result["bit_exact"] else f"differ on {result['mismatched_steps']} steps")
             + f"; {result['computed_fraction']:.3f} of the steps computed (event threshold {result['delta']} "
               f"input steps), firmware decisions " + ("match" if result["computed_match"] else "DIFFER")]
    window = result["window"]
    if result.get("accuracy") is not None:
        lines.append(f"accuracy per step {result['accuracy']:.4f} (reference {result['reference_accuracy']:.4f}); "
                     f"re-running the window {window['accuracy']:.4f}")
    lines.append(f"stream output equals the window's on {window['stream_equals_window']:.3f} of the steps; ma_run "
                 f"on {window['samples_checked']} windows " + ("bit-exact" if window["bit_exact"] else "DIFFERS"))
    mean = result["mean"]
    energy = lambda value: f", ~{value:,.1f} uJ" if value is not None else ""  # noqa: E731
    lines.append(f"per step (mean): {mean['mean_instructions']:,.0f} instructions, ~{mean['mean_cycles']:,.0f} "
                 f"cycles{energy(mean['mean_energy_uj'])}; re-running the window: {window['instructions']:,} "
                 f"instructions, ~{window['cycles']:,} cycles{energy(window['energy_uj'])} (estimates)"
                 + (f": {result['step_vs_window']:.3f} of it" if "step_vs_window" in result else ""))
    for row in mean["classes"]:
        lines.append(f"  {row['class']:<20} {row['samples']:>6} steps ({row['share'] * 100:.1f}%): "
                     f"{row['instructions']:,.0f} instructions, ~{row['cycles']:,.0f} cycles"
                     f"{energy(row['energy_uj'])} (profiled {len(row['profiled_samples'])}, spread "
                     f"{row['spread'] * 100:.2f}%)")
    return lines
