"""Firmware in QEMU: the harness boots, prints its MA-RESULT line on the console UART, and reads a sample that
`-device loader` placed at `ma_harness_input` (the buffer is .noinit, so start-up leaves it alone).

- stm32f407 on `-M netduinoplus2` (an STM32F405: same core, flash at 0x08000000, USART1 on the first -serial),
  int8 digits ViT: the printed output equals the numpy integer reference, bit for bit, on several test images;
- the generic cores on the MPS2 images their table entries name (mps2-an386/an500/an505) boot and print too.
Every QEMU run has a timeout; QEMU never exits by itself (the harness halts in a loop), so it is killed.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from mcu_attn.build import BuildOptions, build

from support import DIGITS

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
RESULT = re.compile(rb"MA-RESULT checksum=([0-9a-f]{8}) cycles=(\d+) out=([0-9a-f]*)\r?\n")
TIMEOUT_S = 60  # the digits ViT needs well under a second of emulated time; QEMU start-up dominates

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("arm-none-eabi-gcc", "make", "qemu-system-arm")),
    reason="needs arm-none-eabi-gcc, make and qemu-system-arm")


def run_qemu(machine: str, elf: Path, loads: list[tuple[Path, int]] = ()) -> tuple[bytes, bytes]:
    """(checksum hex, output bytes) of the first MA-RESULT line QEMU prints on the console."""
    command = ["qemu-system-arm", "-M", machine, "-nographic", "-kernel", str(elf)]
    for path, address in loads:
        command += ["-device", f"loader,file={path},addr={address:#x}"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while (match := RESULT.search(output)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise AssertionError(f"no MA-RESULT line from QEMU {machine} within {TIMEOUT_S} s: {output[-300:]!r}")
            ready, _, _ = select.select([process.stdout], [], [], remaining)
            if ready:
                output += os.read(process.stdout.fileno(), 4096)
    finally:
        process.kill()
        process.wait(timeout=30)
    checksum, _, out = match.groups()
    data = bytes.fromhex(out.decode())
    assert f"{zlib.crc32(data):08x}".encode() == checksum
    return checksum, data


@pytest.fixture(scope="module")
def f407(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qemu") / "f407"
    build(MODEL, "stm32f407", out, BuildOptions(bits=8, calib=str(CALIB)))
    return out


def test_boots_and_prints_the_result_line(f407):
    _, data = run_qemu("netduinoplus2", f407 / "model.elf")
    assert len(data) == 10  # ten int8 logits


def test_loader_places_the_input_and_the_output_is_bit_exact(f407, digits_test, tmp_path):
    from mcu_attn.api import import_model
    from mcu_attn.passes.quantize import quantize_graph
    from mcu_attn.reference.interpreter import run
    from mcu_attn.reference.qmath import quantize

    report = json.loads((f407 / "report.json").read_text())
    address = report["symbols"]["ma_harness_input"]["address"]
    graph = quantize_graph(import_model(MODEL), np.load(CALIB), 8)  # deterministic: the graph the build used
    in_type = graph.type(graph.inputs[0])
    images = digits_test[0][:3].astype(np.float32).reshape((3,) + in_type.shape)
    for index, image in enumerate(images):
        sample = quantize(image, in_type.quant.scale[0], in_type.quant.zero_point[0]).astype(np.int8)
        expected = run(graph, {graph.inputs[0]: sample})[graph.outputs[0]].astype(np.int8).tobytes()
        path = tmp_path / f"sample{index}.bin"
        path.write_bytes(sample.tobytes())
        assert len(sample.tobytes()) == report["symbols"]["ma_harness_input"]["size"]
        _, data = run_qemu("netduinoplus2", f407 / "model.elf", [(path, address)])
        assert data == expected, index


@pytest.mark.parametrize("target,machine", [("cortex-m4", "mps2-an386"), ("cortex-m7", "mps2-an500"),
                                            ("cortex-m33", "mps2-an505")])
def test_generic_cores_boot_on_their_mps2_machine(tmp_path, target, machine):
    report = build(MODEL, target, tmp_path / target, BuildOptions(bits=32))
    assert report["qemu_machine"] == machine
    _, data = run_qemu(machine, tmp_path / target / "model.elf")
    assert len(data) == 4 * 10  # ten float logits
