"""Cortex-M builds (docs/firmware.md) of the digits ViT with arm-none-eabi-gcc.

- int8 builds for stm32 (F746), stm32f407 and nrf52840 and a float build: the ELF, the contract's symbols, the
  vector table, report sizes equal to the ELF's sections, one distinct function per layer;
- two builds in different folders give byte-identical trees, ELF included, with no path of either;
- a model too large for the target is refused in one line, before compiling (planned sizes) or by the linker;
- without arm-none-eabi-gcc on PATH the sources are written and the error says how to install it;
- the generated CMake project configures and builds too, and the sources compile without warnings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcu_attn.build import MARKER, BuildOptions, build
from mcu_attn.errors import UserError
from mcu_attn.targets.table import get_target

from support import DIGITS, ROOT, run_cli

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
INT8 = BuildOptions(bits=8, calib=str(CALIB))
HARNESS = ("ma_harness_input", "ma_harness_output", "ma_harness_idle", "ma_harness_infer", "ma_harness_halt")

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
                                reason="arm-none-eabi-gcc (gcc-arm-none-eabi, libnewlib-arm-none-eabi) not installed")


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("firmware")
    made = {}
    for name, target, options in (("stm32", "stm32", INT8), ("stm32f407", "stm32f407", INT8),
                                  ("nrf52840", "nrf52840", INT8), ("f407-float", "stm32f407", BuildOptions(bits=32))):
        made[name] = root / name
        build(MODEL, target, made[name], options)
    return made


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def elf_facts(path: Path) -> tuple[dict, dict, bytes]:
    """Sections (name -> header fields), symbols (name -> (value, size, type, section index)), vector table."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        sections = {s.name: {"addr": s["sh_addr"], "size": s["sh_size"], "type": s["sh_type"],
                             "flags": s["sh_flags"], "index": i} for i, s in enumerate(elf.iter_sections())}
        symbols = {s.name: (s["st_value"], s["st_size"], s["st_info"]["type"], s["st_shndx"])
                   for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name}
        vectors = elf.get_section_by_name(".isr_vector").data()
    return sections, symbols, vectors


@pytest.mark.parametrize("name", ["stm32", "stm32f407", "nrf52840", "f407-float"])
def test_elf_has_the_contract_symbols_and_sizes(builds, name):
    directory = builds[name]
    report = json.loads((directory / "report.json").read_text())
    target = get_target(report["target"])
    assert report["elf"] == "model.elf" and report["compiled"] and (directory / "model.elf").is_file()
    sections, symbols, vectors = elf_facts(directory / "model.elf")

    for symbol in HARNESS + ("Reset_Handler", "ma_run", "ma_init"):
        assert symbol in symbols, symbol
    noinit = sections[".noinit"]
    assert noinit["type"] == "SHT_NOBITS"
    item = 4 if report["bits"] == 32 else 1
    for symbol, io in (("ma_harness_input", "input"), ("ma_harness_output", "output")):
        value, size, kind, index = symbols[symbol]
        assert kind == "STT_OBJECT" and index == noinit["index"]
        assert size == item * int(np.prod(report[io]["shape"])) and report["symbols"][symbol]["address"] == value
    for symbol in HARNESS[2:]:
        assert symbols[symbol][2] == "STT_FUNC"

    # vector table at the start of flash: initial SP = end of SRAM, reset vector = Reset_Handler (Thumb bit set)
    initial_sp, reset = np.frombuffer(vectors[:8], "<u4")
    assert sections[".isr_vector"]["addr"] == target.flash_base
    assert initial_sp == target.sram_base + target.sram_bytes and reset == symbols["Reset_Handler"][0] | 1

    allocated = {n: s for n, s in sections.items() if s["flags"] & 0x2 and s["size"]}
    flash = sum(s["size"] for s in allocated.values() if s["type"] != "SHT_NOBITS")
    assert report["flash_bytes"] == flash
    sram = range(target.sram_base, target.sram_base + target.sram_bytes)
    in_ram = {n: s for n, s in allocated.items() if s["addr"] in sram}
    assert set(in_ram) <= {".data", ".bss", ".noinit", ".stack"}
    stack = report["stack"]["bytes"]
    assert in_ram[".stack"]["size"] == stack > 0 and stack % 8 == 0
    assert report["ram_bytes"] == sum(s["size"] for n, s in in_ram.items() if n != ".stack") + stack
    assert report["ram_bytes"] >= report["arena_bytes"] + report["planned"]["io_bytes"]
    assert report["flash_bytes"] >= report["planned"]["flash_bytes"]
    assert {s["name"] for s in report["sections"]} == set(allocated)
    chain = [frame["function"] for frame in report["stack"]["chain"]]
    assert chain[:2] == ["Reset_Handler", "main"] and "ma_run" in chain
    assert sum(frame["frame"] for frame in report["stack"]["chain"]) <= stack


