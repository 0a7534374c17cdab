"""The bad-input battery: every command-line input a user can get wrong, run through `mcu_attn.cli.main`.

Each case must end with exactly one line on stderr (`mcu-attn: error: ...`, containing the case's phrase), exit
code 2, no traceback (any exception other than the handled one fails the test), no warning printed (warnings are
shown every time, not once), and nothing written: every file in the working directory and in the build
directory `simulate` reads is byte-identical afterwards. `python tests/test_cli_battery.py` prints the table of
cases and messages (the one in the closing note).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from support import DIGITS

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
DATA = DIGITS / "data" / "test_x.npy"
LABELS = DIGITS / "data" / "test_y.npy"
HAVE_TOOLCHAIN = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("make") is not None


def _npy(tmp: Path, name: str, array) -> str:
    np.save(tmp / name, array, allow_pickle=True)
    return str(tmp / name)


def _file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _cycle_model(tmp: Path, payload) -> str:
    return _file(tmp, "cycles.json", payload if isinstance(payload, str) else json.dumps(payload))


def _report(build_dir: Path, tmp: Path, change: Callable[[dict], None]) -> str:
    """A copy of the build directory whose report.json `change` edited."""
    copy = tmp / "fw"
    shutil.copytree(build_dir, copy)
    report = json.loads((copy / "report.json").read_text())
    change(report)
    (copy / "report.json").write_text(json.dumps(report))
    return str(copy)


def _set(path: str, value) -> Callable[[dict], None]:
    def change(report: dict) -> None:
        *parents, key = path.split(".")
        node = report
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
    return change


_DELETE = object()
SIM = "simulate"
M = str(MODEL)

# name -> (argv(tmp, build_dir) -> list, phrase the one error line must contain)
CASES: dict[str, tuple[Callable[[Path, Path], list], str]] = {
    # ---- numbers on the command line
    "--tolerance below 0": (lambda t, b: ["eval", M, "--data", str(DATA), "--float", "--attention", "auto",
                                          "--tolerance", "-0.1"], "--tolerance -0.1"),
    "--tolerance above 1": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--calib", str(CALIB),
                                          "--attention", "auto", "--tolerance", "1.5"], "--tolerance 1.5"),
    "--tolerance NaN": (lambda t, b: ["eval", M, "--data", str(DATA), "--float", "--tolerance", "nan"],
                        "--tolerance nan"),
    "--tolerance not a number": (lambda t, b: ["eval", M, "--data", str(DATA), "--tolerance", "abc"],
                                 "invalid float value"),
    "--bits 7": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--bits", "7"], "invalid choice"),
    "--sram-budget 0": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--bits", "32",
                                      "--sram-budget", "0"], "--sram-budget 0"),
    "--sram-budget too small": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--bits", "32",
                                              "--sram-budget", "100"], "the smallest plan needs"),
    "--prefix not a C identifier": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--bits", "32",
                                                  "--prefix", "1-bad"], "--prefix"),
    "--target unknown": (lambda t, b: ["build", M, "--target", "esp32", "-o", str(t / "o")], "unknown target"),
    "--attention garbage": (lambda t, b: ["eval", M, "--data", str(DATA), "--float", "--attention", "local:x"],
                            "--attention"),
    "--attention window 0": (lambda t, b: ["eval", M, "--data", str(DATA), "--float", "--attention", "local:0"],
                             "at least 1"),
    "--limit 0": (lambda t, b: [SIM, str(b), "--limit", "0"], "--limit 0"),
    "--timeout 0": (lambda t, b: [SIM, str(b), "--timeout", "0"], "--timeout 0"),
    "--top negative": (lambda t, b: [SIM, str(b), "--top", "-1"], "--top -1"),
    # ---- sample files
    "--data missing": (lambda t, b: ["eval", M, "--float", "--data", str(t / "absent.npy")], "no such file"),
    "--data not .npy": (lambda t, b: ["eval", M, "--float", "--data", _file(t, "x.npy", "hello")], "not a .npy"),
    "--data pickled objects": (lambda t, b: ["eval", M, "--float", "--data",
                                             _npy(t, "x.npy", np.array([{"a": 1}] * 3, dtype=object))],
                               "not a .npy array"),
    "--data complex": (lambda t, b: ["eval", M, "--float", "--data", _npy(t, "x.npy", np.ones((2, 8, 8), complex))],
                       "complex"),
    "--data datetime": (lambda t, b: ["eval", M, "--float", "--data",
                                      _npy(t, "x.npy", np.zeros((2, 8, 8), "datetime64[s]"))], "datetime"),
    "--data bool": (lambda t, b: ["eval", M, "--float", "--data", _npy(t, "x.npy", np.ones((2, 8, 8), bool))],
                    "bool"),
    "--data strings": (lambda t, b: ["eval", M, "--float", "--data", _npy(t, "x.npy", np.full((2, 8, 8), "a"))],
                       "str"),
    "--data structured": (lambda t, b: ["eval", M, "--float", "--data",
                                        _npy(t, "x.npy", np.zeros((2, 8, 8), [("a", "f4"), ("b", "i4")]))],
                          "structured"),
    "--data scalar": (lambda t, b: ["eval", M, "--float", "--data", _npy(t, "x.npy", np.float32(1))],
                      "non-empty stack"),
    "--data wrong shape": (lambda t, b: ["eval", M, "--float", "--data", _npy(t, "x.npy", np.ones((2, 7, 8)))],
                           "needs [1, 8, 8]"),
    "--data NaN": (lambda t, b: ["eval", M, "--float", "--data", _npy(t, "x.npy", np.full((2, 8, 8), np.nan))],
                   "NaN"),
    "--data beyond float32": (lambda t, b: ["eval", M, "--float", "--data",
                                            _npy(t, "x.npy", np.full((2, 8, 8), 1e300))], "float32"),
    "--labels float": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--labels",
                                     _npy(t, "y.npy", np.zeros(450, np.float32))], "integer class"),
    "--labels bool": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--labels",
                                    _npy(t, "y.npy", np.zeros(450, bool))], "bool"),
    "--labels count": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--labels",
                                     _npy(t, "y.npy", np.zeros(3, np.int64))], "3 labels for 450 samples"),
    "--labels negative": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--labels",
                                        _npy(t, "y.npy", np.full(450, -1))], "-1"),
    "--labels beyond the classes": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--labels",
                                                  _npy(t, "y.npy", np.full(450, 10))], "10 classes"),
    "--labels without --data": (lambda t, b: [SIM, str(b), "--labels", str(LABELS)], "--labels needs --data"),
    "--calib 3e38": (lambda t, b: ["eval", M, "--data", str(DATA), "--bits", "8", "--calib",
                                   _npy(t, "c.npy", np.full((4, 8, 8), 3e38, np.float32))], "calibration"),
    "--calib 1e300": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--calib",
                                    _npy(t, "c.npy", np.full((4, 8, 8), 1e300))], "float32"),
    "--calib -3e38..3e38": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o"), "--calib",
                                          _npy(t, "c.npy", np.stack([np.full((8, 8), 3e38, np.float32),
                                                                     np.full((8, 8), -3e38, np.float32)]))],
                            "calibration"),
    "--bits 8 without --calib": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / "o")], "--calib"),
    # ---- output paths
    "--outputs is a directory": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--outputs", str(t)],
                                 "directory"),
    "--outputs in a missing directory": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--outputs",
                                                       str(t / "no" / "y.npy")], "does not exist"),
    "--outputs name too long": (lambda t, b: ["eval", M, "--float", "--data", str(DATA), "--outputs",
                                              str(t / ("y" * 300))], "too long"),
    "--outputs is the model": (lambda t, b: ["eval", _copy(t, MODEL), "--float", "--data", str(DATA), "--outputs",
                                             str(t / MODEL.name)], "input file"),
    "-o is a file": (lambda t, b: ["build", M, "--target", "host", "-o", _file(t, "f", "x"), "--bits", "32"],
                     "not a directory"),
    "-o holds foreign files": (lambda t, b: ["build", M, "--target", "host", "-o", _foreign(t), "--bits", "32"],
                               "--force"),
    "-o name too long": (lambda t, b: ["build", M, "--target", "host", "-o", str(t / ("d" * 300)), "--bits", "32"],
                         "too long"),
    "-o unwritable": (lambda t, b: ["build", M, "--target", "host", "-o", "/proc/self/fdinfo/out", "--bits", "32"],
                      "cannot write"),
    # ---- --cycle-model
    "--cycle-model missing": (lambda t, b: [SIM, str(b), "--cycle-model", str(t / "none.json")], "no such file"),
    "--cycle-model not JSON": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(t, "{")], "not JSON"),
    "--cycle-model a list": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(t, [1])], "expected an object"),
    "--cycle-model cores a list": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(t, {"cores": [1]})],
                                   "cores"),
    "--cycle-model unknown core": (lambda t, b: [SIM, str(b), "--cycle-model",
                                                 _cycle_model(t, {"cores": {"cortex-m99": {"alu": 1}}})],
                                   "cortex-m99"),
    "--cycle-model unknown key": (lambda t, b: [SIM, str(b), "--cycle-model",
                                                _cycle_model(t, {"cores": {"cortex-m4": {"speed": 1}}})], "speed"),
    "--cycle-model negative cost": (lambda t, b: [SIM, str(b), "--cycle-model",
                                                  _cycle_model(t, {"cores": {"cortex-m4": {"load": -2}}})], "load"),
    "--cycle-model NaN cost": (lambda t, b: [SIM, str(b), "--cycle-model",
                                             _cycle_model(t, '{"cores": {"cortex-m4": {"mac": NaN}}}')], "mac"),
    "--cycle-model string cost": (lambda t, b: [SIM, str(b), "--cycle-model",
                                                _cycle_model(t, {"cores": {"cortex-m4": {"alu": "1"}}})], "alu"),
    "--cycle-model zero issue factor": (lambda t, b: [SIM, str(b), "--cycle-model",
                                                      _cycle_model(t, {"cores": {"cortex-m4": {"issue_factor": 0}}})],
                                        "issue_factor"),
    "--cycle-model fractional cache lines": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(
        t, {"flash": {"stm32f407": {"data_lines": 2.5}}})], "data_lines"),
    "--cycle-model negative wait states": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(
        t, {"flash": {"stm32f407": {"wait_states": -1}}})], "wait_states"),
    "--cycle-model zero line bytes": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(
        t, {"flash": {"stm32f407": {"line_bytes": 0}}})], "line_bytes"),
    "--cycle-model prefetch not bool": (lambda t, b: [SIM, str(b), "--cycle-model", _cycle_model(
        t, {"flash": {"stm32f407": {"prefetch": 1}}})], "prefetch"),
    # ---- the build directory simulate reads
    "simulate: no directory": (lambda t, b: [SIM, str(t / "none")], "no such build directory"),
    "simulate: a host build": (lambda t, b: [SIM, _host_build(t)], "built for the host"),
}

# report.json fields made wrong, one at a time (simulate must refuse each in one line)
REPORT_FIELDS = {
    "not an object": (None, "report.json"),
    "target missing": (_set("target", _DELETE), "target"),
    "target unknown": (_set("target", "esp32"), "esp32"),
    "target a number": (_set("target", 7), "target"),
    "bits a string": (_set("bits", "8"), "bits"),
    "bits 7": (_set("bits", 7), "bits"),
    "input missing": (_set("input", _DELETE), "input"),
    "input dtype unknown": (_set("input.dtype", "int4"), "dtype"),
    "input shape negative": (_set("input.shape", [-1, 8, 8]), "shape"),
    "input shape strings": (_set("input.shape", ["a"]), "shape"),
    "input shape huge": (_set("input.shape", [1, 65536, 65536]), "shape"),
    "input scale negative": (_set("input.scale", -1.0), "scale"),
    "input scale string": (_set("input.scale", "x"), "scale"),
    "input scale NaN": (_set("input.scale", float("nan")), "scale"),
    "input zero point beyond int8": (_set("input.zero_point", 300), "zero_point"),
    "output dtype a number": (_set("output.dtype", 5), "dtype"),
    "elf a number": (_set("elf", 5), "elf"),
    "elf outside the directory": (_set("elf", "../../../../etc/passwd"), "elf"),
    "elf missing file": (_set("elf", "gone.elf"), "gone.elf"),
    "layers not a list": (_set("layers", {"a": 1}), "layers"),
    "layer not an object": (_set("layers", [1, 2]), "layers"),
    "layer symbol a number": (_set("layers.0.symbol", 5), "symbol"),
    "layer macs negative": (_set("layers.0.macs", -5), "macs"),
    "macs a string": (_set("macs", "many"), "macs"),
    "model a number": (_set("model", 5), "model"),
    "model_sha256 a number": (_set("model_sha256", 5), "model_sha256"),
    "calib a list": (_set("calib", [1]), "calib"),
    "options not an object": (_set("options", 5), "options"),
    "options.attention garbage": (_set("options.attention", "local:x"), "attention"),
    "options.tolerance a string": (_set("options.tolerance", "x"), "tolerance"),
}


def _copy(tmp: Path, source: Path) -> str:
    shutil.copy(source, tmp / source.name)
    return str(tmp / source.name)


def _foreign(tmp: Path) -> str:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep")
    return str(tmp / "mine")


def _host_build(tmp: Path) -> str:
    (tmp / "h").mkdir()
    (tmp / "h" / "report.json").write_text(json.dumps({"target": "host"}))
    return str(tmp / "h")


def _snapshot(*roots: Path) -> dict:
    return {str(p): (p.read_bytes() if p.is_file() else None) for root in roots for p in sorted(root.rglob("*"))}


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`mcu-attn argv` in this process: (exit code, stdout, stderr), every warning printed, progress lines off
    (as `support.run_cli` has them: a long step on a busy host would add one)."""
    import os

    from mcu_attn.cli import main

    before = os.environ.get("MCU_ATTN_PROGRESS")
    os.environ["MCU_ATTN_PROGRESS"] = "0"
    out, err = io.StringIO(), io.StringIO()
    try:
        with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
            warnings.simplefilter("always")
            code = main([str(a) for a in argv])
    finally:
        if before is None:
            del os.environ["MCU_ATTN_PROGRESS"]
        else:
            os.environ["MCU_ATTN_PROGRESS"] = before
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    """An int8 Cortex-M build of the digits ViT (report.json with scales, layers, calibration file)."""
    from mcu_attn.build import build
    from mcu_attn.options import BuildOptions

    if not HAVE_TOOLCHAIN:
        pytest.skip("arm-none-eabi-gcc not installed")
    out = tmp_path_factory.mktemp("battery") / "fw"
    build(MODEL, "stm32f407", out, BuildOptions(bits=8, calib=str(CALIB)))
    return out


