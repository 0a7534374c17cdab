"""`mcu-attn sweep`: the energy–accuracy trade-off of one model on one target, over a grid of build options.

Grid. Three axes, every combination a point: `bits` (32, 8, 4); `attention` (dense; `model`, the band a model
was trained with, when it has one; a local window of about a quarter of the sequence with the first token
global; `auto`); `prune` (the same fraction of heads and FFN channels: 0, 0.25, 0.5). `--grid AXIS=V1,V2,...`
replaces an axis; `prune-heads` and `prune-ffn` are axes of their own when given (instead of `prune`), and so is
`low-rank` (`none`, `auto` or a rank: `--low-rank`, passes/low_rank.py). An attention value is any `--attention`
pattern (docs/attention-patterns.md): a bare number or `global:G` continues the value before it
(`dilated:8,2`, `block:16,1,4,global:1`) and `+` joins the terms of a union (`strided:8+local:8`). Axes the
model cannot take are left out of the default grid: no attention axis without attention blocks, no pruning
without prunable blocks. The input-dependent techniques (docs/dynamic.md) are axes when given: `token-prune`,
`early-exit` and `streaming`, each `none` (off) or a value of its build flag (`auto`, `16,after:1`,
`0.9,after:0`, a delta); they need an integer build, so their combinations with `bits` 32 are left out.

Point. The one compile function (mcu_attn/compiler.py) with the point's options, then: the reference accuracy on
--data/--labels (the integer reference for --bits 8/4, the float one for 32); the firmware for --target
(mcu_attn/build.py) in DIR/points/<key>/build, which runs one inference in the emulator (the first calibration
sample), checks it bit for bit against the reference and profiles it: instructions, estimated cycles and energy. flash_bytes and ram_bytes are the linked firmware's. A point that fails (does not fit the target, an
option the model cannot take) is reported with its one-line error; the sweep goes on.

Input-dependent points. With token pruning or early exit the work depends on the input, so one profiled sample
is not the point's energy: the firmware runs every --data sample in the emulator (bit-exact check of outputs and
exits) and instructions, cycles and energy are the MEAN per inference, by exit class (mcu_attn/sim/dynamic.py).
Streaming points run --data as a stream and give the mean per step (sim/stream.py). --data may be a stream for a
model with a [T, F] window input: [S, F], one position per sample and one label per position; every point is then
measured on the windows ending at each position from T - 1 on (labelled by that position), so a window point's
energy is that of re-running the window at each step, comparable with a streaming point's energy per step.

Front. A point is on the Pareto front when no other point is at least as accurate with no more energy, and
better in one of the two. `--goal` turns the front into one recommendation: among the points within
`--max-drop` (accuracy, as a fraction) of the baseline — the fp32 dense unpruned point when the grid has it,
else the most accurate — and within `--max-ram` and `--max-flash` bytes, `battery` takes the least energy,
`latency` the fewest cycles, `size` the least flash, `accuracy` the most accurate; ties go to the more
accurate, then to less energy. The command that builds it is printed.

Cache. A point's result is kept in DIR/points/<key>/result.json; the key hashes the bytes of the model, the
calibration data, --data and --labels, the target and the point's options, so a rerun with one more axis value
computes only the new points (and a changed file recomputes them all).

Parallel. Points run in worker processes, `--jobs` of them (default: the machine's cores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.options import BuildOptions

AXES = ("bits", "attention", "prune", "prune-heads", "prune-ffn", "low-rank")
TECHNIQUES = {"token-prune": "token_prune", "early-exit": "early_exit", "streaming": "streaming"}  # axis: option
AXES += tuple(TECHNIQUES)
GOALS = {"battery": "energy_uj", "latency": "cycles", "size": "flash_bytes", "accuracy": "accuracy"}
MARKER = ".mcu-attn-sweep"
AS_TRAINED = "model"  # the attention axis value that keeps a band-trained model's own window


@dataclass(frozen=True)
class SweepOptions:
    target: str
    calib: str
    data: str
    labels: str
    grid: tuple[str, ...] = ()         # AXIS=V1,V2,... overrides
    goal: str | None = None            # battery | latency | size | accuracy
    max_drop: float | None = None      # accuracy below the baseline's allowed for --goal, as a fraction
    max_ram: int | None = None         # bytes
    max_flash: int | None = None       # bytes
    jobs: int | None = None            # worker processes (None: the cores)


# ---- the grid ---------------------------------------------------------------------------------------------------

def default_grid(graph) -> dict[str, list]:
    """The axes a model can take (see the module docstring)."""
    from mcu_attn.ir.ops.attention import node_pattern
    from mcu_attn.passes.prune import find_sublayers

    blocks = [n for n in graph.nodes if n.op == "Attention"]
    grid: dict[str, list] = {"bits": [32, 8, 4]}
    if blocks:
        seq = min(graph.shape(n.inputs[0])[-2] for n in blocks)
        window = max(2, 1 << max(1, (seq // 4).bit_length() - 1))
        attention = ["dense"] + ([AS_TRAINED] if any(not node_pattern(n).dense for n in blocks) else [])
        grid["attention"] = attention + [f"local:{window},global:1", "auto"]
    heads, ffns = find_sublayers(graph)
    if heads or ffns:
        grid["prune"] = [0.0, 0.25, 0.5]
    return grid


def _values(axis: str, text: str) -> list:
    """`V1,V2,...` of one axis; in attention values a bare number or `global:G` continues the value before it and
    `+` joins the terms of a union."""
    items: list[str] = []
    for item in text.split(","):
        if axis == "attention" and items and (item.startswith("global:") or item.isdigit()):
            items[-1] += "," + item
        elif axis in TECHNIQUES and item.startswith("after:") and items:
            items[-1] += "," + item
        elif item:
            items.append(item)
    if not items:
        raise UserError(f"--grid {axis}=: give at least one value")
    try:
        if axis == "bits":
            return [int(v) for v in items]
        if axis.startswith("prune"):
            return [float(v) for v in items]
    except ValueError:
        raise UserError(f"--grid {axis}={text}: values must be numbers") from None
    if axis == "attention":
        return [item.replace("+", ",") for item in items]
    return items


def parse_grid(specs: tuple[str, ...], defaults: dict[str, list]) -> dict[str, list]:
    grid = dict(defaults)
    given: set[str] = set()
    for spec in specs:
        axis, sep, text = spec.partition("=")
        if not sep or axis not in AXES:
            raise UserError(f"--grid {spec}: expected AXIS=V1,V2,... with AXIS one of {', '.join(AXES)}")
        if axis in given:
            raise UserError(f"--grid {axis} given twice")
        given.add(axis)
        grid[axis] = _values(axis, text)
    if "prune" in given and given & {"prune-heads", "prune-ffn"}:
        raise UserError("--grid prune sets heads and FFN together: give it or prune-heads/prune-ffn, not both")
    if given & {"prune-heads", "prune-ffn"}:
        grid.pop("prune", None)
    return grid


def points(grid: dict[str, list], calib: str) -> list[BuildOptions]:
    """Every combination of the axes, as build options, each checked."""
    combos: list[dict] = [{}]
    for axis, values in grid.items():
        combos = [{**combo, axis: value} for combo in combos for value in values]
    result = []
    for combo in combos:
        techniques = {field: combo[axis] for axis, field in TECHNIQUES.items() if combo.get(axis, "none") != "none"}
        if techniques and combo.get("bits", 8) == 32:
            continue  # the techniques are integer-only (module docstring)
        prune = combo.get("prune", 0.0)
        attention = combo.get("attention")
        options = BuildOptions(bits=combo.get("bits", 8), calib=calib,
                               attention=None if attention in (None, AS_TRAINED) else attention,
                               prune_heads=combo.get("prune-heads", prune), prune_ffn=combo.get("prune-ffn", prune),
                               low_rank=None if combo.get("low-rank", "none") == "none" else combo["low-rank"],
                               **techniques)
        result.append(options.check())
    return list(dict.fromkeys(result))  # equal combinations (prune 0 given twice) once


def config(options: BuildOptions) -> dict:
    return {"bits": options.bits, "attention": options.attention or AS_TRAINED,
            "prune_heads": options.prune_heads, "prune_ffn": options.prune_ffn, "low_rank": options.low_rank,
            **techniques_of(options)}


def techniques_of(options: BuildOptions) -> dict[str, str]:
    """The input-dependent techniques a point uses: option field -> its value."""
    return {field: getattr(options, field) for field in TECHNIQUES.values() if getattr(options, field)}


def shown(point: dict) -> str:
    """A point's description, with the window `auto` chose."""
    chosen = point.get("attention_chosen")
    text = point["describe"] + (f" ({chosen})" if chosen and point["config"]["attention"] == "auto" else "")
    return text + "".join(f" [{choice}]" for choice in point.get("technique_chosen", []))


