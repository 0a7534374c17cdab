"""`simulate` keeps what it measured when samples fail.

The firmware is a float build of the digits ViT for the STM32F407 whose harness was edited and relinked with its
own Makefile: when the first input value is 1234 it writes to 0x90000000 (unmapped: a bus fault on the device,
UC_ERR_WRITE_UNMAPPED in Unicorn), and when it is 4321 it spins forever (a timeout). Every other sample runs the
model unchanged. The failed samples are listed with their index and error, the others are compared with the
reference and profiled, and the command exits with 1 after printing the results.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcu_attn.build import build
from mcu_attn.options import BuildOptions
from mcu_attn.sim.run import SimOptions, simulate

from support import DIGITS, run_cli

FAULT, HANG = 1234.0, 4321.0
INJECTED = """void ma_harness_infer(void)
{
    if (ma_harness_input[0] == 1234.0f) {
        *(volatile uint32_t *)0x90000000u = 1u; /* unmapped: the fault under test */
    }
    while (ma_harness_input[0] == 4321.0f) {
        __asm__ volatile("" ::: "memory"); /* never returns: the timeout under test */
    }
"""

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
                                reason="arm-none-eabi-gcc (gcc-arm-none-eabi, libnewlib-arm-none-eabi) not installed")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faulty") / "fw"
    build(DIGITS / "digits_vit.onnx", "stm32f407", out, BuildOptions(bits=32))
    main = out / "main.c"
    text = main.read_text()
    assert text.count("void ma_harness_infer(void)\n{\n") == 1
    main.write_text(text.replace("void ma_harness_infer(void)\n{\n", INJECTED))
    done = subprocess.run(["make", "--no-print-directory", "model.elf"], cwd=out, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _samples(*firsts: float) -> np.ndarray:
    data = np.load(DIGITS / "data" / "test_x.npy")[:len(firsts)].astype(np.float32).copy()
    for index, first in enumerate(firsts):
        if first is not None:
            data[index].reshape(-1)[0] = first
    return data


def test_a_fault_and_a_timeout_are_reported_and_the_rest_still_runs(faulty):
    data = _samples(None, FAULT, HANG, None)
    # a plain run of this model takes ~0.1 s of host time: 5 s only bounds the hang
    result = simulate(str(faulty), data, None, SimOptions(timeout_s=5))
    failed = {entry["sample"]: entry["error"] for entry in result["failed_samples"]}
    assert sorted(failed) == [1, 2]
    assert "UC_ERR_WRITE_UNMAPPED" in failed[1] and "ma_harness_infer" in failed[1]
    assert "did not reach" in failed[2] and "within 5 s" in failed[2]
    assert result["completed_samples"] == 2 and result["samples"] == 4 and result["profiled_sample"] == 0
    assert result["mismatched_samples"] == 0  # the samples that ran match the reference
    assert result["bit_exact"] is False and result["within_tolerance"] is False  # a failed sample matches nothing
    assert result["instructions"] > 0 and result["cycles"] > 0


def test_the_first_sample_that_runs_is_profiled(faulty):
    clean = simulate(str(faulty), _samples(None), None, SimOptions())
    result = simulate(str(faulty), _samples(FAULT, None), None, SimOptions())
    assert [entry["sample"] for entry in result["failed_samples"]] == [0]
    assert result["profiled_sample"] == 1 and result["completed_samples"] == 1
    # the profiled inference is the same code path: its count differs from sample 0's only by the data
    assert result["instructions"] > 0.9 * clean["instructions"]


def test_every_sample_failing_is_one_error(faulty):
    from mcu_attn.errors import UserError

    with pytest.raises(UserError, match="every sample failed; sample 0: .*UC_ERR_WRITE_UNMAPPED"):
        simulate(str(faulty), _samples(FAULT, FAULT), None, SimOptions())


def test_cli_prints_the_results_then_the_failures_and_exits_1(faulty, tmp_path):
    np.save(tmp_path / "x.npy", _samples(None, FAULT, None))
    result = run_cli("simulate", faulty, "--data", tmp_path / "x.npy", "--json")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert [entry["sample"] for entry in payload["failed_samples"]] == [1]
    assert result.stderr.strip().splitlines() == [f"mcu-attn: sample 1 failed: {payload['failed_samples'][0]['error']}"]
    # (support.run_cli turns progress lines off; the failure lines are all that is left on stderr)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_qemu_honours_the_timeout_and_keeps_the_other_samples(faulty):
    """On QEMU the write to 0x90000000 is a bus fault whose handler never returns: no result line, so the
    sample fails after --timeout seconds."""
    # a healthy QEMU run (boot, inference, result line) takes ~1 s of host time: 15 s leaves room on a busy host
    result = simulate(str(faulty), _samples(None, FAULT, None), None, SimOptions(engine="qemu", timeout_s=15))
    failed = {entry["sample"]: entry["error"] for entry in result["failed_samples"]}
    assert sorted(failed) == [1] and "no MA-RESULT line within 15 s" in failed[1]
    assert result["completed_samples"] == 2 and result["cross_check"]["agree"]
