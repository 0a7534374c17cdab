"""`mcu-attn simulate`: the digits ViT int8 firmware in Unicorn (and QEMU) against the numpy reference.

Builds need arm-none-eabi-gcc (scripts/install-system-deps.sh); without it these tests are skipped.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from support import DIGITS, run_cli

from mcu_attn.errors import UserError

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
TARGETS = ("stm32", "stm32f407", "nrf52840")
SAMPLES = 60

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                                reason="qemu-system-arm not installed (scripts/install-system-deps.sh)")


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    from mcu_attn.build import BuildOptions, build

    root = tmp_path_factory.mktemp("sim-builds")
    made = {}
    for target in TARGETS:
        out = root / target
        build(MODEL, target, out, BuildOptions(bits=8, calib=str(CALIB)))
        made[target] = out
    return made


@pytest.fixture(scope="module")
def results(builds, digits_test) -> dict:
    from mcu_attn.sim.run import SimOptions, simulate

    x, y = digits_test
    options = SimOptions()  # the build directory carries its model and calibration data (DIR/source/)
    return {target: simulate(str(path), x[:SAMPLES], y[:SAMPLES], options) for target, path in builds.items()}


@needs_gcc
@pytest.mark.slow  # the sweep: three targets x 60 images in the emulator
@pytest.mark.parametrize("target", TARGETS)
def test_unicorn_matches_reference(results, target):
    result = results[target]
    assert result["engine"] == "unicorn"
    assert result["samples"] == SAMPLES
    assert result["bit_exact"] is True
    assert result["accuracy"] == result["reference_accuracy"]
    assert result["accuracy"] > 0.8
    for key in ("bit_exact", "accuracy", "reference_accuracy", "instructions", "cycles", "energy_uj", "engine",
                "layers"):
        assert key in result


@needs_gcc
@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_layers_add_up(results, target):
    result = results[target]
    layers = result["layers"]
    assert sum(layer["instructions"] for layer in layers) == result["instructions"]
    # each row is rounded to whole cycles on its own
    assert abs(sum(layer["cycles"] for layer in layers) - result["cycles"]) <= len(layers)
    assert sum(layer["energy_uj"] for layer in layers) == pytest.approx(result["energy_uj"], rel=1e-9)
    symbols = [layer["symbol"] for layer in layers[1:]]
    assert all(symbol.startswith("ma_layer_") for symbol in symbols)
    matmuls = [layer for layer in layers if layer["op"] == "QLinear"]
    assert matmuls and all(layer["instructions"] > 0 for layer in matmuls)
    assert result["memory"]["flash_reads"] > 0 and result["memory"]["sram_reads"] > 0


@needs_gcc
@pytest.mark.slow
def test_estimates_follow_the_targets(results):
    m4, m7, nrf = results["stm32f407"], results["stm32"], results["nrf52840"]
    assert m4["instructions"] == nrf["instructions"]  # same core, same compiler flags, same sample
    assert m4["cycle_breakdown"]["flash_data_wait"] > 0          # 5 wait states at 168 MHz
    assert nrf["cycle_breakdown"]["flash_data_wait"] == 0        # no wait states in the target table
    assert m7["cycles"] < m7["instructions"] < m4["cycles"]      # dual issue vs 1+ cycle per instruction
    for result in results.values():
        assert "estimate" in result["estimate"]["note"]
        expected = result["cycles"] / result["estimate"]["clock_hz"] * result["estimate"]["power_mw"] * 1e3
        assert result["energy_uj"] == pytest.approx(expected, rel=1e-3)


@needs_gcc
@needs_qemu
@pytest.mark.slow  # QEMU's execution trace of one inference
def test_qemu_counts_the_same_instructions(builds, digits_test):
    from mcu_attn.sim.run import SimOptions, simulate

    x, y = digits_test
    unicorn = simulate(str(builds["stm32f407"]), x[:1], y[:1], SimOptions(model=str(MODEL), calib=str(CALIB)))
    qemu = simulate(str(builds["stm32f407"]), x[:1], y[:1],
                    SimOptions(engine="qemu", model=str(MODEL), calib=str(CALIB)))
    assert qemu["engine"] == "qemu" and qemu["machine"] == "netduinoplus2"
    assert qemu["bit_exact"] is True
    assert qemu["instructions"] == unicorn["instructions"]
    assert qemu["cross_check"]["agree"] is True
    assert [layer["instructions"] for layer in qemu["layers"]] == [layer["instructions"] for layer in unicorn["layers"]]


@needs_gcc
@pytest.mark.skipif(shutil.which("renode") is not None, reason="renode is installed: see test_renode_runs")
def test_renode_absent_is_a_clear_error(builds):
    from mcu_attn.sim.run import SimOptions, simulate

    with pytest.raises(UserError, match="renode not found"):
        simulate(str(builds["stm32f407"]), options=SimOptions(engine="renode", model=str(MODEL), calib=str(CALIB)))


@needs_gcc
@pytest.mark.skipif(shutil.which("renode") is None or shutil.which("renode-test") is None,
                    reason="renode is not installed here (it is in the Docker image)")
def test_renode_runs(builds):
    from mcu_attn.sim.run import SimOptions, simulate

    result = simulate(str(builds["stm32f407"]), options=SimOptions(engine="renode", limit=1, model=str(MODEL),
                                                                   calib=str(CALIB)))
    assert result["bit_exact"] is True
    assert result["renode"]["executed_instructions"] > result["instructions"]


@needs_gcc
def test_cli_json_and_table(builds, tmp_path, digits_test):
    x, y = digits_test
    np.save(tmp_path / "x.npy", x[:4])
    np.save(tmp_path / "y.npy", y[:4])
    common = (builds["nrf52840"], "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    done = run_cli("simulate", *common, "--json", cwd=tmp_path)  # from anywhere: no --model/--calib needed
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["bit_exact"] is True and payload["samples"] == 4
    assert {"bit_exact", "accuracy", "reference_accuracy", "instructions", "cycles", "energy_uj", "engine",
            "layers"} <= set(payload)
    done = run_cli("simulate", *common, "--limit", "2", "--top", "3")
    assert done.returncode == 0, done.stderr
    assert "bit-exact" in done.stdout and "estimate" in done.stdout and "instructions" in done.stdout


@needs_gcc
def test_bad_input_exits_2(builds, tmp_path):
    nowhere = tmp_path / "missing"
    bad_data = tmp_path / "bad.npy"
    np.save(bad_data, np.zeros((3, 5, 5), np.float32))
    no_elf = tmp_path / "no_elf"
    shutil.copytree(builds["stm32f407"], no_elf)
    (no_elf / "model.elf").unlink()
    cases = [
        ((nowhere,), "no such build directory"),
        ((tmp_path,), "no report.json"),
        ((no_elf,), "no firmware ELF"),
        ((builds["stm32f407"], "--data", bad_data, "--model", MODEL, "--calib", CALIB), "shape"),
        ((builds["nrf52840"], "--engine", "qemu"), "QEMU has no machine"),
        ((builds["stm32f407"], "--limit", "0"), "--limit"),
        ((builds["stm32f407"], "--timeout", "0"), "--timeout"),
    ]
    for args, message in cases:
        done = run_cli("simulate", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