def describe(options: BuildOptions) -> str:
    text = f"int{options.bits}" if options.bits != 32 else "fp32"
    text += f" {options.attention or AS_TRAINED}"
    if options.prunes:
        text += (f" prune {options.prune_heads:g}" if options.prune_heads == options.prune_ffn
                 else f" heads {options.prune_heads:g} ffn {options.prune_ffn:g}")
    if options.low_rank:
        text += f" low-rank {options.low_rank}"
    for axis, field in TECHNIQUES.items():
        if getattr(options, field):
            text += f" {axis} {getattr(options, field)}"
    return text


def build_command(model: str, target: str, calib: str, options: BuildOptions) -> str:
    """The `mcu-attn build` command line of one point."""
    words = ["mcu-attn", "build", model, "--target", target, "-o", "out", "--calib", calib, "--bits", str(options.bits)]
    if options.attention:
        words += ["--attention", options.attention]
    if options.prune_heads:
        words += ["--prune-heads", f"{options.prune_heads:g}"]
    if options.prune_ffn:
        words += ["--prune-ffn", f"{options.prune_ffn:g}"]
    if options.low_rank:
        words += ["--low-rank", options.low_rank]
    for axis, field in TECHNIQUES.items():
        if getattr(options, field):
            words += [f"--{axis}", getattr(options, field)]
    return " ".join(shlex.quote(w) for w in words)


