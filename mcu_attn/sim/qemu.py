"""The second engine: qemu-system-arm on a machine whose memory map and console UART match the target.

Per sample, QEMU boots the unmodified firmware (`-kernel model.elf`) with the sample placed at
`ma_harness_input` by a generic loader device (`-device loader,file=S,addr=A,force-raw=on`; the buffer is in
.noinit, so start-up leaves it alone). The harness runs one inference and prints

    MA-RESULT checksum=<crc32> cycles=<n> out=<hex>

on the console UART (the machine's first serial port, read from QEMU's stdout). The line is checked (crc32 of
the bytes = checksum) and QEMU is killed: the harness ends in a BKPT loop.

Instruction count of the profiled sample: its run (the one whose output is checked) adds
`-d exec,nochain,in_asm -D LOG`. `in_asm` prints every translation block (TB) when QEMU translates it, one line
per guest instruction; `exec` with `nochain` prints one `Trace` line per TB execution with its guest PC. The
inference is the TBs from the first one that starts at `ma_harness_infer` up to the first one that starts at its
return address (the end of the TB that called it). Those TBs (start address and size in bytes) are classified
and attributed to layers like Unicorn's blocks (profile.py); the count is the sum of their instructions. QEMU's
log has no data addresses, so the split of data reads between flash and SRAM is taken from the Unicorn profile
of the same ELF and sample.
QEMU is functional, like Unicorn: cycles and energy come from the same estimate (cycles.py, energy.py).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from mcu_attn.errors import SampleFailure, UserError
from mcu_attn.sim.elf import Firmware
from mcu_attn.sim.profile import COUNT_INDEX, BlockCache, LayerRef, Profile, build_profile, summarise

QEMU = "qemu-system-arm"
RESULT = re.compile(r"MA-RESULT checksum=([0-9a-f]{8}) cycles=(\d+) out=([0-9a-f]*)")
RUN_TIMEOUT_S = 60
PROFILE_TIMEOUT_S = 300
_INSN = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{4} )+)")
_TRACE = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")


def parse_result(text: str, engine: str) -> bytes | None:
    """The output bytes of the harness's MA-RESULT line in `text` (QEMU's or Renode's console), checked against
    the line's crc32; None when `text` has no such line."""
    match = RESULT.search(text)
    if match is None:
        return None
    checksum, _, hex_bytes = match.groups()
    data = bytes.fromhex(hex_bytes)
    if f"{zlib.crc32(data):08x}" != checksum:
        raise UserError(f"{engine}: MA-RESULT checksum {checksum} does not match its {len(data)} output bytes")
    return data


@lru_cache(maxsize=None)
def _machines(binary: str) -> frozenset[str]:
    listing = subprocess.run([binary, "-M", "help"], capture_output=True, text=True, timeout=30).stdout
    return frozenset(line.split()[0] for line in listing.splitlines()[1:] if line.strip())


def _option_value(text: str) -> str:
    """`text` as one value of a QEMU `key=value,...` option list: a comma is written twice (QEMU's escape), so a
    path with commas cannot end the value or add options."""
    return text.replace(",", ",,")


