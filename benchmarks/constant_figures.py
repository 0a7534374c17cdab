"""The tables of constants in docs/, written from the tables the code reads.

docs/targets.md restates the target table (`mcu_attn/targets/table.py`) and docs/cycle-model.md the cycle model's
per-core costs (`mcu_attn/sim/cycles.py`) and each board's flash timing. These functions print those tables from
the same objects the build and the estimate use, so a constant changed in the code shows up as a stale figure
(`python benchmarks/readme_figures.py --check`), never as a document that quietly disagrees. readme_figures.py
registers each as a `cheap` figure.
"""

from __future__ import annotations

from mcu_attn.sim.cycles import CORES, CoreTiming, flash_timing
from mcu_attn.targets.table import TARGETS, Target

from figure_text import table


def _size(count: int) -> str:
    return f"{count // (1 << 20)} MB" if count % (1 << 20) == 0 else f"{count // 1024} KB"


def _name(target: Target) -> str:
    aliases = ", ".join(f"`{alias}`" for alias in target.aliases)
    return f"`{target.name}`" + (f" ({aliases})" if aliases else "")


def _core(target: Target) -> str:
    return f"{target.core.replace('cortex-m', 'Cortex-M')}, {target.fpu or 'no FPU'}"


def _verified(target: Target, *fields: str) -> str:
    """'not verified' when the citation of any field says so (the table marks recollections that way)."""
    unverified = [field for field in fields if "not verified" in target.cite(field).lower()]
    return "**not verified**: " + ", ".join(unverified) if unverified else "cited"


def _parts() -> list[Target]:
    return [t for t in TARGETS if not t.is_host and t.run_current_a is not None]


def _generic() -> list[Target]:
    return [t for t in TARGETS if not t.is_host and t.run_current_a is None]


def _memory(target: Target) -> list[str]:
    return [f"{_size(target.flash_bytes)} @0x{target.flash_base:08X}",
            f"{_size(target.sram_bytes)} @0x{target.sram_base:08X}",
            f"{target.console_uart} @0x{target.console_uart_base:08X}", f"`{target.qemu_machine or '–'}`"]


def targets_parts() -> str:
    rows = [[_name(t), _core(t), f"{t.clock_hz / 1e6:g} MHz", *_memory(t), f"`{t.renode_platform or '–'}`",
             t.extra_ram] for t in _parts()]
    return table(["target", "core, FPU", "clock", "flash", "SRAM (linker region)", "console UART", "QEMU",
                  "Renode platform", "other RAM"], rows)


def targets_energy() -> str:
    rows = []
    for t in _parts():
        rows.append([_name(t), f"{t.run_current_a * 1e3:g} mA", f"{t.voltage_v:g}", str(t.flash_wait_states),
                     t.flash_cache.description, _verified(t, "run_current_a", "voltage_v", "flash_wait_states")])
    return table(["target", "run current", "V", "wait states", "flash cache", "citations"], rows)


def targets_generic() -> str:
    return table(["target", "core, FPU", "clock", "flash", "SRAM", "console", "QEMU"],
                 [[_name(t), _core(t), f"{t.clock_hz / 1e6:g} MHz", *_memory(t)] for t in _generic()])


# class, CoreTiming fields (the first is the cost, the others what is added), what it covers, the M4 source
_CLASSES = (
    ("alu", ("alu",), "data processing, moves, compares, shifts, saturation, extend/pack, SIMD add/sub, bit fields, "
     "`IT`", "Cortex-M4 TRM (ARM DDI 0439), Table 3-1"),
    ("mul", ("mul",), "`MUL`, `SMULxy`, `SMULWx`, `SMMUL`, `SMULL`/`UMULL`, `SMUAD`", "Table 3-1"),
    ("mac", ("mac",), "`MLA`, `MLS`, `SMLAxy`, `SMLAD(X)`, `SMLSD`, `SMLAL*`, `UMLAL`, `SMMLA`, `USADA8`",
     "Table 3-1"),
    ("div", ("div",), "`SDIV`, `UDIV`", "Table 3-1 gives 2–12 (early termination): the midpoint"),
    ("load", ("load", "load_double_extra"), "`LDR*`, `LDRD`, `VLDR`, `TBB`/`TBH` (+ for `LDRD`/`VLDR.64`)",
     "Table 3-1 (LDR 2, LDRD 1+N)"),
    ("load_pipelined", ("load_pipelined_saving",), "saved by a single load right after a single load whose result "
     "is not its address", "TRM load/store timing notes"),
    ("store", ("store", "store_double_extra"), "`STR*`, `STRD`, `VSTR` (+ for doubles)",
     "TRM notes: a single store is one cycle (write buffer)"),
    ("load/store_multiple", ("multiple_base", "multiple_per_register"), "`LDM`/`POP`/`VLDM`/`VPOP`, "
     "`STM`/`PUSH`/`VSTM`/`VPUSH`: base + per register (a D register counts 2)", "Table 3-1 (1 + N)"),
    ("branch", ("branch",), "`B`, `BL`, `BX`, `BLX`, `CBZ`, `CBNZ`", "Table 3-1"),
    ("taken", ("refill",), "added to any taken PC write (P, the pipeline refill)", "Table 3-1: P is 1–3, the midpoint"),
    ("fp", ("fp",), "`VADD`, `VSUB`, `VMUL`, `VCVT`, `VCMP`, `VMOV`, `VABS`, `VNEG`, …",
     "Cortex-M4 TRM Table 7-1 (FPU)"),
    ("fp_mac", ("fp_mac",), "`VMLA`, `VMLS`, `VFMA`, `VFMS`, `VNMLA`, …", "Table 7-1"),
    ("fp_div", ("fp_div",), "`VDIV`, `VSQRT`", "Table 7-1"),
    ("other", ("other",), "`NOP`, barriers, hints, `MRS`/`MSR`, `BKPT`", "Table 3-1 (barrier minimum)"),
    ("issue factor", ("issue_factor",), "instructions issued per cycle: the sum above is divided by it", "–"),
)


def _cost(timing: CoreTiming, fields: tuple[str, ...]) -> str:
    first, *more = (getattr(timing, field) for field in fields)
    return " + ".join(f"{value:g}" for value in (first, *more))


def core_costs() -> str:
    cores = sorted(CORES)
    rows = [[f"`{name}`", what, *(_cost(CORES[core], fields) for core in cores), source]
            for name, fields, what, source in _CLASSES]
    return table(["class", "what", *cores, "source (Cortex-M4)"], rows)


def flash_timings() -> str:
    rows = []
    for t in TARGETS:
        if t.is_host or t.flash_cache is None:
            continue
        timing = flash_timing(t)
        rows.append([f"`{t.name}`", f"{t.clock_hz / 1e6:g} MHz", str(timing.wait_states), t.flash_cache.description,
                     str(timing.fetch_lines), str(timing.data_lines), f"{timing.line_bytes} B",
                     "yes" if timing.prefetch else "no",
                     _verified(t, "flash_wait_states") if t.flash_wait_states is not None else "–"])
    return table(["target", "clock", "wait states", "what the start-up enables", "fetch lines", "data lines",
                  "line", "prefetch", "wait-state citation"], rows)


# figure name -> (document, function)
FIGURES = {
    "targets-parts": ("docs/targets.md", targets_parts),
    "targets-energy": ("docs/targets.md", targets_energy),
    "targets-generic": ("docs/targets.md", targets_generic),
    "core-costs": ("docs/cycle-model.md", core_costs),
    "flash-timings": ("docs/cycle-model.md", flash_timings),
}