def test_hot_tables_copied_to_ram_where_flash_waits(builds):
    """The hot tables (attention's exp table, the GELU table, LayerNorm's multipliers and biases) are copied to
    RAM by ma_init on a part whose flash has wait states (stm32f407: 5, stm32f746: 7, target table) and stay in
    flash on one without (nrf52840: 0); the planned RAM counts the copies."""
    for name in ("stm32f407", "stm32", "nrf52840"):
        report = json.loads((builds[name] / "report.json").read_text())
        target = get_target(report["target"])
        _, symbols, _ = elf_facts(builds[name] / "model.elf")
        flash = range(target.flash_base, target.flash_base + target.flash_bytes)
        sram = range(target.sram_base, target.sram_base + target.sram_bytes)
        originals = sorted(s for s in symbols if re.fullmatch(r"ma_t_\w+_flash", s))
        assert len(originals) >= 4, originals  # one exp table, the GELU table, a LayerNorm's multipliers and bias
        copied = target.flash_wait_states > 0
        for original in originals:
            assert symbols[original][0] in flash
            copy = symbols.get(original[:-len("_flash")])
            assert (copy is not None and copy[0] in sram and copy[1] == symbols[original][1]) == copied, original
        table_bytes = sum(symbols[original][1] for original in originals) if copied else 0
        assert report["planned"]["table_bytes"] == table_bytes
        assert report["planned"]["ram_bytes"] == (report["arena_bytes"] + report["planned"]["io_bytes"]
                                                  + table_bytes)


def test_one_function_per_layer(builds):
    report = json.loads((builds["stm32"] / "report.json").read_text())
    _, symbols, _ = elf_facts(builds["stm32"] / "model.elf")
    addresses = set()
    for index, layer in enumerate(report["layers"]):
        assert re.fullmatch(rf"ma_layer_{index:03d}_\w+", layer["symbol"]), layer["symbol"]
        value, size, kind, _ = symbols[layer["symbol"]]
        assert kind == "STT_FUNC" and size > 0 and layer["address"] == value & ~1 and layer["code_bytes"] == size
        addresses.add(value)
    # none merged, views included: 31 graph nodes, less the two GELU tables and four residual adds fused into linears
    assert len(addresses) == len(report["layers"]) == 25
    kernels = [layer for layer in report["layers"] if layer["kind"] == "kernel"]
    assert sum(layer["weights_bytes"] for layer in report["layers"]) == report["planned"]["flash_bytes"]
    assert all(layer["arena_bytes"] > 0 for layer in kernels if layer["storage"] == "arena")


def test_renode_files(builds):
    for name, uart, platform in (("stm32", "sysbus.usart1", "stm32f746.repl"),
                                 ("nrf52840", "sysbus.uart0", "nrf52840.repl")):
        target = json.loads((builds[name] / "report.json").read_text())["target"]
        resc = (builds[name] / "renode" / f"{target}.resc").read_text()
        robot = (builds[name] / "renode" / f"{target}.robot").read_text()
        assert f"LoadPlatformDescription @platforms/cpus/{platform}" in resc and "LoadELF $elf" in resc
        assert "@../model.elf" in resc and f"showAnalyzer {uart}" in resc
        assert re.search(rf"\$\{{UART\}}\s+{re.escape(uart)}", robot) and "Wait For Line On Uart" in robot
        assert f"include @${{CURDIR}}/{target}.resc" in robot and "ExecutedInstructions" in robot