# ---- one point --------------------------------------------------------------------------------------------------

def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def point_key(files: dict[str, str], target: str, options: BuildOptions) -> str:
    record = {"files": files, "target": target, "options": options.record("calib")}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def run_point(model: str, sweep: SweepOptions, options: BuildOptions, directory: str) -> dict:
    """Compile, measure and build one point in `directory` (a worker process runs this); its result."""
    from mcu_attn.api import reference_outputs
    from mcu_attn.build import build
    from mcu_attn.compiler import Compilation
    from mcu_attn.data import accuracy

    result: dict = {"config": config(options), "describe": describe(options)}
    try:
        compilation = Compilation(Path(model), build_options_for(sweep.target, options)).run("emit")
        data, labels, stream = evaluation_data(compilation.imported, sweep)
        if options.streaming and stream is None:
            raise UserError("a streaming point gives energy per step: give --data a stream of positions [S, F] "
                            "and --labels one class per position")
        result["accuracy"] = accuracy(reference_outputs(compilation.graph, data), labels)
        report = build(model, sweep.target, Path(directory) / "build", options, compilation=compilation)
        emulated = report.get("emulated") or {"error": "the firmware was not compiled"}
        if "error" in emulated:
            raise UserError(emulated["error"])
        result.update({key: emulated[key] for key in ("energy_uj", "cycles", "instructions", "time_ms",
                                                      "bit_exact", "within_tolerance", "max_abs_error")
                       if key in emulated})
        result.update(flash_bytes=report["flash_bytes"], ram_bytes=report["ram_bytes"], params=report["params"],
                      macs=report["macs"], build="build")
        if "attention_choice" in report:
            result["attention_chosen"] = report["attention_choice"]["chosen"]
        if techniques_of(options):
            result.update(measure_mean(Path(directory) / "build", compilation, report, data, labels, stream))
    except UserError as error:
        result["error"] = str(error)
    return result


def evaluation_data(graph, sweep: SweepOptions) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """--data and --labels as the points are measured on (module docstring): the samples, their labels and, for
    a stream (a causal model only: an image's rows would look like positions), (positions, labels per position)."""
    from mcu_attn.data import check_stack, load_labels, load_stack, sample_shape
    from mcu_attn.ir.ops.attention import node_pattern
    from mcu_attn.sim.stream import stream_windows

    data = load_stack(sweep.data, "data")
    labels = load_labels(sweep.labels, len(data))
    shape = sample_shape(graph)
    blocks = [n for n in graph.nodes if n.op == "Attention"]
    causal = bool(blocks) and all(node_pattern(n).causal for n in blocks)
    if causal and data.ndim == 2 and len(shape) >= 2 and data.shape[1] == shape[-1] and data.shape[1:] != shape[1:]:
        window = int(np.prod(shape[:-1]))
        if len(data) < window:
            raise UserError(f"--data: a stream of {len(data)} positions is shorter than the model's window of "
                            f"{window}")
        windows, ends = stream_windows(data, window)
        return check_stack(graph, windows, "data"), labels[ends], (data, labels)
    return check_stack(graph, data, "data"), labels, None


