"""Output paths an adversary would choose: the generated Makefile, CMake project and QEMU command line treat
every path as data.

Each hostile directory name carries a payload that would create a file named `INJECTED` if any shell parsed it
(`;touch INJECTED;`, `$(touch INJECTED)`, backticks), or breaks argument splitting (spaces, quotes, newlines,
commas for `-Wl,` and QEMU's `key=value,...` options). A Cortex-M build there must succeed, produce the same
bytes as a build at a plain path (so no path leaked into the tree), and run no payload.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from mcu_attn.build import BuildOptions, build

from support import DIGITS

MODEL = DIGITS / "digits_vit.onnx"
FLOAT = BuildOptions(bits=32)  # the fastest Cortex-M build; the paths, not the model, are under test
HOSTILE = {
    "space": "with space",
    "semicolon": "a;touch INJECTED;b",
    "single quote": "it's",
    "double quote": 'say "hi"',
    "command substitution": "x$(touch INJECTED)y",
    "backticks": "x`touch INJECTED`y",
    "make variable": "$(CURDIR)$$MA_BUILD_DIR",
    "newline": "line\nbreak",
    "comma": "a,b,id=c",
    "percent and hash": "100%#x",
}
# CMake 3.25 itself cannot take these (before or outside our CMakeLists.txt): a path with `"`, `;` or a newline
# breaks its own generated CMakeSystem.cmake, and its Makefile generator writes paths into its makefiles without
# escaping `$`, so make expands `$(CURDIR)` there. The generated Makefile (above) builds in all of them.
CMAKE_CANNOT = {"semicolon", "double quote", "newline", "make variable"}

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
                                reason="arm-none-eabi-gcc (gcc-arm-none-eabi, libnewlib-arm-none-eabi) not installed")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _injected(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name == "INJECTED"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    build(MODEL, "stm32f407", out, FLOAT)
    return out


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_makefile_build_in_a_hostile_path(case, plain, tmp_path):
    parent = tmp_path / HOSTILE[case]
    out = parent / f"out {HOSTILE[case]}"
    build(MODEL, "stm32f407", out, FLOAT)
    assert _injected(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [HOSTILE[case]]  # no stray file beside the output
    first, second = _tree(plain), _tree(out)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []  # ELF included: no path inside


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
@pytest.mark.parametrize("case", sorted(set(HOSTILE) - CMAKE_CANNOT))
def test_cmake_build_in_a_hostile_path(case, plain, tmp_path):
    project = tmp_path / HOSTILE[case] / "project"
    shutil.copytree(plain, project)
    binary = f"cmake {HOSTILE[case]}"
    for command in (["cmake", "-S", ".", "-B", binary, "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake"],
                    ["cmake", "--build", binary]):
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (project / binary / "model.elf").is_file()
    assert _injected(tmp_path) == []


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_qemu_sample_file_in_a_path_with_commas(plain, tmp_path, monkeypatch):
    """The sample reaches QEMU as `-device loader,file=PATH,...`: a comma in PATH must not end the value."""
    from mcu_attn.sim.run import SimOptions, simulate

    scratch = tmp_path / "tmp,id=evil,addr=0"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = simulate(str(plain), options=SimOptions(engine="qemu", limit=1))
    assert result["within_tolerance"] and result["failed_samples"] == [] and result["cross_check"]["agree"]


TCL_HOSTILE = ["with space", "x[exec touch INJECTED]y", "$env(HOME)", 'say "hi"', "open{brace", "close}brace",
               "a;b", "line\nbreak", "tab\tstop", "back\\slash"]


@pytest.mark.parametrize("text", TCL_HOSTILE)
def test_tcl_word_is_the_path_itself(text):
    """OpenOCD's `-c` commands are Tcl: a path in them must come back from Tcl exactly as it went in."""
    tkinter = pytest.importorskip("tkinter")
    from mcu_attn.flash import tcl_word

    try:
        interpreter = tkinter.Tcl()
    except tkinter.TclError:
        pytest.skip("no Tcl library")
    assert interpreter.eval("set value " + tcl_word(text)) == text


@pytest.mark.skipif(shutil.which("openocd") is None, reason="openocd not installed")
def test_openocd_command_runs_nothing_from_a_path(tmp_path):
    """The real OpenOCD parses the command line (its Tcl has `exec`); with no probe attached it then fails to
    connect, but a path holding `[exec touch INJECTED]` must not have run."""
    from mcu_attn.flash import openocd_command
    from mcu_attn.targets.table import get_target

    elf = tmp_path / "fw [exec touch INJECTED]" / "model.elf"
    elf.parent.mkdir()
    elf.write_bytes(b"\x7fELF")
    command = openocd_command(get_target("stm32f407"), elf)
    subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=120)
    assert _injected(tmp_path) == [] and not (elf.parent / "INJECTED").exists()
