"""The cycle model and the instruction classifier on hand-made inputs (no firmware, no emulator)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mcu_attn.errors import UserError
from mcu_attn.sim import cycles
from mcu_attn.sim.isa import FIELDS, classify
from mcu_attn.sim.profile import COUNT_FIELDS, COUNT_INDEX, PREAMBLE, Profile
from mcu_attn.targets.table import get_target

FLASH = (0x0800_0000, 0x0810_0000)


def _profile(counts: dict, flash_addresses=(), code=((0x0800_0100, 0x0800_0140),)) -> Profile:
    """One row of `counts`; the flash reads and the executed code ranges (start, end), in order, in that row."""
    row = np.zeros((1, len(COUNT_FIELDS)), np.int64)
    for name, value in counts.items():
        row[0, COUNT_INDEX[name]] = value
    row[0, COUNT_INDEX["flash_reads"]] = len(flash_addresses)
    pairs, order = np.unique(np.array(code, np.int64).reshape(-1, 2), axis=0, return_inverse=True)
    runs = np.bincount(order.reshape(-1), minlength=len(pairs))
    return Profile([PREAMBLE], [None], [None], row, np.array(flash_addresses, np.int64),
                   np.zeros(len(flash_addresses), np.int32), pairs[:, 0], pairs[:, 1], pairs[:, 1] - pairs[:, 0],
                   runs, order.reshape(-1).astype(np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int32))


BASE = {"instructions": 100, "alu": 40, "mul": 5, "mac": 10, "div": 1, "load": 20, "load_pipelined": 5,
        "store": 10, "load_multiple": 1, "load_multiple_regs": 3, "store_multiple": 1, "store_multiple_regs": 3,
        "branch": 8, "taken": 6, "fp": 2, "other": 2, "reads": 23, "writes": 13}


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_cycles_grow_with_every_count(core):
    timing = cycles.core_timing(core)
    base = float(cycles.core_cycles(_profile(BASE), timing)[0])
    assert base > 0
    for name in ("alu", "mul", "mac", "div", "load", "store", "load_multiple_regs", "store_multiple_regs",
                 "branch", "taken", "fp", "fp_mac", "fp_div", "other"):
        more = dict(BASE, **{name: BASE.get(name, 0) + 10})
        assert float(cycles.core_cycles(_profile(more), timing)[0]) > base, name


def test_m4_costs_follow_the_trm_table():
    timing = cycles.core_timing("cortex-m4")
    # LDR 2, a pipelined LDR 1, STR 1, LDM of 3 registers 1+3, a taken branch 1+P
    sequence = {"load": 2, "load_pipelined": 1, "store": 1, "load_multiple": 1, "load_multiple_regs": 3,
                "branch": 1, "taken": 1}
    assert float(cycles.core_cycles(_profile(sequence), timing)[0]) == 2 + 1 + 1 + 4 + 1 + timing.refill


def test_wait_states_raise_cycles():
    target = get_target("stm32f407")
    addresses = [0x0800_4000 + 64 * i for i in range(200)]  # 200 different cache lines: all miss
    profile = _profile(BASE, addresses)
    timing = cycles.core_timing(target.core)
    flash = cycles.flash_timing(target)
    slow = cycles.estimate(profile, timing, flash, FLASH)
    none = cycles.estimate(profile, timing, replace(flash, wait_states=0), FLASH)
    more = cycles.estimate(profile, timing, replace(flash, wait_states=flash.wait_states + 2), FLASH)
    assert none.total < slow.total < more.total
    assert slow.flash_data.sum() == 200 * flash.wait_states


def test_the_flash_cache_hides_reuse():
    flash = cycles.flash_timing(get_target("stm32f407"))   # 8 data lines of 16 bytes
    reused = [0x0800_4000 + 4 * (i % 16) for i in range(400)]   # 4 lines, read over and over
    streamed = [0x0800_4000 + 4 * i for i in range(400)]        # 100 lines, each read 4 times in a row
    misses = lambda addresses: cycles.flash_misses(_profile(BASE, addresses), flash, FLASH)[0].sum()  # noqa: E731
    assert misses(reused) == 4
    assert misses(streamed) == 100


def test_lru_and_prefetch():
    lines = np.array([1, 1, 2, 3, 1, 9, 10, 2], np.int64)
    assert cycles._lru_misses(lines, 2).tolist() == [1, 0, 1, 1, 1, 1, 1, 1]
    assert cycles._lru_misses(lines, 8).tolist() == [1, 0, 1, 1, 0, 1, 1, 0]
    assert cycles._lru_misses(lines, 8, sequential_free=True).tolist() == [1, 0, 0, 0, 0, 1, 0, 0]


def test_overrides(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"cores": {"cortex-m4": {"refill": 3}}, "flash": {"stm32f407": {"data_lines": 0}}}))
    overrides = cycles.load_overrides(path)
    assert cycles.core_timing("cortex-m4", overrides).refill == 3
    assert cycles.flash_timing(get_target("stm32f407"), overrides).data_lines == 0
    path.write_text(json.dumps({"cores": {"cortex-m4": {"refil": 3}}}))
    with pytest.raises(UserError, match="unknown keys refil"):
        cycles.core_timing("cortex-m4", cycles.load_overrides(path))
    with pytest.raises(UserError, match="no such file"):
        cycles.load_overrides(tmp_path / "missing.json")


def test_classifier():
    code = bytes.fromhex(
        "4018"        # adds r0, r0, r1
        "0868"        # ldr r0, [r1]
        "1a68"        # ldr r2, [r3]        pipelines behind the previous load
        "0268"        # ldr r2, [r0]        pipelines (r2 was loaded, r0 is the address)
        "1068"        # ldr r0, [r2]        does not: its address is the previous load's result
        "10b5"        # push {r4, lr}
        "21fb0200"    # smlad r0, r1, r2, r0
        "91fbf2f0"    # sdiv r0, r1, r2
        "00ee810a"    # vmla.f32 s0, s1, s2
        "80ee810a"    # vdiv.f32 s0, s1, s2
        "d1e90023"    # ldrd r2, r3, [r1]
        "10bd")       # pop {r4, pc}
    block = classify(code, 0x1000)
    counts = dict(zip(FIELDS, block.vector.tolist()))
    assert counts["instructions"] == 12 and block.end == 0x1000 + len(code)
    assert (counts["alu"], counts["mac"], counts["div"], counts["fp_mac"], counts["fp_div"]) == (1, 1, 1, 1, 1)
    assert (counts["load"], counts["load_pipelined"], counts["load_double"]) == (5, 2, 1)
    assert (counts["store_multiple"], counts["store_multiple_regs"]) == (1, 2)
    assert (counts["load_multiple"], counts["load_multiple_regs"]) == (1, 2)
    assert counts["reads"] == 4 + 2 + 2 and counts["writes"] == 2
    assert block.writes_pc  # pop {..., pc}


def test_classifier_dsp_extension():
    """The DSP instructions the arm/ kernels use: extends, saturation, packing and SIMD adds are single-cycle alu,
    the 16-bit and long multiply-accumulates are mac (Cortex-M4 TRM Table 3-1)."""
    code = bytes.fromhex(
        "2ffa85f7"    # sxtb16 r7, r5
        "2ffa96f6"    # sxtb16 r6, r6, ror #8
        "29fb0788"    # smlad r8, r9, r7, r8
        "11fb0200"    # smlabb r0, r1, r2, r0
        "11fb2200"    # smlatb r0, r1, r2, r0
        "00f30700"    # ssat r0, #8, r0
        "81f30801"    # usat r1, #8, r1
        "80fa81f0"    # qadd r0, r1, r0
        "c1ea0240"    # pkhbt r0, r1, r2, lsl #16
        "c2ea2140"    # pkhtb r0, r2, r1, asr #16
        "d1fa02f0"    # ssub16 r0, r1, r2
        "c2fb0301"    # smlal r0, r1, r2, r3
        "3ffa81f0")   # uxtb16 r0, r1
    counts = dict(zip(FIELDS, classify(code, 0x1000).vector.tolist()))
    assert (counts["instructions"], counts["alu"], counts["mac"], counts["other"]) == (13, 9, 4, 0)