class QemuRunner:
    def __init__(self, build, firmware: Firmware, timeout_s: int = RUN_TIMEOUT_S) -> None:
        self.build = build
        self.firmware = firmware
        self.timeout_s = timeout_s  # host seconds one run (boot, inference, result line) may take
        machine = build.target.qemu_machine
        if not machine:
            from mcu_attn.targets.table import TARGETS

            able = ", ".join(f"{t.name} ({t.qemu_machine})" for t in TARGETS if t.qemu_machine)
            raise UserError(f"target {build.target.name}: QEMU has no machine for it (QEMU runs: {able}); "
                            f"use --engine unicorn")
        binary = shutil.which(QEMU)
        if binary is None:
            raise UserError(f"{QEMU} not found on PATH; install it (scripts/install-system-deps.sh) or use "
                            f"--engine unicorn")
        if machine not in _machines(binary):
            raise UserError(f"this {QEMU} has no machine {machine!r} (needed for {build.target.name}); "
                            f"use a newer QEMU or --engine unicorn")
        self.binary = binary
        self.machine = machine

    def _command(self, sample_file: str, log: str | None) -> list[str]:
        command = [self.binary, "-M", self.machine, "-display", "none", "-monitor", "none", "-serial", "stdio",
                   "-kernel", str(self.firmware.path), "-device",
                   f"loader,file={_option_value(sample_file)},addr={self.firmware.address('ma_harness_input'):#x},"
                   "force-raw=on"]
        if log:
            command += ["-d", "exec,nochain,in_asm", "-D", log]
        return command

    def _run(self, sample: bytes, log: str | None, timeout_s: int) -> bytes:
        with tempfile.TemporaryDirectory(prefix="mcu-attn-qemu-") as scratch:
            sample_file = os.path.join(scratch, "sample.bin")
            Path(sample_file).write_bytes(sample)
            process = subprocess.Popen(self._command(sample_file, log), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            output = b""
            deadline = time.monotonic() + timeout_s
            try:
                while True:
                    at = output.find(b"MA-RESULT")
                    if at >= 0 and b"\n" in output[at:]:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SampleFailure(f"{QEMU} -M {self.machine}: no MA-RESULT line within {timeout_s} s "
                                            f"(console so far: {output[-200:]!r})")
                    ready, _, _ = select.select([process.stdout], [], [], min(remaining, 1.0))
                    if ready:
                        chunk = os.read(process.stdout.fileno(), 65536)
                        if not chunk:
                            error = process.stderr.read().decode(errors="replace").strip().splitlines()
                            raise SampleFailure(f"{QEMU} -M {self.machine} exited without a MA-RESULT line"
                                                + (f": {error[-1]}" if error else ""))
                        output += chunk
            finally:
                process.kill()
                process.wait()
                process.stdout.close()
                process.stderr.close()
        try:
            data = parse_result(output.decode("ascii", "replace"), QEMU)
        except UserError as err:
            raise SampleFailure(str(err)) from None
        if data is None:
            raise SampleFailure(f"{QEMU} -M {self.machine}: malformed MA-RESULT line "
                                f"(console: {output[output.find(b'MA-RESULT'):][:200]!r})")
        return data

    def infer(self, sample: bytes) -> bytes:
        return self._run(sample, None, self.timeout_s)

    def profile(self, sample: bytes, layers: list[LayerRef], unicorn_profile: Profile,
                timeout_s: int = PROFILE_TIMEOUT_S) -> tuple[bytes, Profile]:
        """Run one sample with QEMU's TB trace on (within `timeout_s`: tracing is slow); its output and its profile
        (flash/SRAM split of data reads from `unicorn_profile`)."""
        with tempfile.TemporaryDirectory(prefix="mcu-attn-qemu-") as scratch:
            log = os.path.join(scratch, "exec.log")
            output = self._run(sample, log, timeout_s)
            starts, sizes, ret = self._inference_trace(log)
        trace = summarise(starts, sizes, layers)
        cache = BlockCache(self.firmware.read)
        blocks = [cache.by_size(int(a), int(n)) for a, n in zip(trace.block_starts, trace.block_sizes)]
        profile = build_profile(trace, blocks, layers, ret)
        flash = COUNT_INDEX["flash_reads"]
        profile.counts[:, flash] = unicorn_profile.counts[:, flash]
        profile.flash_addresses = unicorn_profile.flash_addresses
        profile.flash_rows = unicorn_profile.flash_rows
        return output, profile

    def _inference_trace(self, log: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(TB start addresses, their sizes in bytes, the return address) of the ma_harness_infer call."""
        infer = self.firmware.address("ma_harness_infer")
        translated: dict[int, int] = {}   # TB start -> end address, latest wins
        starts: list[int] = []
        sizes: list[int] = []
        block_start = None
        entered = False
        ret = None
        previous_end = None
        with open(log, "r", errors="replace") as stream:
            for line in stream:
                if line.startswith("IN:"):
                    block_start = None
                    continue
                insn = _INSN.match(line)
                if insn:
                    address = int(insn.group(1), 16)
                    if block_start is None:
                        block_start = address
                    translated[block_start] = address + 2 * len(insn.group(2).split())
                    continue
                trace = _TRACE.match(line)
                if not trace:
                    continue
                pc = int(trace.group(1), 16)
                if pc not in translated:
                    raise UserError(f"{QEMU} log: block {pc:#x} ran before its in_asm listing (unexpected log format; "
                                    f"a QEMU built without capstone prints no disassembly)")
                end = translated[pc]
                if not entered:
                    if pc == infer:
                        entered, ret = True, previous_end
                    else:
                        previous_end = end
                        continue
                elif pc == ret:
                    break
                starts.append(pc)
                sizes.append(end - pc)
            else:
                raise UserError(f"{QEMU} log: the ma_harness_infer call "
                                + ("never returned" if entered else "never started"))
        return np.array(starts, np.int64), np.array(sizes, np.int64), int(ret)