def measure_mean(directory: Path, compilation, report: dict, data: np.ndarray, labels: np.ndarray,
                 stream: tuple | None) -> dict:
    """An input-dependent point's figures (module docstring): the firmware simulated on all of --data (every
    step of a stream), bit-exact outputs and exits, and the mean instructions, cycles and energy by exit class."""
    from mcu_attn.sim.run import SimOptions, simulate

    streaming = compilation.options.streaming is not None
    samples, truth = stream if streaming else (data, labels)
    simulated = simulate(str(directory), samples, truth, SimOptions(), compilation=compilation)
    mean = simulated["mean"]
    exact = simulated["bit_exact"] and mean.get("exits_match", True) and simulated.get("computed_match", True)
    result = {"instructions": round(mean["mean_instructions"]), "cycles": round(mean["mean_cycles"]),
              "energy_uj": mean["mean_energy_uj"], "bit_exact": exact, "energy_per": "step" if streaming else
              "inference, mean over --data", "energy_classes": {row["class"]: row["share"] for row in mean["classes"]}}
    result["time_ms"] = result["cycles"] / (report["emulated"]["cycles"] / report["emulated"]["time_ms"])
    if streaming:  # the reference of ma_step, per step (event-driven steps may answer differently)
        result.update(accuracy=simulated["reference_accuracy"], computed_fraction=simulated["computed_fraction"])
    chosen = []
    for key, entry in (report.get("dynamic") or {}).items():
        if getattr(compilation.options, key, None) == "auto":
            chosen.append(f"{key.replace('_', '-')} {entry['chosen'] or 'none'}")
    if streaming:
        chosen.append(f"delta {report['stream']['delta']}, {simulated['computed_fraction']:.2f} computed")
    if "exit_fraction" in mean:
        chosen.append(f"{mean['exit_fraction']:.2f} exit early")
    result["technique_chosen"] = chosen
    return result


def build_options_for(target: str, options: BuildOptions) -> BuildOptions:
    """`options` as `build` compiles them for `target` (its core's kernel variant)."""
    from mcu_attn.codegen.kernels import variant_for
    from mcu_attn.targets.table import get_target

    return dataclasses.replace(options, kernels=options.kernels or variant_for(get_target(target).core))


def _worker(args: tuple) -> tuple[str, dict]:
    """A worker process: one point, its result cached in its directory (a user error is as deterministic as a
    result, so it is cached too; an internal error is not, so that a fixed mcu-attn computes the point again)."""
    model, sweep_options, options, directory, key = args
    os.environ["MCU_ATTN_PROGRESS"] = "0"  # the sweep's own bar is the only one
    try:
        result = run_point(model, sweep_options, options, directory)
    except Exception as error:  # a failed point is reported, not fatal
        return key, {"config": config(options), "describe": describe(options),
                     "error": f"internal error ({type(error).__name__}: {error})"}
    Path(directory).mkdir(parents=True, exist_ok=True)
    _write_json(Path(directory) / "result.json", result)
    return key, result


def _write_json(path: Path, payload: dict) -> None:
    temporary = path.with_suffix(".json.part")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


# ---- the front and the recommendation --------------------------------------------------------------------------

def mark_pareto(results: list[dict]) -> None:
    """Set `pareto` on every result: no other point as accurate with no more energy and better in one."""
    measured = [r for r in results if "error" not in r and r.get("energy_uj") is not None]
    for result in results:
        result["pareto"] = result in measured and not any(
            other["accuracy"] >= result["accuracy"] and other["energy_uj"] <= result["energy_uj"]
            and (other["accuracy"] > result["accuracy"] or other["energy_uj"] < result["energy_uj"])
            for other in measured)


def baseline(results: list[dict]) -> dict | None:
    """The fp32 dense unpruned point, else the most accurate one."""
    measured = [r for r in results if "error" not in r]
    for result in measured:
        c = result["config"]
        if (c["bits"] == 32 and c["attention"] == "dense" and not c["prune_heads"] and not c["prune_ffn"]
                and not c.get("low_rank") and not any(c.get(field) for field in TECHNIQUES.values())):
            return result
    return max(measured, key=lambda r: r["accuracy"], default=None)


