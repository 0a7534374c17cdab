"""`mcu-attn flash DIR`: program a build's firmware into a board, verify it, reset it, and optionally compare
the board's measurement with the emulator's estimate.

Programming goes through pyOCD's Python API (the board's `pyocd_target` from the target table; the `[flash]`
extra installs pyOCD and pyserial) or through OpenOCD when `--probe openocd` is given or pyOCD is absent (the
target table's `openocd` interface and target scripts: `program ELF verify reset exit`). pyOCD programs the ELF's
load segments, then every segment is read back and compared (verify) and the core is reset.

`--monitor PORT`: before the core runs, the first calibration sample (the one `simulate` profiles) is written to
`ma_harness_input` through the probe; the harness then prints its result line on the console UART, which is read
from PORT at 115200 baud (docs/firmware.md):

    MA-RESULT checksum=<crc32> cycles=<DWT cycles of the inference> out=<hex>

The measured cycles and checksum are printed next to the emulator's on the same sample (Unicorn: the output's
checksum must be the same; the cycles are the model's estimate). `--calibrate FILE` then writes a
`--cycle-model` JSON that sets the core's `issue_factor` so that the estimate of that sample equals the
measurement: estimate = issue-limited cycles / issue_factor + refills + flash wait states
(docs/cycle-model.md), solved for issue_factor.

Errors are one line (exit 2): no programming tool, no debug probe (with how to connect one), a target pyOCD
does not know, a verify mismatch, no result line on the port.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcu_attn.errors import UserError

PROBES = ("pyocd", "openocd")
BAUD = 115_200
MONITOR_TIMEOUT_S = 30    # the result line follows reset by the inference time (milliseconds to seconds) at most
NO_PROBE = ("no debug probe found ({tool}): connect the board's on-board debugger (ST-LINK on ST boards, J-Link OB "
            "on the nRF52840-DK) or a CMSIS-DAP/J-Link/ST-LINK probe to SWD over USB, and check that this user may "
            "open it (udev rules)")
INSTALL = "pip install 'mcu-attn[flash]' (pyOCD and pyserial), or install OpenOCD and pass --probe openocd"


@dataclass(frozen=True)
class FlashOptions:
    probe: str | None = None         # pyocd | openocd; None: pyOCD when installed, else OpenOCD
    dry_run: bool = False
    monitor: str | None = None       # serial port of the board's console UART
    calibrate: str | None = None     # write a --cycle-model JSON here (needs monitor)


@dataclass(frozen=True)
class Measurement:
    checksum: str
    cycles: int
    output: bytes


def _pyocd_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyocd") is not None


def choose_probe(requested: str | None, dry_run: bool = False) -> str:
    """The programming tool: the one requested (installed, unless only its command is printed), else pyOCD when
    installed, else OpenOCD when on PATH (a dry run names pyOCD, the `[flash]` extra's tool, when neither is)."""
    if requested is not None and requested not in PROBES:
        raise UserError(f"--probe {requested}: choose pyocd or openocd")
    if dry_run:
        return requested or ("openocd" if not _pyocd_installed() and shutil.which("openocd") else "pyocd")
    if requested == "pyocd" and not _pyocd_installed():
        raise UserError(f"--probe pyocd: pyOCD is not installed; {INSTALL}")
    if requested == "openocd" and shutil.which("openocd") is None:
        raise UserError("--probe openocd: openocd not found on PATH (apt-get install openocd)")
    if requested:
        return requested
    if _pyocd_installed():
        return "pyocd"
    if shutil.which("openocd"):
        return "openocd"
    raise UserError(f"no programming tool: {INSTALL}")


def tcl_word(text: str) -> str:
    """`text` as one Tcl word for an OpenOCD `-c` command: every character Tcl would act on (brackets run
    commands, `$` substitutes, braces, quotes, `;` and white space split) is backslash-escaped, and newlines and
    tabs are written as `\\n` and `\\t`, so a path is data and never code."""
    escaped = re.sub(r'([\\\[\]${}"; ])', r"\\\1", text)
    return escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def openocd_command(target, elf: Path, sample_file: Path | None = None, sample_address: int = 0) -> list[str]:
    """OpenOCD's command line: program and verify the ELF, then reset (and with a sample: place it at
    `sample_address` while the core is halted at reset, then run)."""
    if target.openocd is None:
        raise UserError(f"target {target.name}: the target table has no OpenOCD scripts for it; use --probe pyocd")
    interface, script = target.openocd
    steps = [f"program {tcl_word(str(elf))} verify"]
    if sample_file is None:
        steps += ["reset run"]
    else:
        steps += ["reset halt", f"load_image {tcl_word(str(sample_file))} {sample_address:#x} bin", "resume"]
    command = ["openocd", "-f", interface, "-f", script]
    for step in steps + ["exit"]:
        command += ["-c", step]
    return command


def pyocd_command(target, elf: Path) -> list[str]:
    """The pyOCD command line equivalent to what the Python API does here (load, which resets)."""
    if not target.pyocd_target:
        raise UserError(f"target {target.name}: the target table has no pyOCD target name")
    return ["pyocd", "load", "--target", target.pyocd_target, "--format", "elf", str(elf)]


def _quiet():
    """pyOCD prints its own warnings (e.g. 'No connected debug probes'): errors here are one line of ours."""
    logging.getLogger("pyocd").setLevel(logging.CRITICAL)
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def _program_pyocd(target, firmware, sample: bytes | None, before_run) -> None:
    from pyocd.core.exceptions import Error as PyocdError
    from pyocd.core.helpers import ConnectHelper
    from pyocd.flash.file_programmer import FileProgrammer

    try:
        with _quiet():
            session = ConnectHelper.session_with_chosen_probe(blocking=False, return_first=True,
                                                              target_override=target.pyocd_target)
        if session is None:
            raise UserError(NO_PROBE.format(tool="pyOCD"))
        with session:
            with _quiet():
                FileProgrammer(session).program(str(firmware.path), file_format="elf")
            core = session.target
            for region in firmware.regions:
                if target.flash_base <= region.address < target.flash_base + target.flash_bytes and region.data:
                    if bytes(core.read_memory_block8(region.address, len(region.data))) != region.data:
                        raise UserError(f"verify failed: flash at {region.address:#x} differs from {firmware.path}")
            if sample is None:
                core.reset()
                return
            core.reset_and_halt()
            core.write_memory_block8(firmware.address("ma_harness_input"), list(sample))
            before_run()
            core.resume()
    except PyocdError as err:
        raise UserError(f"pyOCD ({target.pyocd_target}): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                        f"; for an ST part install its pack: pyocd pack install {target.pyocd_target}") from None


def _program_openocd(target, firmware, sample: bytes | None, before_run) -> None:
    with tempfile.TemporaryDirectory(prefix="mcu-attn-flash-") as scratch:
        sample_file = None
        if sample is not None:
            sample_file = Path(scratch) / "sample.bin"
            sample_file.write_bytes(sample)
            before_run()
        command = openocd_command(target, firmware.path.resolve(), sample_file,
                                  firmware.address("ma_harness_input"))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise UserError("openocd: no answer within 300 s") from None
    if done.returncode != 0:
        log = done.stdout + done.stderr
        if re.search(r"open failed|no device found|unable to find|No J-Link|not found|No CMSIS-DAP", log, re.I):
            raise UserError(NO_PROBE.format(tool="OpenOCD"))
        errors = [line for line in log.splitlines() if line.startswith("Error")] or log.strip().splitlines()[-1:]
        raise UserError(f"openocd failed (exit {done.returncode}): {errors[-1] if errors else 'no output'}")


class Monitor:
    """The board's console, opened before the core runs so that no byte of the result line is missed."""

    def __init__(self, port: str) -> None:
        try:
            import serial
        except ImportError:
            raise UserError(f"--monitor needs pyserial; {INSTALL}") from None
        self.port = port
        self.serial = None
        self._open = lambda: serial.serial_for_url(port, BAUD, timeout=0.5)   # a device path, or a pyserial URL
        self._error = serial.SerialException

    def open(self) -> None:
        try:
            self.serial = self._open()
        except (self._error, OSError) as err:
            raise UserError(f"--monitor {self.port}: cannot open ({err})") from None

    def result(self, timeout_s: float = MONITOR_TIMEOUT_S) -> Measurement:
        deadline = time.monotonic() + timeout_s
        seen = b""
        try:
            while time.monotonic() < deadline:
                seen += self.serial.read(4096)
                measured = parse_result_line(seen.decode("ascii", "replace"))
                if measured is not None:
                    return measured
        finally:
            self.serial.close()
        raise UserError(f"--monitor {self.port}: no complete MA-RESULT line within {timeout_s:.0f} s "
                        f"(got {len(seen)} bytes; is this the board's console UART at {BAUD} baud?)")


def parse_result_line(text: str) -> Measurement | None:
    """The harness's result line in `text` (complete: up to its line end), checked against its crc32."""
    from mcu_attn.sim.qemu import RESULT, parse_result

    match = RESULT.search(text)
    if match is None or "\n" not in text[match.end():]:
        return None
    return Measurement(match.group(1), int(match.group(2)), parse_result(text[match.start():], "the board"))


def calibrated_issue_factor(estimate: dict, measured_cycles: int) -> float:
    """The core's issue_factor with which the estimate of this sample equals `measured_cycles` (the refills and
    flash wait states stay as estimated)."""
    core = estimate["estimate"]["core"]
    refills = estimate["classes"]["taken"] * core["refill"]
    waits = estimate["cycle_breakdown"]["flash_data_wait"] + estimate["cycle_breakdown"]["flash_fetch_wait"]
    issue_limited = (estimate["cycle_breakdown"]["core"] - refills) * core["issue_factor"]
    left = measured_cycles - refills - waits
    if left <= 0 or issue_limited <= 0:
        raise UserError(f"--calibrate: the board measured {measured_cycles:,} cycles, not more than the estimated "
                        f"refills and flash wait states ({refills + waits:,.0f}); nothing left to fit")
    return issue_limited / left


def _write_json(path: str, payload: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"--calibrate {path}: directory {directory} does not exist")
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".json.part")
    with os.fdopen(handle, "w") as stream:
        json.dump(payload, stream, indent=2)
        stream.write("\n")
    os.replace(temporary, path)


def flash(directory: str, options: FlashOptions = FlashOptions()) -> list[str]:
    """Program (and monitor) the build in `directory`; the lines to print."""
    from mcu_attn.sim.build_dir import BuildDir
    from mcu_attn.sim.elf import load_firmware

    if options.calibrate and not options.monitor:
        raise UserError("--calibrate needs --monitor PORT (the board's measurement to calibrate on)")
    build = BuildDir(directory)
    target, elf = build.target, build.elf.resolve()
    probe = choose_probe(options.probe, options.dry_run)
    if options.dry_run:
        command = pyocd_command(target, elf) if probe == "pyocd" else openocd_command(target, elf)
        return [shlex.join(command)]
    firmware = load_firmware(elf)
    monitor = Monitor(options.monitor) if options.monitor else None
    sample = None
    if monitor:
        data, _ = build.default_samples(1)
        sample = np.ascontiguousarray(build.prepare(data)[0]).tobytes()
    program = _program_pyocd if probe == "pyocd" else _program_openocd
    program(target, firmware, sample, monitor.open if monitor else (lambda: None))
    lines = [f"programmed and verified {elf} on {target.name} with {probe}; reset"]
    if monitor:
        lines += _compare(build, firmware, sample, monitor.result(), options)
    return lines


def _compare(build, firmware, sample: bytes, measured: Measurement, options: FlashOptions) -> list[str]:
    from mcu_attn.sim.run import estimate_payload
    from mcu_attn.sim.unicorn import UnicornRunner

    output, profile = UnicornRunner(firmware, build.target).profile(sample, build.layers(firmware.symbols))
    estimate = estimate_payload(build, profile, {})
    clock = build.target.clock_hz
    emulated = f"{zlib.crc32(output):08x}"
    lines = [f"board:    checksum {measured.checksum}, {measured.cycles:,} cycles (DWT) = "
             f"{measured.cycles / clock * 1e3:.2f} ms at {clock / 1e6:.0f} MHz",
             f"emulator: checksum {emulated} ({'same output' if emulated == measured.checksum else 'OUTPUT DIFFERS'})"
             f", ~{estimate['cycles']:,} cycles (estimate), {estimate['instructions']:,} instructions",
             f"estimate / measured = {estimate['cycles'] / max(measured.cycles, 1):.3f}"]
    if options.calibrate:
        factor = calibrated_issue_factor(estimate, measured.cycles)
        core = estimate["estimate"]["core"]["core"]
        _write_json(options.calibrate, {"cores": {core: {"issue_factor": factor}}})
        lines.append(f"wrote {options.calibrate}: {core} issue_factor {factor:.4f} (was "
                     f"{estimate['estimate']['core']['issue_factor']}); `mcu-attn simulate {build.path} "
                     f"--cycle-model {options.calibrate}` reproduces the measured cycles on this sample")
    return lines
