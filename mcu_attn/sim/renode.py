"""The Renode engine, where Renode is installed (the Docker image has it; pip and apt do not).

Per sample, a small Robot Framework suite is written next to the build's own `renode/<target>.robot`: it includes
the build's `renode/<target>.resc` (platform + `sysbus LoadELF`), places the sample at `ma_harness_input` with
`sysbus LoadBinary` (the buffer is in .noinit, so start-up leaves it alone), starts the emulation, waits for the
harness's `MA-RESULT` line on the console UART and logs it together with `sysbus.cpu ExecutedInstructions`.
`renode-test` runs it; the line is parsed and checked like QEMU's (crc32 = checksum).

Renode's ExecutedInstructions counts the whole run (start-up, inference, printing), so it is reported as such
(`renode.executed_instructions`); the per-inference instructions, their classes and the layer split come from
the Unicorn profile of the same ELF and sample, and cycles/energy from the same estimate as the other engines.
This engine is not exercised in this repository's CI (no Renode there); its test is skipped without Renode.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mcu_attn.errors import SampleFailure, UserError
from mcu_attn.sim.elf import Firmware
from mcu_attn.sim.qemu import parse_result

EXECUTED = re.compile(r"MA-EXECUTED\s+(\d+)")
TIMEOUT_S = 600
DOCKER_HINT = ("renode not found on PATH; use the Docker image (see the Dockerfile), install Renode from "
               "https://renode.io, or use --engine unicorn / qemu")

_SUITE = """*** Settings ***
Resource                        ${{RENODEKEYWORDS}}

*** Test Cases ***
Infer One Sample
    Execute Command             include @{resc}
    Execute Command             sysbus LoadBinary @{sample} {address:#x}
    Create Terminal Tester      {uart}    timeout={timeout}
    Start Emulation
    ${{result}}=                Wait For Line On Uart    MA-RESULT checksum=[0-9a-f]{{8}} cycles=[0-9]+ out=[0-9a-f]*    treatAsRegex=true
    ${{count}}=                 Execute Command    sysbus.cpu ExecutedInstructions
    Log To Console              ${{result.line}}
    Log To Console              MA-EXECUTED ${{count.strip()}}
"""


class RenodeRunner:
    def __init__(self, build, firmware: Firmware) -> None:
        self.build = build
        self.firmware = firmware
        self.binary = shutil.which("renode-test")
        if shutil.which("renode") is None or self.binary is None:
            raise UserError(DOCKER_HINT)
        target = build.target.name
        self.resc = build.path / "renode" / f"{target}.resc"
        if not self.resc.is_file():
            raise UserError(f"{build.path}: no renode/{target}.resc (the build writes it for Renode targets)")
        robot = (build.path / "renode" / f"{target}.robot")
        uart = re.search(r"Create Terminal Tester\s+(\S+)", robot.read_text()) if robot.is_file() else None
        self.uart = "${UART}" if uart is None else uart.group(1)
        if self.uart.startswith("${"):
            variable = re.search(r"\$\{UART\}\s+(\S+)", robot.read_text()) if robot.is_file() else None
            if variable is None:
                raise UserError(f"{robot}: cannot find the console UART the build's Renode test uses")
            self.uart = variable.group(1)
        self.executed: list[int] = []

    def infer(self, sample: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="mcu-attn-renode-") as scratch:
            suite = Path(scratch) / "sample.robot"
            sample_file = Path(scratch) / "sample.bin"
            sample_file.write_bytes(sample)
            suite.write_text(_SUITE.format(resc=self.resc.resolve(), sample=sample_file,
                                           address=self.firmware.address("ma_harness_input"), uart=self.uart,
                                           timeout=TIMEOUT_S))
            try:
                done = subprocess.run([self.binary, str(suite), "--results-dir", scratch], capture_output=True,
                                      text=True, timeout=TIMEOUT_S + 60)
            except subprocess.TimeoutExpired:
                raise SampleFailure(f"renode-test: no result within {TIMEOUT_S} s") from None
        output = done.stdout + done.stderr
        try:
            data = parse_result(output, "renode")
        except UserError as err:
            raise SampleFailure(str(err)) from None
        if data is None:
            tail = output.strip().splitlines()[-1:] or ["no output"]
            raise SampleFailure(f"renode-test printed no MA-RESULT line (exit {done.returncode}): {tail[0]}")
        executed = EXECUTED.search(output)
        if executed:
            self.executed.append(int(executed.group(1)))
        return data

    def summary(self) -> dict:
        return {"executed_instructions": self.executed[0] if self.executed else None,
                "note": "Renode's ExecutedInstructions covers the whole run (start-up, inference, printing) of "
                        "sample 0; per-inference counts come from the Unicorn profile of the same ELF and sample"}