def recommend(results: list[dict], sweep: SweepOptions) -> tuple[dict | None, str]:
    """The point `--goal` picks under the constraints, and why (or why none)."""
    base = baseline(results)
    if base is None:
        return None, "no point was measured"
    floor = base["accuracy"] - (sweep.max_drop if sweep.max_drop is not None else 1.0)
    feasible = [r for r in results if "error" not in r and r["accuracy"] >= floor - 1e-12
                and (sweep.max_ram is None or r["ram_bytes"] <= sweep.max_ram)
                and (sweep.max_flash is None or r["flash_bytes"] <= sweep.max_flash)
                and (sweep.goal != "battery" or r.get("energy_uj") is not None)]
    if not feasible:
        return None, "no point meets the constraints"
    metric = GOALS[sweep.goal]
    if metric == "accuracy":
        best = max(feasible, key=lambda r: (r["accuracy"], -(r.get("energy_uj") or 0.0)))
    else:
        best = min(feasible, key=lambda r: (r[metric], -r["accuracy"], r.get("energy_uj") or 0.0))
    return best, f"{sweep.goal}: the least {metric}" if metric != "accuracy" else "accuracy: the most accurate"


# ---- the sweep --------------------------------------------------------------------------------------------------

def check_sweep_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise UserError(f"-o {out_dir}: directory is not empty and was not made by mcu-attn sweep (no {MARKER} "
                        f"file); choose another directory or empty it")


