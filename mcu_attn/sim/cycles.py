"""Cycle ESTIMATES from instruction counts: a per-core timing table plus a flash wait-state model.

Emulators (Unicorn, QEMU, Renode) are functional: they execute instructions but do not model time. This module
turns the counts of `profile.Profile` into estimated cycles; docs/cycle-model.md explains every constant and
where it comes from. In short:

  core cycles  = sum over timing classes of count x cost        (CoreTiming: DDI 0439 Table 3-1 / 7-1 for M4)
                 - 1 per load that pipelines behind a load       (TRM: "LDR ... pipelined when possible")
                 + refill per taken branch / PC write            (the "P" of the TRM table)
                 / issue factor                                  (1 on M4; M7 dual issue)
  flash cycles = wait states x (data-read misses + instruction-fetch misses) of a small LRU model of the
                 target's flash cache / ART accelerator (FlashTiming), fed with the real address streams

Every number is an estimate: no emulator here runs a cycle-accurate pipeline or bus model. The constants are
frozen dataclasses; `load_overrides(path)` reads a JSON file to calibrate them against measurements
(`{"cores": {"cortex-m4": {"refill": 3}}, "flash": {"stm32f407": {"data_lines": 8}}}`).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.sim.profile import Profile


@dataclass(frozen=True)
class CoreTiming:
    """Cycles per instruction class on one core (zero-wait-state memory)."""
    core: str
    alu: float = 1.0
    mul: float = 1.0
    mac: float = 1.0
    div: float = 7.0                  # SDIV/UDIV take 2-12 cycles (early termination): the midpoint
    load: float = 2.0
    load_pipelined_saving: float = 1.0  # a load right after a load, not using its result as address: 1 cycle
    load_double_extra: float = 1.0    # LDRD / VLDR.64: 1 + N with N = 2
    store: float = 1.0                # the write buffer makes a single store 1 cycle
    store_double_extra: float = 1.0
    multiple_base: float = 1.0        # LDM/STM/PUSH/POP/VLDM/VSTM: 1 + N
    multiple_per_register: float = 1.0
    branch: float = 1.0               # a branch instruction that falls through
    refill: float = 2.0               # "P", pipeline refill after a taken branch or PC write: 1-3, midpoint
    fp: float = 1.0                   # VADD, VMUL, VCVT, VCMP, VMOV, ...
    fp_mac: float = 3.0               # VMLA, VFMA, ...
    fp_div: float = 14.0              # VDIV, VSQRT
    other: float = 1.0                # NOP, IT-less hints, barriers (minimum), system register moves
    issue_factor: float = 1.0         # instructions issued per cycle on the issue-limited part
    source: str = ""


@dataclass(frozen=True)
class FlashTiming:
    """How flash wait states reach the core on one part."""
    target: str
    wait_states: int                  # from the target table (clock-dependent; the target's clock)
    fetch_lines: int                  # instruction cache / ART lines (0: none); these four: target.flash_cache
    data_lines: int                   # data cache lines for flash reads (0: none)
    line_bytes: int
    prefetch: bool                    # sequential instruction fetch is prefetched: only jumps to uncached lines stall
    source: str = ""


M4_SOURCE = ("ARM Cortex-M4 TRM (DDI 0439) Table 3-1 processor instruction set summary and Table 7-1 FPU "
             "instruction set; load/store pipelining as in the Cortex-M3/M4 TRM notes to the same table")
CORES: dict[str, CoreTiming] = {
    "cortex-m4": CoreTiming("cortex-m4", source=M4_SOURCE),
    # Armv8-M mainline, same 3-stage in-order pipeline class as the M4: the M4 table is used unchanged.
    "cortex-m33": CoreTiming("cortex-m33", source="assumed equal to the Cortex-M4 table (" + M4_SOURCE + ")"),
    # Cortex-M7: 6-stage, dual-issue, branch prediction, 64-bit load path. ARM publishes no per-instruction
    # table; these costs are approximations (docs/cycle-model.md), the issue factor the main knob.
    "cortex-m7": CoreTiming("cortex-m7", div=7.0, load=1.0, load_pipelined_saving=0.0, load_double_extra=0.0,
                            store_double_extra=0.0, multiple_per_register=0.5, refill=1.0, fp_mac=1.0,
                            fp_div=14.0, issue_factor=1.3,
                            source="approximation: ARM Cortex-M7 TRM (DDI 0489) pipeline description "
                                   "(dual issue, 64-bit AXI/TCM loads, BTAC branch prediction); issue factor "
                                   "1.3 so that typical integer code lands near ARM's CoreMark/MHz ratio "
                                   "M7/M4 = 5.01/3.42"),
}

def core_timing(core: str, overrides: dict | None = None) -> CoreTiming:
    key = core.lower()
    key = key[:-1] if key.endswith("f") and key[:-1] in CORES else key
    if key not in CORES:
        raise UserError(f"core {core!r}: no cycle model (known: {', '.join(sorted(CORES))})")
    timing = CORES[key]
    return _apply(timing, (overrides or {}).get("cores", {}).get(key), f"cores.{key}")


def flash_timing(target, overrides: dict | None = None) -> FlashTiming:
    """The flash wait states and the cache that hides them, both from the target table: what the generated
    start-up configures (targets/boards.py). A target without a flash cache fact cannot be estimated."""
    cache = target.flash_cache
    if cache is None:
        raise UserError(f"target {target.name}: the target table has no flash cache fact; cannot estimate cycles")
    wait_states = target.flash_wait_states
    if wait_states is None and (cache.fetch_lines or cache.data_lines):
        raise UserError(f"target {target.name}: the target table has a flash cache but no flash wait states")
    timing = FlashTiming(target.name, int(wait_states or 0), cache.fetch_lines, cache.data_lines, cache.line_bytes,
                         cache.prefetch, cache.source)
    return _apply(timing, (overrides or {}).get("flash", {}).get(target.name), f"flash.{target.name}")


def _apply(timing, changes: dict | None, where: str):
    if not changes:
        return timing
    _check_changes(type(timing), changes, where)
    return replace(timing, **changes)


def _check_changes(kind: type, changes: dict, where: str) -> None:
    """Refuse overrides a cycle model cannot use: unknown keys, the identity fields, and values of the wrong
    type or range (costs, factors and counts are finite and non-negative; the issue factor and line size are
    positive; counts are integers; prefetch is true or false)."""
    if not isinstance(changes, dict):
        raise UserError(f"cycle model override {where}: expected an object of constants")
    types = {f.name: f.type for f in fields(kind)}
    unknown = sorted(set(changes) - set(types) | set(changes) & {"core", "target"})
    if unknown:
        raise UserError(f"cycle model override {where}: unknown keys {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(set(types) - {'core', 'target'}))})")
    for key, value in changes.items():
        kind_name = types[key]
        if kind_name == "str":
            ok = isinstance(value, str)
        elif kind_name == "bool":
            ok = isinstance(value, bool)
        elif kind_name == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= (key == "line_bytes")
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (value > 0 if key == "issue_factor" else value >= 0))
        if not ok:
            need = {"str": "text", "bool": "true or false", "int": "a whole number >= 1" if key == "line_bytes"
                    else "a whole number >= 0"}.get(kind_name, "a finite number > 0" if key == "issue_factor"
                                                   else "a finite number >= 0")
            raise UserError(f"cycle model override {where}.{key}: {json.dumps(value)} is not {need}")


def load_overrides(path: str | Path | None) -> dict:
    """The JSON overrides file, every entry checked (`_check_changes`) before any emulation runs."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"cycle model file {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"cycle model file {path}: not JSON ({getattr(err, 'msg', err)})") from None
    except OSError as err:
        raise UserError(f"cycle model file {path}: {err.strerror}") from None
    if not isinstance(data, dict) or set(data) - {"cores", "flash"}:
        raise UserError(f"cycle model file {path}: expected an object with 'cores' and/or 'flash'")
    from mcu_attn.targets.table import TARGETS

    parts = {"cores": (CoreTiming, set(CORES), "core"),
             "flash": (FlashTiming, {t.name for t in TARGETS if not t.is_host}, "target")}
    for section, (kind, known, what) in parts.items():
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            raise UserError(f"cycle model file {path}: {section!r} must be an object keyed by {what} name")
        for name, changes in entries.items():
            if name not in known:
                raise UserError(f"cycle model file {path}: {section}.{name}: unknown {what} "
                                f"(known: {', '.join(sorted(known))})")
            _check_changes(kind, changes, f"{section}.{name}")
    return data


