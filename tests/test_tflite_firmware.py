"""The committed int8 Keras ViT .tflite as firmware: built for stm32 without calibration data, bit-exact with our
integer reference in the emulator, and side by side with TensorFlow Lite Micro (`mcu-attn compare`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import DIGITS, ROOT, run_cli

TFLITE = ROOT / "examples" / "digits_vit_keras" / "digits_vit_keras_tflm_int8.tflite"
TEST_X, TEST_Y = DIGITS / "data" / "test_x.npy", DIGITS / "data" / "test_y.npy"


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "fw"
    done = run_cli("build", TFLITE, "--target", "stm32", "-o", out)  # no --calib: the file has every scale
    assert done.returncode == 0, done.stderr
    return out


def test_builds_without_calibration_and_runs_bit_exact(firmware) -> None:
    report = json.loads((firmware / "report.json").read_text())
    assert report["model"] == "source/model.tflite" and (firmware / "source" / "model.tflite").is_file()
    assert report["quantization"]["observer_counts"] == {"model": 35}
    done = run_cli("simulate", firmware, "--data", TEST_X, "--labels", TEST_Y, "--limit", "24", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bit_exact"]


def test_compare_with_tflm_on_a_few_samples(firmware) -> None:
    done = run_cli("compare", firmware, "--tflm", TFLITE, "--data", TEST_X, "--labels", TEST_Y, "--limit", "8",
                   "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["same_int8_inputs"] and result["same_output_quantization"] and result["bit_exact"]
    assert result["samples"] == 8 and result["disagreements"] <= 1
    # our kernels round softmax, LayerNorm and GELU their own way: logits move by a few LSBs (23 at most over the
    # 450 test images); a scale or layout mistake would move them by hundreds
    assert 0 < result["lsb"]["max"] < 64
    # TFLM's arena for this file, bisected to the byte (deterministic for the pinned tflite-micro), is about 6x
    # our whole peak RAM, which on this part (flash with wait states) holds the hot tables ma_init copies from
    # flash (about 2.9 KB; 11x without them)
    assert result["tflm"]["arena_bytes"] > 5 * result["ours"]["ram_bytes"]
    table = run_cli("compare", firmware, "--tflm", TFLITE, "--data", TEST_X, "--limit", "2")
    assert table.returncode == 0 and "top-1 agreement" in table.stdout and "tensor arena" in table.stdout


def test_compare_without_the_extra_says_how_to_install_it(firmware) -> None:
    code = ("import sys; sys.modules['tflite_micro'] = None; from mcu_attn.cli import main; "
            f"sys.exit(main(['compare', {str(firmware)!r}, '--tflm', {str(TFLITE)!r}, '--data', {str(TEST_X)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "mcu-attn: error: compare runs TensorFlow Lite Micro's interpreter, which is not installed: "
        "pip install 'mcu-attn[tflm]' (TensorFlow Lite Micro's Python interpreter; no TensorFlow)"]


@pytest.mark.slow
def test_compare_on_the_test_split(firmware) -> None:
    done = run_cli("compare", firmware, "--tflm", TFLITE, "--data", TEST_X, "--labels", TEST_Y, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["bit_exact"] and result["samples"] == 450
    assert result["accuracy"]["ours"] >= result["accuracy"]["tflm"] - 0.005
    assert result["agreement"] >= 0.99
