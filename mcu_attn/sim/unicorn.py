"""The default engine: the firmware ELF in Unicorn's Cortex-M CPU model, in-process.

1. Map the target's flash and SRAM (plus the boot alias of flash at 0 on parts that have one, any other RAM
   the ELF's sections use, the peripheral window and the private peripheral bus as plain RAM, so start-up code
   that writes clock, FPU, cache or debug registers runs), copy the PT_LOAD segments, preset the status bits the
   board bring-up waits for (PLL ready, clock switched: the target table's `bringup`), take SP and the reset
   vector from the vector table at the start of flash.
2. Run from reset until the PC reaches `ma_harness_idle` (start-up done: .data copied, .bss zeroed, `ma_init`).
   Unicorn's M-profile CPU has the FPU usable without CPACR, so an FPU-enable in start-up is harmless.
3. Per sample: write the input bytes to `ma_harness_input`, call `ma_harness_infer` with LR = `ma_harness_halt`
   (Thumb bit set), run until the PC reaches `ma_harness_halt`, read `ma_harness_output`. These runs have no
   hooks: Unicorn executes translated blocks at full speed.
4. One sample is profiled: for that run only, a block hook records every executed block (address and size) and
   a memory hook limited to the flash range records data reads from flash; `profile.build_profile` turns that
   into per-layer counts. The hooks are the C callbacks of `native.py` (no Python call per block), or Python
   callbacks where no host C compiler can build them.
Unicorn is a functional emulator: it counts and classifies instructions, and the cycles come from the model
in `cycles.py`.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import SampleFailure, UserError
from mcu_attn.sim.elf import Firmware
from mcu_attn.sim.profile import BlockCache, LayerRef, Profile, Trace, build_profile, summarise
from mcu_attn.targets.table import Target

PAGE = 0x1000
PERIPHERALS = (0x4000_0000, 0x2000_0000)      # Cortex-M peripheral region (ARMv7-M ARM B3.1)
PRIVATE_PERIPHERAL_BUS = (0xE000_0000, 0x0010_0000)
STARTUP_TIMEOUT_S = 30
INFER_TIMEOUT_S = 120

_CPU_MODELS = {"cortex-m0": "UC_CPU_ARM_CORTEX_M0", "cortex-m3": "UC_CPU_ARM_CORTEX_M3",
               "cortex-m4": "UC_CPU_ARM_CORTEX_M4", "cortex-m7": "UC_CPU_ARM_CORTEX_M7",
               "cortex-m33": "UC_CPU_ARM_CORTEX_M33"}


def cpu_model(core: str) -> int:
    from unicorn import arm_const

    key = core.lower().rstrip("f") if core.lower().endswith(("m4f", "m7f")) else core.lower()
    if key not in _CPU_MODELS:
        raise UserError(f"core {core!r}: no Unicorn CPU model (known: {', '.join(sorted(_CPU_MODELS))})")
    return getattr(arm_const, _CPU_MODELS[key])


def _page_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of (start, size) ranges, widened to whole pages."""
    spans = sorted((start // PAGE * PAGE, -(-(start + size) // PAGE) * PAGE) for start, size in ranges if size)
    merged: list[list[int]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(start, stop - start) for start, stop in merged]


class UnicornRunner:
    """One emulator instance with the firmware booted to `ma_harness_idle`."""

    def __init__(self, firmware: Firmware, target: Target, timeout_s: int = INFER_TIMEOUT_S, boot: bool = True) -> None:
        from unicorn import UC_ARCH_ARM, UC_MODE_MCLASS, UC_MODE_THUMB, Uc

        self.firmware = firmware
        self.timeout_s = timeout_s  # host seconds one inference may take in the emulator
        self.target = target
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(cpu_model(target.core))
        flash_base, flash_bytes = target.flash_base, target.flash_bytes
        boot_alias = flash_base != 0  # flash also appears at address 0 (STM32 boot from main flash)
        ranges = [(flash_base, flash_bytes), (target.sram_base, target.sram_bytes),
                  PERIPHERALS, PRIVATE_PERIPHERAL_BUS]
        if boot_alias:
            ranges.append((0, flash_bytes))
        ranges += [(region.address, region.size) for region in firmware.regions]
        ranges += list(firmware.allocated)
        for start, size in _page_ranges(ranges):
            self.uc.mem_map(start, size)
        for region in firmware.regions:
            self.uc.mem_write(region.address, region.data)
            if boot_alias and flash_base <= region.address < flash_base + flash_bytes:
                self.uc.mem_write(region.address - flash_base, region.data)
        self._preset_status_bits()
        if boot:
            self.boot()

    def _preset_status_bits(self) -> None:
        """The peripherals are plain RAM here: set the status bits the start-up's bring-up requires or waits
        for (clock ready, clock switched, regulator ready: targets/boards.py), so it runs every write."""
        if self.target.bringup is None:
            return
        for op in self.target.bringup.ops:
            if op.kind in ("require", "wait"):
                current = int.from_bytes(bytes(self.uc.mem_read(op.address, 4)), "little")
                self.uc.mem_write(op.address, (current | (op.value & op.mask)).to_bytes(4, "little"))

    # ---- running ----------------------------------------------------------------------------------------------
    def _where(self, pc: int) -> str:
        best = None
        for name, address in self.firmware.symbols.items():
            if address <= pc and (best is None or address > best[1]):
                best = (name, address)
        return f"{pc:#x}" + (f" ({best[0]}+{pc - best[1]:#x})" if best else "")

    def _run(self, start: int, stop: int, timeout_s: int, what: str) -> None:
        from unicorn import UcError
        from unicorn.arm_const import UC_ARM_REG_PC

        try:
            self.uc.emu_start(start | 1, stop, timeout=timeout_s * 1_000_000)
        except UcError as err:
            pc = self.uc.reg_read(UC_ARM_REG_PC)
            raise SampleFailure(f"{self.firmware.path}: {what} stopped at {self._where(pc)}: {err}") from None
        pc = self.uc.reg_read(UC_ARM_REG_PC)
        if pc != stop:
            raise SampleFailure(f"{self.firmware.path}: {what} did not reach {self._where(stop)} within "
                                f"{timeout_s} s (PC at {self._where(pc)})")

    def boot(self) -> None:
        """Run from reset to `ma_harness_idle` (the constructor does, unless `boot=False`)."""
        from unicorn.arm_const import UC_ARM_REG_MSP, UC_ARM_REG_SP

        base = self.target.flash_base
        stack, reset = (int(v) for v in np.frombuffer(bytes(self.uc.mem_read(base, 8)), "<u4"))
        self.uc.reg_write(UC_ARM_REG_MSP, stack)
        self.uc.reg_write(UC_ARM_REG_SP, stack)
        self._run(reset & ~1, self.firmware.address("ma_harness_idle"), STARTUP_TIMEOUT_S,
                  "start-up (reset to ma_harness_idle)")
        self.idle_sp = self.uc.reg_read(UC_ARM_REG_SP)

    def infer(self, sample: bytes, timeout_s: int | None = None) -> bytes:
        """Run `ma_harness_infer` once on the raw input bytes (within `timeout_s`, default the runner's); the raw
        output bytes. A fault or a timeout is a SampleFailure."""
        return self.call("ma_harness_infer", "ma_harness_input", sample, timeout_s)

    def call(self, function: str, buffer: str | None = None, data: bytes = b"", timeout_s: int | None = None) -> bytes:
        """Write `data` into the harness buffer `buffer`, run the harness entry `function` (void(void)) once to
        its return (within `timeout_s`, default the runner's); the raw bytes of `ma_harness_output` after it."""
        from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_SP

        fw = self.firmware
        if buffer is not None:
            if len(data) != fw.sizes.get(buffer, len(data)):
                raise UserError(f"input of {len(data)} bytes, the firmware's {buffer} holds {fw.sizes[buffer]}")
            self.uc.mem_write(fw.address(buffer), data)
        halt = fw.address("ma_harness_halt")
        self.uc.reg_write(UC_ARM_REG_SP, self.idle_sp)
        self.uc.reg_write(UC_ARM_REG_LR, halt | 1)
        self._run(fw.address(function), halt, timeout_s or self.timeout_s, function)
        return bytes(self.uc.mem_read(fw.address("ma_harness_output"), fw.sizes["ma_harness_output"]))

    def profile(self, sample: bytes, layers: list[LayerRef], timeout_s: int | None = None) -> tuple[bytes, Profile]:
        """Run one sample with the block and flash-read hooks on (for this run only); its output and its profile.
        The hooks are the native recorder's C callbacks where it is built (sim/native.py), else Python ones."""
        return self.profile_run(lambda: self.infer(sample, timeout_s), layers)

    def profile_run(self, run, layers: list[LayerRef]) -> tuple[bytes, Profile]:
        """`profile` of any harness call: `run()` makes it and returns the output bytes."""
        from mcu_attn.sim import native

        self.uc.ctl_flush_tb()  # blocks translated before (start-up, earlier samples) would not call the hooks
        try:
            if native.available():
                entries = np.array([layer.address for layer in layers], np.uint32)
                with native.Tracer(self.uc, self._flash_range(), entries) as tracer:
                    output = run()
                trace = tracer.trace()
            else:
                output, trace = self._python_hooks(run, layers)
        finally:
            self.uc.ctl_flush_tb()  # later runs without the hooks' calls
        cache = BlockCache(lambda address, count: bytes(self.uc.mem_read(address, count)))
        blocks = [cache.by_size(int(a), int(s)) for a, s in zip(trace.block_starts, trace.block_sizes)]
        return output, build_profile(trace, blocks, layers, self.firmware.address("ma_harness_halt"))

    def _flash_range(self) -> tuple[int, int]:
        return self.target.flash_base, self.target.flash_base + self.target.flash_bytes - 1

    def _python_hooks(self, run, layers: list[LayerRef]) -> tuple[bytes, Trace]:
        """The native recorder's Trace, from a Python callback per block (where no C compiler is)."""
        from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ

        starts: list[int] = []
        sizes: list[int] = []
        flash_addresses: list[int] = []
        flash_positions: list[int] = []

        def on_block(uc, address, size, user_data) -> None:
            starts.append(address)
            sizes.append(size)

        def on_flash_read(uc, access, address, size, value, user_data) -> None:
            flash_addresses.append(address)
            flash_positions.append(len(starts) - 1)

        low, high = self._flash_range()
        hooks = [self.uc.hook_add(UC_HOOK_BLOCK, on_block),
                 self.uc.hook_add(UC_HOOK_MEM_READ, on_flash_read, begin=low, end=high)]
        try:
            output = run()
        finally:
            for hook in hooks:
                self.uc.hook_del(hook)
        return output, summarise(np.array(starts, np.int64), np.array(sizes, np.int64), layers,
                                 np.array(flash_addresses, np.int64), np.array(flash_positions, np.int64))
