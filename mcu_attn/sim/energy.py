"""Energy ESTIMATES: estimated cycles x the energy of one cycle at the target's clock and supply.

    energy_uj = cycles / clock_hz x run_current_a x voltage_v x 1e6

`run_current_a` is the datasheet's typical run-mode supply current at `clock_hz` (code running from flash,
peripherals as the datasheet's test condition states) and `voltage_v` its supply voltage; both are cited in the
target table. There is no separate memory-access term: the datasheet run currents are measured while code runs
from flash with the cache/accelerator on, so flash and SRAM traffic of ordinary code is already inside them,
and no datasheet here gives a per-access energy we could add without double counting. The result inherits the
cycle model's uncertainty and the run current's (typical, not maximum; one temperature).

Targets without silicon (the MPS2 FPGA images) have no run current: their energy is None, not a guess.
"""

from __future__ import annotations


def has_energy_model(target) -> bool:
    """False for targets without a datasheet run current (FPGA images such as the MPS2 boards)."""
    return all((target.clock_hz, target.run_current_a, target.voltage_v))


def energy_uj(cycles: float, target) -> float | None:
    """Estimated energy of `cycles` at the target's clock, run current and voltage; None without a run current."""
    if not has_energy_model(target):
        return None
    return cycles / float(target.clock_hz) * float(target.run_current_a) * float(target.voltage_v) * 1e6


def power_mw(target) -> float | None:
    if not has_energy_model(target):
        return None
    return float(target.run_current_a) * float(target.voltage_v) * 1e3