# ---- the flash cache model ---------------------------------------------------------------------------------

def _lru_misses(lines: np.ndarray, capacity: int, sequential_free: bool = False) -> np.ndarray:
    """Per access: 1 if `lines[i]` misses a fully associative LRU cache of `capacity` lines (0: no cache, every
    new line misses). Repeats of the line just used always hit (the line buffer). With `sequential_free`, a
    miss on the line right after the previous one costs nothing (the prefetcher fetched it)."""
    misses = np.zeros(len(lines), np.int8)
    if not len(lines):
        return misses
    change = np.flatnonzero(np.diff(lines, prepend=lines[0] - 1) != 0)   # first access of each run
    cache: OrderedDict[int, None] = OrderedDict()
    previous = None
    run_lines = lines[change].tolist()
    flags = []
    for line in run_lines:
        if line in cache:
            cache.move_to_end(line)
            flags.append(0)
        else:
            flags.append(0 if sequential_free and previous is not None and line == previous + 1 else 1)
            if capacity:
                cache[line] = None
                if len(cache) > capacity:
                    cache.popitem(last=False)
        previous = line
    misses[change] = np.array(flags, np.int8)
    return misses


def flash_misses(profile: Profile, flash: FlashTiming, flash_range: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(data-read misses, instruction-fetch misses) per profile row. The replay runs in the native helper
    where it is built (sim/native.py), else in `_lru_misses`; both give the same misses."""
    from mcu_attn.sim import native

    rows = len(profile.names)
    low, high = flash_range
    base = low // flash.line_bytes
    span = (high - 1) // flash.line_bytes - base + 1
    data = np.zeros(rows, np.int64)
    if len(profile.flash_addresses):
        if native.available():
            data = native.data_misses(profile, flash.line_bytes, base * flash.line_bytes, span, flash.data_lines, rows)
        else:
            missed = _lru_misses(profile.flash_addresses.astype(np.int64) // flash.line_bytes, flash.data_lines)
            data = np.bincount(profile.flash_rows, weights=missed, minlength=rows).astype(np.int64)
    fetch = np.zeros(rows, np.int64)
    starts, ends = profile.block_starts, profile.block_ends
    if len(profile.code_order):
        in_flash = (starts >= low) & (starts < high)
        first, last = starts // flash.line_bytes, np.maximum(ends - 1, starts) // flash.line_bytes
        if native.available():
            first, last = np.where(in_flash, first - base, 0), np.where(in_flash, last - base, -1)  # -1: none
            fetch = native.fetch_misses(profile, first, last, max(span, int(last.max()) + 1), flash.fetch_lines,
                                        flash.prefetch, rows)
        else:
            order = profile.code_order.astype(np.int64)
            spans = np.where(in_flash, last - first + 1, 0)[order]
            block_of = np.repeat(np.arange(len(order)), spans)
            offsets = np.arange(len(block_of)) - np.repeat(np.cumsum(spans) - spans, spans)
            lines = first[order][block_of] + offsets
            missed = _lru_misses(lines, flash.fetch_lines, sequential_free=flash.prefetch)
            fetch = np.bincount(profile.code_rows[block_of], weights=missed, minlength=rows).astype(np.int64)
    return data, fetch


# ---- the estimate ------------------------------------------------------------------------------------------

def core_cycles(profile: Profile, timing: CoreTiming) -> np.ndarray:
    """Estimated core cycles per profile row (zero-wait-state memory)."""
    c = profile.column
    issue_limited = (c("alu") * timing.alu + c("mul") * timing.mul + c("mac") * timing.mac
                     + c("div") * timing.div
                     + c("load") * timing.load - c("load_pipelined") * timing.load_pipelined_saving
                     + c("load_double") * timing.load_double_extra
                     + c("store") * timing.store + c("store_double") * timing.store_double_extra
                     + (c("load_multiple") + c("store_multiple")) * timing.multiple_base
                     + (c("load_multiple_regs") + c("store_multiple_regs")) * timing.multiple_per_register
                     + c("branch") * timing.branch + c("fp") * timing.fp + c("fp_mac") * timing.fp_mac
                     + c("fp_div") * timing.fp_div + c("other") * timing.other)
    return issue_limited / timing.issue_factor + c("taken") * timing.refill


@dataclass(frozen=True)
class CycleEstimate:
    rows: np.ndarray          # cycles per profile row
    core: np.ndarray
    flash_data: np.ndarray    # wait-state cycles of data reads that missed the flash cache
    flash_fetch: np.ndarray   # wait-state cycles of instruction fetches that missed
    data_misses: np.ndarray
    fetch_misses: np.ndarray
    timing: CoreTiming
    flash: FlashTiming

    @property
    def total(self) -> float:
        return float(self.rows.sum())

    def assumptions(self) -> dict:
        return {"core": asdict(self.timing), "flash": asdict(self.flash)}


def estimate(profile: Profile, timing: CoreTiming, flash: FlashTiming, flash_range: tuple[int, int]) -> CycleEstimate:
    core = core_cycles(profile, timing)
    data_misses, fetch_misses = flash_misses(profile, flash, flash_range)
    flash_data = data_misses * flash.wait_states
    flash_fetch = fetch_misses * flash.wait_states
    return CycleEstimate(core + flash_data + flash_fetch, core, flash_data.astype(float), flash_fetch.astype(float),
                         data_misses, fetch_misses, timing, flash)
