"""`mcu-attn simulate`: run a build's firmware on samples, compare with the numpy reference, profile one sample.

1. Read DIR (build_dir.BuildDir): target, I/O quantization, layer symbols, ELF; rebuild the reference graph.
2. Correctness: every sample through the chosen engine (Unicorn, QEMU, or Renode), outputs compared with the
   reference: `bit_exact` for integer builds, within `FLOAT_TOLERANCE` for float builds; `accuracy` /
   `reference_accuracy` with labels. With Unicorn and QEMU, the profiled sample's output comes from its profiled
   run. A sample that faults or times out is listed in `failed_samples` (index and error) and the others still
   run (samples.py); `bit_exact` is then false and the comparison and accuracy cover the samples that completed.
3. Profile the first sample that runs (`profiled_sample`, normally 0): executed blocks -> instruction classes
   per layer (profile.py), then the cycle model
   (cycles.py) and the energy model (energy.py). Instructions are those of one `ma_harness_infer` call:
   start-up and I/O are excluded. Cycles and energy are ESTIMATES (see docs/cycle-model.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.progress import progress
from mcu_attn.sim import cycles as cycle_model
from mcu_attn.sim import dynamic, stream
from mcu_attn.sim.build_dir import FLOAT_TOLERANCE, BuildDir
from mcu_attn.sim.elf import load_firmware
from mcu_attn.sim.energy import energy_uj, power_mw
from mcu_attn.sim.profile import COUNT_FIELDS, Profile
from mcu_attn.sim.samples import SampleRuns
from mcu_attn.sim.unicorn import INFER_TIMEOUT_S, UnicornRunner

ENGINES = ("unicorn", "qemu", "renode")
DEFAULT_SAMPLES = 16
ESTIMATE_NOTE = ("cycles and energy are estimates: instruction counts from the emulator, cycles from a per-core "
                 "timing table and a flash wait-state/cache model (docs/cycle-model.md), energy = cycles / clock x "
                 "datasheet run current x supply voltage; no emulator used here is cycle-accurate")


@dataclass(frozen=True)
class SimOptions:
    engine: str = "unicorn"
    limit: int | None = None
    cycle_model: str | None = None    # JSON overrides of the cycle model constants
    model: str | None = None          # overrides report.json's model path
    calib: str | None = None          # overrides report.json's calib path
    timeout_s: int | None = None      # host seconds one inference may take in Unicorn (None: inference_timeout)
    profile_per_class: int = 1        # samples profiled per exit class for the mean (sim/dynamic.py)


INSTRUCTIONS_PER_MAC_BOUND = 50   # 4x the portable float kernels' ~12.5 instructions per MAC (docs/cycle-model.md)
SLOWEST_RATE = 1_000_000          # emulated instructions per host second of the slowest run: Python profiling hooks


def inference_timeout(macs: int) -> int:
    """The default --timeout: long enough for a healthy build of `macs` MACs on the slowest path, at least
    INFER_TIMEOUT_S; it only guards against firmware that never returns."""
    return max(INFER_TIMEOUT_S, -(-int(macs) * INSTRUCTIONS_PER_MAC_BOUND // SLOWEST_RATE))


def _compare(build: BuildDir, got: np.ndarray, expected: np.ndarray) -> dict:
    if build.output.dtype == "int8":
        same = [bool(np.array_equal(g, e)) for g, e in zip(got, expected)]
        return {"bit_exact": all(same), "mismatched_samples": int(len(same) - sum(same)),
                "comparison": "bit for bit"}
    difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    bound = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(expected.astype(np.float64)))
    within = [bool(np.all(d <= b)) for d, b in zip(difference, bound)]
    return {"bit_exact": bool(np.array_equal(got, expected)), "within_tolerance": all(within),
            "mismatched_samples": int(len(within) - sum(within)),
            "max_abs_error": float(difference.max()) if difference.size else 0.0,
            "comparison": f"float build: |device - numpy| <= {FLOAT_TOLERANCE:g} x max(1, |numpy|)"}


def _row_entries(build: BuildDir, profile: Profile, estimate, target) -> list[dict]:
    macs = build.layer_macs()
    total_cycles = estimate.total or 1.0
    rows = []
    for index, (name, symbol, op) in enumerate(zip(profile.names, profile.symbols, profile.ops)):
        counts = {field: int(profile.counts[index, i]) for i, field in enumerate(COUNT_FIELDS)}
        cycles = float(estimate.rows[index])
        entry = {"name": name, "symbol": symbol or "ma_harness_infer", "op": op,
                 "instructions": counts["instructions"], "cycles": int(round(cycles)),
                 "energy_uj": energy_uj(cycles, target), "share": cycles / total_cycles,
                 "macs": macs.get(symbol, 0) if symbol else 0,
                 "flash_reads": counts["flash_reads"], "sram_reads": counts["reads"] - counts["flash_reads"],
                 "writes": counts["writes"], "taken_branches": counts["taken"],
                 "flash_wait_cycles": int(round(float(estimate.flash_data[index] + estimate.flash_fetch[index])))}
        rows.append(entry)
    return rows


def hot_functions(profile: Profile, firmware, count: int = 10) -> list[dict]:
    """The functions (by ELF symbol) that executed the most instructions, kernels and libgcc helpers included."""
    functions = sorted((address, name) for name, address in firmware.symbols.items()
                       if firmware.sizes.get(name) and name in firmware.functions)
    if not functions:
        return []
    starts = np.array([address for address, _ in functions], np.int64)
    owner = np.searchsorted(starts, profile.block_starts, side="right") - 1
    executed = profile.block_runs * profile.block_instructions
    totals = np.bincount(np.clip(owner, 0, None), weights=executed, minlength=len(functions))
    total = float(executed.sum()) or 1.0
    ranked = np.argsort(-totals)[:count]
    return [{"function": functions[i][1], "instructions": int(totals[i]), "share": float(totals[i] / total)}
            for i in ranked if totals[i] > 0]


def estimate_payload(build: BuildDir, profile: Profile, overrides: dict) -> dict:
    """instructions, cycles, energy and the per-layer table of one profiled inference."""
    target = build.target
    timing = cycle_model.core_timing(target.core, overrides)
    flash = cycle_model.flash_timing(target, overrides)
    estimate = cycle_model.estimate(profile, timing, flash, (target.flash_base, target.flash_base + target.flash_bytes))
    instructions = profile.total("instructions")
    cycles = estimate.total
    macs = int(build.report.get("macs") or 0)
    classes = {field: profile.total(field) for field in COUNT_FIELDS if field != "instructions"}
    clock = float(target.clock_hz)
    return {
        "instructions": instructions,
        "cycles": int(round(cycles)),
        "energy_uj": energy_uj(cycles, target),
        "time_ms": cycles / clock * 1e3,
        "macs": macs,
        "instructions_per_mac": instructions / macs if macs else None,
        "cycles_per_mac": cycles / macs if macs else None,
        "cycle_breakdown": {"core": int(round(float(estimate.core.sum()))),
                            "flash_data_wait": int(round(float(estimate.flash_data.sum()))),
                            "flash_fetch_wait": int(round(float(estimate.flash_fetch.sum())))},
        "memory": {"data_reads": classes["reads"], "flash_reads": classes["flash_reads"],
                   "sram_reads": classes["reads"] - classes["flash_reads"], "data_writes": classes["writes"],
                   "flash_data_misses": int(estimate.data_misses.sum()),
                   "flash_fetch_misses": int(estimate.fetch_misses.sum())},
        "classes": classes,
        "layers": _row_entries(build, profile, estimate, target),
        "estimate": {"note": ESTIMATE_NOTE, "clock_hz": clock, "power_mw": power_mw(target),
                     **estimate.assumptions()},
    }


def _raw(sample: np.ndarray) -> bytes:
    return np.ascontiguousarray(sample).tobytes()


def _each(infer, samples: list[bytes], engine: str) -> list[bytes]:
    """`infer` on every sample, with progress on stderr."""
    outputs = []
    with progress(f"simulating ({engine})", total=len(samples), unit="samples") as advance:
        for sample in samples:
            outputs.append(infer(sample))
            advance()
    return outputs


def unicorn_outputs(build: BuildDir, firmware, samples: np.ndarray, timeout_s: int = INFER_TIMEOUT_S) -> list[bytes]:
    """The raw output bytes of every sample, run in one Unicorn instance without hooks (progress on stderr)."""
    runner = UnicornRunner(firmware, build.target, timeout_s)
    return _each(runner.infer, [_raw(s) for s in samples], "unicorn")


def _mean(build: BuildDir, runs: SampleRuns, samples: list[bytes], done: list[int], layers, overrides: dict,
          first: dict, exits: np.ndarray | None, options: SimOptions) -> dict:
    """Instructions, cycles and energy per inference averaged over the samples that ran, by exit class
    (sim/dynamic.py)."""
    def measure(position: int) -> dict:
        profile = runs.runner.profile(samples[done[position]], layers, runs.profile_timeout_s)[1]
        estimate = estimate_payload(build, profile, overrides)
        return {key: estimate[key] for key in ("instructions", "cycles", "energy_uj")}

    classes = exits[done] if exits is not None else np.zeros(len(done), np.int64)
    known = {done.index(runs.profiled): {key: first[key] for key in ("instructions", "cycles", "energy_uj")}}
    return dynamic.mean_over_classes(classes, known, measure, options.profile_per_class)


def _simulate_stream(build: BuildDir, firmware, data: np.ndarray, labels: np.ndarray | None, overrides: dict,
                     options: SimOptions) -> dict:
    """A --streaming build on a stream of positions (sim/stream.py)."""
    if options.engine != "unicorn":
        raise UserError(f"--engine {options.engine}: a stream of positions runs in unicorn (the default)")
    if labels is not None and len(labels) != len(data):
        raise UserError(f"--labels: {len(labels)} labels for {len(data)} positions")
    if labels is not None:
        from mcu_attn.data import check_labels

        check_labels(labels, build.output.shape[-1])
    if options.limit:
        data, labels = data[:options.limit], labels[:options.limit] if labels is not None else None
    if len(data) < build.input.shape[1]:
        raise UserError(f"--data: a stream of {len(data)} positions is shorter than the model's window "
                        f"({build.input.shape[1]}), which it is compared with")
    runner = UnicornRunner(firmware, build.target, options.timeout_s or inference_timeout(build.report.get("macs") or 0))
    payload = {"engine": "unicorn", "target": build.target.name, "core": build.target.core, "bits": build.bits,
               "samples": int(len(data)), "data": "--data (a stream of positions)"}
    payload.update(stream.simulate_stream(build, runner, data, labels, overrides,
                                          lambda profile: estimate_payload(build, profile, overrides),
                                          options.profile_per_class))
    return payload


def simulate(directory: str, data: np.ndarray | None = None, labels: np.ndarray | None = None,
             options: SimOptions = SimOptions(), compilation=None) -> dict:
    """`compilation`: the build's own (mcu_attn.compiler), when the caller has it (build, sweep): the reference
    is then taken from it instead of replaying report.json's options."""
    if options.engine not in ENGINES:
        raise UserError(f"--engine {options.engine}: choose {', '.join(ENGINES)}")
    if options.timeout_s is not None and options.timeout_s < 1:
        raise UserError(f"--timeout {options.timeout_s}: must be at least 1 second")
    if options.limit is not None and options.limit < 1:
        raise UserError(f"--limit {options.limit}: must be at least 1")
    build = BuildDir(directory, options.model, options.calib, compilation)
    overrides = cycle_model.load_overrides(options.cycle_model)
    firmware = load_firmware(build.elf)
    timeout_s = options.timeout_s or inference_timeout(build.report.get("macs") or 0)
    engine = None  # QEMU / Renode refuse a target or a missing binary before any long step
    if options.engine == "qemu":
        from mcu_attn.sim.qemu import QemuRunner

        engine = QemuRunner(build, firmware, timeout_s)
    elif options.engine == "renode":
        from mcu_attn.sim.renode import RenodeRunner

        engine = RenodeRunner(build, firmware)
    if data is not None and stream.is_stream_data(build, data):
        return _simulate_stream(build, firmware, data, labels, overrides, options)
    source = "--data"
    if data is None:
        if labels is not None:
            raise UserError("--labels needs --data (the labels of those samples)")
        data, source = build.default_samples(options.limit or DEFAULT_SAMPLES)
    if labels is not None and len(labels) != len(data):
        raise UserError(f"--labels: {len(labels)} labels for {len(data)} samples")
    if labels is not None:
        from mcu_attn.data import check_labels

        check_labels(labels, build.output.shape[-1])
    if options.limit:
        data = data[:options.limit]
        labels = labels[:options.limit] if labels is not None else None
    prepared = build.prepare(data)
    if build.input.nbytes != firmware.sizes.get("ma_harness_input", build.input.nbytes):
        raise UserError(f"{build.elf}: ma_harness_input holds {firmware.sizes['ma_harness_input']} bytes, "
                        f"report.json's input needs {build.input.nbytes}")
    expected, expected_exits = dynamic.reference(build, prepared)

    payload: dict = {"engine": options.engine, "target": build.target.name, "core": build.target.core,
                     "bits": build.bits, "samples": int(len(prepared)), "data": source}
    if options.engine == "qemu":
        payload["machine"] = engine.machine
    layers = build.layers(firmware.symbols)
    profile_timeout_s = max(timeout_s, inference_timeout(build.report.get("macs") or 0))
    runs = SampleRuns(firmware, build.target, timeout_s, profile_timeout_s, dynamic.exit_symbol(build))
    raw, profile, extra = runs.run(options.engine, engine, [_raw(s) for s in prepared], layers)
    done = sorted(raw)
    got = np.stack([build.decode(raw[i]) for i in done])
    payload.update(_compare(build, got, expected[done]))
    payload.update(profiled_sample=runs.profiled, completed_samples=len(done), failed_samples=runs.failed())
    if runs.failures:  # a sample without outputs matches nothing
        payload["bit_exact"] = False
        payload.update({"within_tolerance": False} if "within_tolerance" in payload else {})
    if labels is not None:
        from mcu_attn.data import accuracy

        payload["accuracy"] = accuracy(build.dequantize(got), labels[done])
        payload["reference_accuracy"] = accuracy(build.dequantize(expected[done]), labels[done])
    else:
        payload["accuracy"] = payload["reference_accuracy"] = None
    payload.update(estimate_payload(build, profile, overrides))
    payload["functions"] = hot_functions(profile, firmware)
    samples = [_raw(s) for s in prepared]
    payload["mean"] = _mean(build, runs, samples, done, layers, overrides, payload, expected_exits, options)
    if expected_exits is not None and runs.exits:
        payload["mean"].update(dynamic.compare_exits([runs.exits[i] for i in done], expected_exits[done]))
    payload.update(extra)
    return payload