def _check(sweep: SweepOptions) -> None:
    from mcu_attn.targets.table import get_target

    if get_target(sweep.target).is_host:
        raise UserError("sweep measures energy in the emulator: choose a Cortex-M --target (stm32, stm32f407, ...)")
    if sweep.goal is not None and sweep.goal not in GOALS:
        raise UserError(f"--goal {sweep.goal}: choose {', '.join(GOALS)}")
    if sweep.max_drop is not None and not 0.0 <= sweep.max_drop <= 1.0:
        raise UserError(f"--max-drop {sweep.max_drop}: give a fraction in [0, 1]")
    for flag, value in (("--max-ram", sweep.max_ram), ("--max-flash", sweep.max_flash), ("--jobs", sweep.jobs)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: give a number above 0")
    if sweep.goal is None and any(v is not None for v in (sweep.max_drop, sweep.max_ram, sweep.max_flash)):
        raise UserError("--max-drop, --max-ram and --max-flash constrain --goal: give --goal too")


def sweep(model: str, out_dir: str | os.PathLike, options: SweepOptions) -> dict:
    """Run (or take from the cache) every grid point; write DIR/sweep.json, pareto.png and report.html."""
    from mcu_attn.api import import_model
    from mcu_attn.data import check_stack, load_stack
    from mcu_attn.progress import progress

    _check(options)
    out = Path(out_dir)
    check_sweep_dir(out)
    graph = import_model(model)
    check_stack(graph, load_stack(options.calib, "calibration"), "calibration")
    evaluation_data(graph, options)
    grid = parse_grid(options.grid, default_grid(graph))
    todo = points(grid, str(Path(options.calib).resolve()))
    files = {name: _digest(path) for name, path in (("model", model), ("calib", options.calib),
                                                    ("data", options.data), ("labels", options.labels))}
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `mcu-attn sweep`; a later sweep with the same -o reuses its points\n")
    keyed = [(point_key(files, options.target, o), o) for o in todo]
    results: dict[str, dict] = {}
    for key, _ in keyed:
        cached = out / "points" / key / "result.json"
        if cached.is_file():
            results[key] = json.loads(cached.read_text())
    missing = [(key, o) for key, o in keyed if key not in results]
    jobs = options.jobs or os.cpu_count() or 1
    with progress("sweep", total=len(missing), unit="points") as advance:
        with ProcessPoolExecutor(max_workers=min(jobs, max(1, len(missing))),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:  # no fork under threads
            futures = {pool.submit(_worker, (str(model), options, o, str(out / "points" / key), key)): (key, o)
                       for key, o in missing}
            for future in as_completed(futures):
                key, point = futures[future]
                try:
                    result = future.result()[1]
                except Exception as error:  # the worker process itself died (BrokenProcessPool)
                    result = {"config": config(point), "describe": describe(point),
                              "error": f"worker process failed ({type(error).__name__})"}
                results[key] = result
                advance(note=result["describe"] + (": failed" if "error" in result else ""))
    fresh = {key for key, _ in missing}
    ordered = [{**results[key], "key": key, "cached": key not in fresh} for key, _ in keyed]
    mark_pareto(ordered)
    payload = {"model": str(model), "target": options.target, "calib": options.calib, "data": options.data,
               "labels": options.labels, "grid": grid, "points": ordered, "baseline": None, "recommended": None,
               "computed": len(missing), "cached": len(keyed) - len(missing),
               "estimate_note": "energy_uj and cycles are estimates of one emulated inference (docs/cycle-model.md), "
                                "for a point with token pruning or early exit the mean per inference over --data "
                                "by exit class, for a streaming point the mean per step (energy_per); "
                                "accuracy is the reference's on --data; bit_exact: the firmware's output matches "
                                "the reference on the profiled sample bit for bit (float builds, whose C kernels "
                                "round differently from numpy, also have within_tolerance and max_abs_error)"}
    base = baseline(ordered)
    payload["baseline"] = base["key"] if base else None
    if options.goal:
        best, why = recommend(ordered, options)
        payload["recommended"] = best and {"key": best["key"], "reason": why, "command": build_command(
            str(model), options.target, options.calib, next(o for k, o in keyed if k == best["key"]))}
        payload["recommendation_note"] = why
    from mcu_attn.report.html import sweep_html
    from mcu_attn.report.plots import pareto_png

    png = pareto_png(ordered)
    if png is not None:
        (out / "pareto.png").write_bytes(png)
    _write_json(out / "sweep.json", payload)
    (out / "report.html").write_text(sweep_html(payload, png, _selected(out, ordered, payload)))
    return payload


def _selected(out: Path, points: list[dict], payload: dict) -> dict | None:
    """The point report.html details: the recommended one, else the front's least energy."""
    key = (payload.get("recommended") or {}).get("key")
    front = sorted((p for p in points if p.get("pareto")), key=lambda p: p["energy_uj"])
    chosen = next((p for p in points if p["key"] == key), front[0] if front else None)
    if chosen is None:
        return None
    report = out / "points" / chosen["key"] / "build" / "report.json"
    return {"describe": chosen["describe"], "report": json.loads(report.read_text())} if report.is_file() else None


def format_table(payload: dict, out_dir: str) -> str:
    """The console table: every point, the front marked, then the recommendation and the files."""
    lines = [f"{'point':<44} {'accuracy':>8} {'energy uJ':>10} {'cycles':>11} {'instructions':>12} {'flash B':>9} "
             f"{'RAM B':>7}  front"]
    for p in payload["points"]:
        if "error" in p:
            lines.append(f"{shown(p):<44} failed: {p['error']}")
            continue
        energy = f"{p['energy_uj']:,.1f}" if p.get("energy_uj") is not None else "n/a"
        lines.append(f"{shown(p):<44} {p['accuracy']:>8.4f} {energy:>10} {p['cycles']:>11,} "
                     f"{p['instructions']:>12,} {p['flash_bytes']:>9,} {p['ram_bytes']:>7,}  "
                     f"{'*' if p['pareto'] else ''}")
    lines.append(f"{len(payload['points'])} points ({payload['computed']} computed, {payload['cached']} cached); "
                 f"* marks the Pareto front (accuracy against estimated energy)")
    recommended = payload.get("recommended")
    if recommended:
        chosen = next(p for p in payload["points"] if p["key"] == recommended["key"])
        lines.append(f"recommended ({recommended['reason']}): {shown(chosen)}, accuracy "
                     f"{chosen['accuracy']:.4f}, ~{chosen['energy_uj']:,.1f} uJ")
        lines.append(f"  {recommended['command']}")
    elif payload.get("recommendation_note"):
        lines.append(f"no recommendation: {payload['recommendation_note']}")
    lines.append(f"wrote {out_dir}/sweep.json, {out_dir}/report.html"
                 + (f", {out_dir}/pareto.png" if (Path(out_dir) / "pareto.png").is_file() else
                    " (no pareto.png: plots need the [plots] extra)"))
    return "\n".join(lines)