def _check(argv: list[str], phrase: str, watched: list[Path]) -> str:
    before = _snapshot(*watched)
    code, _, err = run_main(argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith("mcu-attn: error: ") and phrase in lines[0], lines[0]
    assert _snapshot(*watched) == before  # nothing written, nothing changed
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_cli_input(case, tmp_path, build_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, phrase = CASES[case]
    _check(make(tmp_path, build_dir), phrase, [tmp_path, build_dir])


@pytest.mark.parametrize("field", sorted(REPORT_FIELDS))
def test_bad_report_json(field, tmp_path, build_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    change, phrase = REPORT_FIELDS[field]
    if field == "not an object":
        copy = _report(build_dir, tmp_path, lambda r: None)
        (Path(copy) / "report.json").write_text("[1, 2]")
    else:
        copy = _report(build_dir, tmp_path, change)
    _check([SIM, copy, "--limit", "1"], phrase, [tmp_path, build_dir])


def main() -> None:
    """Print the battery as a markdown table: case, the error line, the exit code (run from the repository)."""
    import tempfile

    from mcu_attn.build import build
    from mcu_attn.options import BuildOptions

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        fw = root / "fw-base"
        build(MODEL, "stm32f407", fw, BuildOptions(bits=8, calib=str(CALIB)))
        print("| bad input | exit | message |\n|---|---|---|")
        rows = [(name, lambda t, make=make: make(t, fw)) for name, (make, _) in sorted(CASES.items())]
        rows += [(f"report.json: {name}", lambda t, name=name: [SIM, _report_case(fw, t, name), "--limit", "1"])
                 for name in sorted(REPORT_FIELDS)]
        for index, (name, make) in enumerate(rows):
            case_dir = root / f"case{index}"
            case_dir.mkdir()
            code, _, err = run_main(make(case_dir))
            message = err.strip().replace(str(case_dir), "T").replace(str(root), "R").replace("|", "\\|")
            print(f"| {name} | {code} | `{message}` |")


def _report_case(build_dir: Path, tmp: Path, name: str) -> str:
    change, _ = REPORT_FIELDS[name]
    copy = _report(build_dir, tmp, (lambda r: None) if name == "not an object" else change)
    if name == "not an object":
        (Path(copy) / "report.json").write_text("[1, 2]")
    return copy


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
