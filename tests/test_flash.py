"""`mcu-attn flash` without a board: clean errors, the exact programming commands, and the --monitor and
--calibrate steps on a board stood in for by the emulator (its line sent through pyserial's loopback port)."""

from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest

from support import DIGITS, run_cli

from mcu_attn import flash as flashing
from mcu_attn.errors import UserError

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mcu_attn.build import BuildOptions, build

    out = tmp_path_factory.mktemp("flash") / "f407"
    build(MODEL, "stm32f407", out, BuildOptions(bits=8, calib=str(CALIB)))
    return out


def _one_line(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and done.stdout == "", done.stderr
    return lines[0]


def test_without_a_board_flash_fails_cleanly_naming_the_probe(built):
    line = _one_line(run_cli("flash", built))
    if flashing._pyocd_installed():
        assert "no debug probe found (pyOCD)" in line and "ST-LINK" in line
    elif shutil.which("openocd"):
        assert "no debug probe found (OpenOCD)" in line
    else:
        assert "no programming tool" in line and "mcu-attn[flash]" in line and "--probe openocd" in line
    if shutil.which("openocd"):
        assert "no debug probe found (OpenOCD)" in _one_line(run_cli("flash", built, "--probe", "openocd"))
    else:
        assert "openocd not found" in _one_line(run_cli("flash", built, "--probe", "openocd"))


def test_dry_run_prints_the_command(built):
    elf = (built / "model.elf").resolve()
    done = run_cli("flash", built, "--dry-run", "--probe", "openocd")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == (f"openocd -f interface/stlink.cfg -f target/stm32f4x.cfg -c 'program {elf} verify'"
                                   f" -c 'reset run' -c exit")
    done = run_cli("flash", built, "--dry-run", "--probe", "pyocd")
    assert done.returncode == 0 and done.stdout.strip() == f"pyocd load --target stm32f407vgtx --format elf {elf}"


def test_bad_flash_input_is_one_line(built, tmp_path):
    assert "--calibrate needs --monitor" in _one_line(run_cli("flash", built, "--calibrate", tmp_path / "c.json"))
    assert "no such build directory" in _one_line(run_cli("flash", tmp_path / "missing"))
    assert "invalid choice" in _one_line(run_cli("flash", built, "--probe", "jtag"))


def test_result_line_parsing():
    output = bytes(range(10))
    line = f"MA-RESULT checksum={zlib.crc32(output):08x} cycles=1234 out={output.hex()}\r\n"
    measured = flashing.parse_result_line("boot noise\r\n" + line)
    assert (measured.cycles, measured.output) == (1234, output)
    assert flashing.parse_result_line(line[:-2]) is None                 # the line is not complete yet
    with pytest.raises(UserError, match="does not match"):
        flashing.parse_result_line(line.replace("cycles=1234 out=00", "cycles=1234 out=01"))


def test_monitor_and_calibrate_on_a_stand_in_board(built, tmp_path, monkeypatch):
    """The 'board' is Unicorn on the same sample: its output, and 1.25 x the estimate as its DWT cycles."""
    serial = pytest.importorskip("serial")
    from mcu_attn.sim.build_dir import BuildDir
    from mcu_attn.sim.elf import load_firmware
    from mcu_attn.sim.run import SimOptions, estimate_payload, simulate
    from mcu_attn.sim.unicorn import UnicornRunner

    build = BuildDir(built)
    firmware = load_firmware(build.elf)
    sample = np.ascontiguousarray(build.prepare(build.default_samples(1)[0])[0]).tobytes()
    output, profile = UnicornRunner(firmware, build.target).profile(sample, build.layers(firmware.symbols))
    measured = int(estimate_payload(build, profile, {})["cycles"] * 1.25)
    placed = {}

    def stand_in(target, firmware, sample_bytes, before_run):
        placed["sample"] = sample_bytes
        before_run()   # opens the monitor's port, then the board prints its line
        monitor_port.write(f"MA-RESULT checksum={zlib.crc32(output):08x} cycles={measured} "
                           f"out={output.hex()}\r\n".encode())

    monitor_port = serial.serial_for_url("loop://", timeout=0.5)
    monkeypatch.setattr(flashing, "choose_probe", lambda requested, dry_run=False: "pyocd")
    monkeypatch.setattr(flashing, "_program_pyocd", stand_in)
    monkeypatch.setattr(flashing.Monitor, "open", lambda self: setattr(self, "serial", monitor_port))
    model = tmp_path / "cycle-model.json"
    lines = flashing.flash(str(built), flashing.FlashOptions(monitor="loop://", calibrate=str(model)))
    assert placed["sample"] == sample
    text = "\n".join(lines)
    assert f"{measured:,} cycles (DWT)" in text and "same output" in text and "estimate / measured = 0.8" in text
    calibrated = json.loads(model.read_text())
    factor = calibrated["cores"]["cortex-m4"]["issue_factor"]
    assert set(calibrated) == {"cores"} and 0.5 < factor < 1.0
    again = simulate(str(built), options=SimOptions(limit=1, cycle_model=str(model)))
    assert abs(again["cycles"] - measured) <= 1   # the fitted model reproduces the measurement (rounding)