def test_reproducible_in_another_folder(builds, tmp_path):
    other = tmp_path / "a" / "b" / "again"
    build(MODEL, "stm32", other, INT8)
    first, second = tree(builds["stm32"]), tree(other)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    for name, content in first.items():
        for path in (str(builds["stm32"]), str(other), str(ROOT), str(tmp_path)):
            assert path.encode() not in content, f"{name} mentions {path}"


def _tiny_linear(path: Path, shape: tuple[int, ...], n: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((shape[-1], n)).astype(np.float32),
                                     "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape[:-1]) + [n])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("shape,n,region", [((1, 16, 700), 400, "flash"), ((1, 300, 256), 8, "SRAM")])
def test_too_large_model_is_refused_before_compiling(tmp_path, shape, n, region):
    model = _tiny_linear(tmp_path / "big.onnx", shape, n)
    out = tmp_path / "out" / "fw"
    line = _one_line_error(run_cli("build", model, "--target", "nrf52840", "-o", out, "--bits", "32"))
    match = re.search(rf"does not fit nrf52840: {region} overflows by ([\d,]+) bytes", line)
    assert match, line
    target = get_target("nrf52840")
    need = 4 * shape[-1] * n if region == "flash" else 4 * (int(np.prod(shape)) + int(np.prod(shape[:-1])) * n)
    have = target.flash_bytes if region == "flash" else target.sram_bytes
    assert int(match.group(1).replace(",", "")) >= need - have > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx"]  # nothing written, not even -o's parent


def test_linker_overflow_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """A target whose flash holds the weights but not the code: GNU ld's overflow becomes the error."""
    import dataclasses

    import mcu_attn.build as build_module

    # the float digits ViT plans 72,928 B of weights: they fit in 74 KB, the code after them does not
    small = dataclasses.replace(get_target("stm32f407"), flash_bytes=74 * 1024)
    monkeypatch.setattr(build_module, "get_target", lambda name: small)
    out = tmp_path / "fw"
    with pytest.raises(UserError) as caught:
        build(MODEL, "stm32f407", out, BuildOptions(bits=32))
    message = str(caught.value)
    assert re.search(r"does not fit stm32f407: flash overflows by [\d,]+ bytes .*reported by the linker", message)
    assert "\n" not in message and list(tmp_path.iterdir()) == []


def test_missing_toolchain_writes_sources_and_says_how_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "fw"
    result = subprocess.run([sys.executable, "-m", "mcu_attn.cli", "build", str(MODEL), "--target", "stm32f407",
                             "-o", str(out), "--bits", "32"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PATH": str(empty)}, timeout=600)
    line = _one_line_error(result)
    assert "arm-none-eabi-gcc" in line and "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi" in line
    assert not (out / "model.elf").exists()
    for name in ("model.c", "weights.c", "main.c", "startup.c", "linker.ld", "Makefile", "CMakeLists.txt",
                 "renode/stm32f407.robot", MARKER):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["compiled"] is False and report["elf"] is None and report["flash_bytes"] > 0


def test_cmake_builds_the_same_firmware_and_no_warnings(builds, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(builds["stm32f407"], copy)
    result = subprocess.run(["make", "-B", "objects"], cwd=copy,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    configure = subprocess.run(["cmake", "-S", ".", "-B", "cmake-build",
                                "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake"],
                               cwd=copy, capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", "cmake-build"], cwd=copy, capture_output=True, text=True,
                              timeout=300)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    made, _, _ = elf_facts(copy / "model.elf")
    cmade, symbols, _ = elf_facts(copy / "cmake-build" / "model.elf")
    for name in (".isr_vector", ".text", ".rodata", ".bss", ".noinit", ".stack"):
        assert cmade[name]["size"] == made[name]["size"], name
    assert all(symbol in symbols for symbol in HARNESS)


def test_host_build_has_layer_symbols_too(tmp_path):
    report = build(MODEL, "host", tmp_path / "host", BuildOptions(bits=32))
    assert all(layer["symbol"].startswith("ma_layer_") for layer in report["layers"])
    assert "static __attribute__((noipa))" in (tmp_path / "host" / "model.c").read_text()
