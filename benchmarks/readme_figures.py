"""Every measured figure in README.md and docs/, regenerated from the commands that print it.

A figure is a marked region of a Markdown file:

    <!-- figure: digits-accuracy -->
    ...text and table, written by this script...
    <!-- /figure: digits-accuracy -->

and one function here that returns the region's text. The function runs the same `mcu-attn` commands a
reader would (through the CLI, in a fresh interpreter, reading their `--json` output or `report.json`), and
the text it returns names those commands, so every number stands beside the command that prints it.

    python benchmarks/readme_figures.py --check [NAME ...]     # exit 1 and a diff when a region differs
    python benchmarks/readme_figures.py --write [NAME ...]     # rewrite the regions
    python benchmarks/readme_figures.py --list                 # the figures, their files and kinds

Kinds: `cheap` figures (reference runs and host builds, seconds) are checked by tests/test_figures.py in the
default test run; `long` ones (reference runs that take minutes) and `emulated` ones (firmware in the emulator, minutes) by the `slow` job (`pytest -m slow`,
which CI runs); `tflm` ones need the `[tflm]` extra (`pip install -e ".[tflm]"`) and are checked by the slow
job when it is installed (CI installs it).

Adding a figure (e.g. after changing a kernel, to show its speed) is one function:

    @figure("my-table", "docs/my-doc.md", kind="emulated")
    def my_table(run: Runs) -> str:
        result = run.simulate(run.build(DIGITS_MODEL, "stm32f407", bits=8))
        return f"`mcu-attn simulate ...`: {result['instructions']:,} instructions\n"

then put the two marker lines where it goes in the document and run `--write my-table`. `Runs` runs each
command once per process and caches it, so figures that share a build or a simulation pay for it once. A
figure whose numbers move (a faster kernel) is regenerated with `--write`; the check then passes again.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import math
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mcu_attn.sim.report import estimate
from mcu_attn.sweep import shown as point_text

import constant_figures
from figure_text import prose, span, table

ROOT = Path(__file__).resolve().parents[1]
DIGITS = "examples/digits_vit"
DIGITS_MODEL = f"{DIGITS}/digits_vit.onnx"
CALIB = f"{DIGITS}/data/calib.npy"
TEST_X = f"{DIGITS}/data/test_x.npy"
TEST_Y = f"{DIGITS}/data/test_y.npy"
KINDS = ("cheap", "long", "emulated", "tflm")


@dataclass(frozen=True)
class Figure:
    name: str
    document: str         # path relative to the repository root
    kind: str             # one of KINDS
    make: Callable[["Runs"], str]


FIGURES: dict[str, Figure] = {}


def figure(name: str, document: str, kind: str = "cheap"):
    """Register the decorated function as the figure `name` of `document`."""
    assert kind in KINDS, kind

    def register(make: Callable[["Runs"], str]) -> Callable[["Runs"], str]:
        assert name not in FIGURES, name
        FIGURES[name] = Figure(name, document, kind, make)
        return make
    return register


for _name, (_document, _print) in constant_figures.FIGURES.items():  # tables of constants: docs only
    FIGURES[_name] = Figure(_name, _document, "cheap", lambda run, _print=_print: _print())


class Runs:
    """The commands figures measure with, each run once (per arguments) and cached; builds go to a temporary
    directory removed by `close()`."""

    def __init__(self) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="mcu-attn-figures-")
        self.scratch = self._scratch.name
        self._cache: dict[tuple, object] = {}

    def close(self) -> None:
        self._scratch.cleanup()

    def cli(self, *args: str) -> str:
        """stdout of `mcu-attn ARGS` run from the repository root; a failure stops the script."""
        key = ("cli", *args)
        if key not in self._cache:
            done = subprocess.run([sys.executable, "-m", "mcu_attn.cli", *args], cwd=ROOT, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise SystemExit(f"mcu-attn {' '.join(args)} failed: {done.stderr.strip()}")
            self._cache[key] = done.stdout
        return self._cache[key]

    def json(self, *args: str) -> dict:
        return json.loads(self.cli(*args, "--json"))

    def build(self, model: str, target: str, bits: int, *options: str) -> str:
        """`mcu-attn build MODEL --target T -o DIR --bits B --calib CALIB OPTIONS`; returns DIR."""
        out = str(Path(self.scratch) / f"build-{len(self._cache)}")
        key = ("build", model, target, bits, *options)
        if key not in self._cache:
            self.cli("build", model, "--target", target, "-o", out, "--bits", str(bits), "--calib", CALIB, *options)
            self._cache[key] = out
        return self._cache[key]

    def report(self, directory: str) -> dict:
        return json.loads((Path(directory) / "report.json").read_text())

    def simulate(self, directory: str, samples: int = 60) -> dict:
        return self.json("simulate", directory, "--data", TEST_X, "--labels", TEST_Y, "--limit", str(samples))

    def script(self, *args: str) -> str:
        """stdout of `python ARGS` (a benchmark script) from the repository root."""
        key = ("script", *args)
        if key not in self._cache:
            done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"python {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
            self._cache[key] = done.stdout
        return self._cache[key]


# ---------------------------------------------------------------------------------------------- the figures
FIRMWARE_TARGETS = (("stm32", "F746, M7 216 MHz"), ("stm32f407", "M4 168 MHz"), ("nrf52840", "M4 64 MHz"))
EVAL = f"mcu-attn eval {DIGITS_MODEL} --data {TEST_X} --labels {TEST_Y}"
BUILD = f"mcu-attn build {DIGITS_MODEL} --target T -o DIR --calib {CALIB}"
SIMULATE = f"mcu-attn simulate DIR --data {TEST_X} --labels {TEST_Y}"


@figure("digits-accuracy", "README.md")
def digits_accuracy(run: Runs) -> str:
    rows = []
    for label, bits in (("float (`--bits 32`)", 32), ("int8", 8), ("int4", 4)):
        mode = ["--float"] if bits == 32 else ["--bits", str(bits), "--calib", CALIB]
        accuracy = run.json("eval", DIGITS_MODEL, "--data", TEST_X, "--labels", TEST_Y, *mode)["accuracy"]
        report = run.report(run.build(DIGITS_MODEL, "host", bits))
        check = report["host_check"]
        # a float error depends on the machine's compiler and BLAS: its decade is the figure, not its digits
        agreement = ("bit-exact" if check["bit_exact"] and bits != 32
                     else f"max error < 1e{math.ceil(math.log10(max(check['max_abs_error'], 1e-30)))}")
        rows.append([label, f"{accuracy:.4f}", f"{report['weights_bytes']:,} B", f"{report['flash_bytes']:,} B",
                     f"{report['arena_bytes']:,} B", agreement])
    return (prose(f"Measured on the bundled example. Accuracy on the 450 test images: `{EVAL} --float` or `--bits "
                  f"8|4 --calib {CALIB}`. The rest from `report.json` of `mcu-attn build {DIGITS_MODEL} --target "
                  f"host -o DIR --calib {CALIB} --bits 32|8|4`: `weights_bytes`; `flash_bytes`, all constant data "
                  f"(the weights plus operator parameters: requantization multipliers, lookup tables); "
                  f"`arena_bytes`; and `host_check`, the compiled C against numpy on the first {check['samples']} "
                  f"calibration images:")
            + "\n" + table(["", "accuracy", "weights", "all constants", "arena (RAM)", "host C vs numpy"], rows))


@figure("attention-auto", "README.md")
def attention_auto(run: Runs) -> str:
    result = run.json("eval", DIGITS_MODEL, "--data", TEST_X, "--labels", TEST_Y, "--float", "--attention", "auto",
                      "--calib", CALIB)
    dense = run.json("eval", DIGITS_MODEL, "--data", TEST_X, "--labels", TEST_Y, "--float")["accuracy"]
    choice = result["attention"]
    tried = ", ".join(f"`{entry['attention']}` {entry['error']:.1%}" for entry in choice["tried"])
    return prose(f"On the digits ViT (`{EVAL} --float --attention auto --calib {CALIB}`), a classifier, `auto` "
                 f"compares top-1 classes on the {choice['samples']} calibration images. The share that changes, "
                 f"per candidate: {tried}. It keeps `{choice['chosen']}`: {result['accuracy']:.4f} on the 450 test "
                 f"images, against {dense:.4f} dense.")


@figure("inspect-example", "README.md")
def inspect_example(run: Runs) -> str:
    return f"```\n$ mcu-attn inspect {DIGITS_MODEL}\n{run.cli('inspect', DIGITS_MODEL)}```\n"


def _firmware(run: Runs) -> list[tuple[str, str, dict, dict]]:
    """(target, description, report.json, simulate --json) of the int8 digits ViT on each firmware target."""
    rows = []
    for target, description in FIRMWARE_TARGETS:
        directory = run.build(DIGITS_MODEL, target, 8)
        rows.append((target, description, run.report(directory), run.simulate(directory)))
    return rows


@figure("digits-firmware", "README.md", kind="emulated")
def digits_firmware(run: Runs) -> str:
    rows, per_mac = [], []
    for target, description, report, result in _firmware(run):
        assert result["bit_exact"], (target, "the firmware no longer matches the reference")
        energy = "n/a" if result["energy_uj"] is None else f"~{estimate(result['energy_uj'])} µJ"
        rows.append([f"`{target}` ({description})", f"{report['flash_bytes']:,} B", f"{report['ram_bytes']:,} B",
                     f"{result['instructions']:,}", f"~{estimate(result['cycles'], 3)}",
                     f"~{estimate(result['time_ms'], 3)} ms", energy])
        per_mac.append(result["instructions_per_mac"])
    first = _firmware(run)[0][3]
    return (prose(f"On Cortex-M, per target: `{BUILD} --bits 8` for flash and RAM, then `{SIMULATE} --limit "
                  f"{first['samples']}` (Unicorn, per inference). On the first {first['samples']} test images the "
                  f"firmware is bit-exact against the numpy reference, with accuracy {first['accuracy']:.3f} "
                  f"(reference {first['reference_accuracy']:.3f}). Cycles, time and energy are estimates "
                  f"(docs/cycle-model.md) from datasheet constants that are partly unverified (`mcu-attn targets`), "
                  f"so they are rounded:")
            + "\n" + table(["target", "flash", "RAM", "instructions", "cycles (estimate)", "time (estimate)",
                            "energy (estimate)"], rows)
            + "\n" + prose(f"{span(per_mac)} instructions per MAC."))


@figure("cycle-model-results", "docs/cycle-model.md", kind="emulated")
def cycle_model_results(run: Runs) -> str:
    rows = []
    for target, description, _, result in _firmware(run):
        energy = "n/a" if result["energy_uj"] is None else estimate(result["energy_uj"])
        rows.append([f"{target} ({description})", f"{result['instructions']:,}", f"{result['cycles']:,}",
                     f"{result['instructions_per_mac']:.1f}", f"{result['cycles_per_mac']:.1f}",
                     estimate(result["time_ms"], 3), energy])
    first = _firmware(run)[0][3]
    f407 = {target: result for target, _, _, result in _firmware(run)}["stm32f407"]
    shares = ", ".join(f"`{f['function']}` {f['share']:.0%}" for f in f407["functions"][:4])
    return (prose(f"Per target, `{BUILD} --bits 8` and `{SIMULATE} --limit {first['samples']} --json`: the digits "
                  f"ViT as int8, {first['macs']:,} MACs, {first['samples']} test images in Unicorn, all bit-exact "
                  f"against the numpy reference. The cycle, time and energy columns are estimates:")
            + "\n" + table(["target", "instructions", "cycles", "instr/MAC", "cycles/MAC", "ms", "µJ"], rows)
            + "\n" + prose(f"The `functions` list of the stm32f407 result shows where the instructions go: "
                           f"{shares}."))


@figure("cycles-per-instruction", "docs/cycle-model.md", kind="emulated")
def cycles_per_instruction(run: Runs) -> str:
    results = {target: result for target, _, _, result in _firmware(run)}
    m7, m4 = (results[t]["cycles"] / results[t]["instructions"] for t in ("stm32", "stm32f407"))
    return prose(f"These values put the digits ViT at {m7:.2f} estimated cycles per instruction on the M7 "
                 f"(stm32), against {m4:.2f} on the M4 (stm32f407), flash wait states included (the results "
                 f"below). The ratio, {m4 / m7:.2f}, is close to ARM's CoreMark/MHz ratio of 5.01 (M7) to 3.42 "
                 f"(M4) = 1.46. This is a plausibility check, not a measurement. Mispredicted branches, cache misses "
                 f"in the L1 and TCM placement are not modelled.")


@figure("qemu-agreement", "docs/cycle-model.md", kind="emulated")
def qemu_agreement(run: Runs) -> str:
    result = run.json("simulate", run.build(DIGITS_MODEL, "stm32f407", 8), "--engine", "qemu", "--limit", "1")
    check = result["cross_check"]
    assert check["agree"], check
    return prose(f"On the bundled digits ViT (int8, stm32f407 build), Unicorn and QEMU (`{result['machine']}`) "
                 f"agree on the per-inference count to the instruction: {check['qemu_instructions']:,} on "
                 f"calibration sample 0 (`mcu-attn simulate DIR --engine qemu --limit 1`).")


@figure("attention-scaling", "README.md", kind="emulated")
def attention_scaling(run: Runs) -> str:
    output = Path(run.scratch) / "scaling.json"
    run.script("benchmarks/attention_scaling.py", "--json", str(output))
    rows = {(row["n"], row["attention"]): row for row in json.loads(output.read_text())["rows"]}
    lengths = sorted({n for n, _ in rows})
    local = next(attention for _, attention in rows if attention != "dense")
    body = []
    for n in lengths:
        dense, sparse = rows.get((n, "dense")), rows.get((n, local))
        assert all(row is None or row["bit_exact"] for row in (dense, sparse)), n
        ram = {row["ram"] for row in (dense, sparse) if row}
        body.append([str(n), f"{dense['cycles']:,}" if dense else "not measured",
                     f"{sparse['cycles']:,}" if sparse else "not measured",
                     " / ".join(f"{value:,} B" for value in sorted(ram))])

    def growth(attention: str) -> list[float]:
        cycles = [rows[(n, attention)]["cycles"] for n in lengths if (n, attention) in rows]
        return [b / a for a, b in zip(cycles, cycles[1:])]
    low, high = lengths[0], lengths[-1]
    local_ratio = rows[(high, local)]["cycles"] / rows[(low, local)]["cycles"]
    return (prose("One attention block (E = 16, one head, int8, STM32F746) as the sequence grows (`python "
                  "benchmarks/attention_scaling.py`; cycles are estimates, outputs bit-exact in every row):")
            + "\n" + table(["n", "dense cycles", f"`{local}` cycles", "RAM (both)"], body)
            + "\n" + prose(f"Local attention grows {span(growth(local), '×')} per doubling "
                           f"(cycles({high})/cycles({low}) = {local_ratio:.1f}), dense {span(growth('dense'), '×')}."))


PATTERN_SCALING = ("strided:8", "dilated:8,2", "block:16,1")


@figure("attention-patterns", "docs/attention-patterns.md", kind="emulated")
def attention_patterns(run: Runs) -> str:
    output = Path(run.scratch) / "patterns.json"
    run.script("benchmarks/attention_patterns.py", "--json", str(output))
    measured = json.loads(output.read_text())
    parts = [prose(f"Per technique on the two examples (`python benchmarks/attention_patterns.py`): int8 accuracy "
                   f"of the integer reference on the 450 test images; the int8 firmware for `{measured['target']}` "
                   f"emulated on the first 2 test images, bit-exact against the reference in every row; "
                   f"instructions, ESTIMATED cycles and energy per inference. Rows marked trained are models "
                   f"trained with that pattern's mask; the others apply the pattern (`--attention`) or low-rank "
                   f"layers (`--low-rank auto`) to the dense-trained model; the last column is the energy as a "
                   f"share of the `dense` row's.")]
    for example, title in (("digits_vit", "digits ViT, 17 tokens"), ("digits_long", "digits_long, 257 tokens")):
        rows = [row for row in measured["rows"] if row["example"] == example]
        assert all(row["bit_exact"] for row in rows), example
        dense = next(row["energy_uj"] for row in rows if row["attention"] == "dense")
        parts.append(f"\n{title}:\n\n" + table(
            ["technique", "model", "accuracy", "instructions", "est. cycles", "est. energy", "of dense"],
            [[f"`{row['attention']}`", f"`{row['model']}`", f"{row['accuracy']:.4f}", f"{row['instructions']:,}",
              f"{row['cycles']:,}", f"{row['energy_uj']:.1f} µJ", f"{row['energy_uj'] / dense:.2f}"]
             for row in rows]))
    return "".join(parts)


@figure("attention-patterns-scaling", "docs/attention-patterns.md", kind="emulated")
def attention_patterns_scaling(run: Runs) -> str:
    output = Path(run.scratch) / "pattern-scaling.json"
    printed = run.script("benchmarks/attention_scaling.py", "--patterns", *PATTERN_SCALING, "--json", str(output))
    rows = {(row["n"], row["attention"]): row for row in json.loads(output.read_text())["rows"]}
    assert all(row["bit_exact"] for row in rows.values())
    lengths = sorted({n for n, _ in rows})
    modes = ["dense", "local:16", *PATTERN_SCALING]
    body = [[str(n)] + [f"{rows[(n, mode)]['cycles']:,}" if (n, mode) in rows else "not measured" for mode in modes]
            for n in lengths]
    ratios = ", ".join(f"`{mode}` {rows[(512, mode)]['cycles'] / rows[(64, mode)]['cycles']:.1f}" for mode in modes)
    model = next(line for line in printed.splitlines() if line.startswith("attention kernel cost model"))
    per_pair, per_row = re.findall(r"([0-9.]+) cycles per \(query, key\) pair \+ ([0-9.]+) per query row", model)[0]
    strided = [line.split("(")[-1].rstrip(")") for line in printed.splitlines()
               if re.match(r"\s*\d+ strided:8 ", line) and "predicted" in line]
    return (prose(f"One attention block (E = 16, one head, int8, STM32F746) as the sequence grows (`python "
                  f"benchmarks/attention_scaling.py --patterns {' '.join(PATTERN_SCALING)}`; estimated cycles of "
                  f"the whole block, outputs bit-exact in every row):")
            + "\n" + table(["n", *[f"`{mode}`" for mode in modes]], body) + "\n"
            + prose(f"cycles(512)/cycles(64): {ratios}. The attention kernel's cycles against a cost model fitted "
                    f"on the dense (n ≤ 512) and local rows, {per_pair} cycles per (query, key) pair + {per_row} per "
                    f"query row: `strided:8` (n/8 keys per query) lands {', '.join(strided)} from it at n = "
                    f"{', '.join(str(n) for n in lengths)}."))


@figure("tflm-ram", "README.md", kind="tflm")
def tflm_ram(run: Runs) -> str:
    output = Path(run.scratch) / "tflm.json"
    run.script("benchmarks/tflm_ram.py", "--json", str(output))
    result = json.loads(output.read_text())
    tflm, ours, accuracy = result["tflm"], result["ours"], result["accuracy"]
    head = tflm["allocations"]["head"]
    return prose(f"Against TensorFlow Lite Micro on the same model (`python3 -m pip install -e \".[tflm]\" && "
                 f"python3 benchmarks/tflm_ram.py`: the Keras digits ViT of `examples/digits_vit_keras`, int8 "
                 f"TFLite for TFLM, tf2onnx for us, both calibrated on the same 200 images). Activations against "
                 f"activations: TFLM places {head:,} B of activation buffers in its arena (its `head`), our arena "
                 f"is {ours['arena_bytes']:,} B, {ours['arena_bytes'] / head:.2f} of it. Whole against whole: "
                 f"TFLM's smallest working tensor arena is {tflm['arena_bytes']:,} B, and our whole peak RAM for "
                 f"the {ours['target']} build is {ours['peak_ram_bytes']:,} B (arena, stack "
                 f"{ours['stack_bytes']:,} B, other static {ours['other_static_bytes']:,} B), "
                 f"{result['ratio']:.3f} of TFLM's arena. That ratio flatters us: the rest of TFLM's arena holds "
                 f"its runtime structures, measured with its x86-64 Python interpreter (64-bit pointers; a 32-bit "
                 f"build's are smaller), while TFLM's own stack and statics are not counted at all. Accuracy on "
                 f"the {accuracy['samples']} test images: TFLM int8 {accuracy['tflm_int8']:.4f}, ours int8 "
                 f"{accuracy['ours_int8']:.4f}.")


KERAS_TFLITE = "examples/digits_vit_keras/digits_vit_keras_tflm_int8.tflite"


@figure("tflite-round-trip", "README.md", kind="tflm")
def tflite_round_trip(run: Runs) -> str:
    out = str(Path(run.scratch) / "kvit")
    run.cli("build", KERAS_TFLITE, "--target", "stm32", "-o", out)  # no --calib: the file brings every scale
    simulated = run.json("simulate", out, "--data", TEST_X, "--labels", TEST_Y)
    result = run.json("compare", out, "--tflm", KERAS_TFLITE, "--data", TEST_X, "--labels", TEST_Y)
    assert simulated["bit_exact"] and result["bit_exact"], "the firmware no longer matches the reference"
    ours, tflm, lsb, accuracy = result["ours"], result["tflm"], result["lsb"], result["accuracy"]
    shares = ", ".join(f"{key} LSB {count / lsb['values']:.0%}" for key, count in lsb["per_output_value"].items())
    rows = [
        ["accuracy (450 test images)", f"{accuracy['ours']:.4f}", f"{accuracy['tflm']:.4f}"],
        ["top-1 agreement", f"{result['agreement']:.4f} ({result['samples'] - result['disagreements']} of "
                            f"{result['samples']})", ""],
        ["output difference", f"max {lsb['max']:.0f} LSB, mean {lsb['mean']:.2f} LSB", ""],
        ["RAM", f"{ours['ram_bytes']:,} B peak (arena {ours['arena_bytes']:,} B, stack {ours['stack_bytes']:,} B)",
         f"{tflm['arena_bytes']:,} B minimal tensor arena"],
        ["flash", f"{ours['flash_bytes']:,} B (whole firmware)", f"{tflm['model_file_bytes']:,} B model file alone"],
    ]
    return (prose(f"`mcu-attn build {KERAS_TFLITE} --target stm32 -o out/kvit` takes the file as it is: its "
                  f"scales and zero points are kept, so there is no `--calib`, and `mcu-attn simulate out/kvit "
                  f"--data {TEST_X} --labels {TEST_Y}` finds the firmware bit-exact with our integer reference on "
                  f"all {simulated['samples']} test images. Then `mcu-attn compare out/kvit --tflm {KERAS_TFLITE} "
                  f"--data {TEST_X} --labels {TEST_Y}` (the `[tflm]` extra) runs TFLite Micro's interpreter on the "
                  f"same int8 inputs:")
            + "\n" + table(["", "ours (stm32 firmware in Unicorn)", f"TFLite Micro {tflm['version']}"], rows)
            + "\n" + prose(f"Where TFLite spells softmax, LayerNorm and GELU op by op, we run our fused integer "
                           f"kernels with the file's scales, so outputs differ by a few LSBs ({shares} of the "
                           f"output values). TFLM's arena is bisected to the byte with its x86-64 interpreter "
                           f"(docs/tflite.md says what each side counts)."))


@figure("pruning-digits", "docs/pruning.md", kind="long")
def pruning_digits(run: Runs) -> str:
    lines = run.script("benchmarks/prune_digits.py").splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ") and
            not line.startswith("| model")]
    header = next(line for line in lines if line.startswith("| model"))
    # float, pruned, + least-squares refit, + fine-tuning
    accuracy = [(float(r[1]), float(r[3]), float(r[4]), float(r[5])) for r in rows]
    recovered = [100 * (refit - cut) for _, cut, refit, _ in accuracy]
    tuned = [100 * (final - refit) for _, _, refit, final in accuracy]
    below = [100 * (floating - final) for floating, _, _, final in accuracy]
    within = sum(b <= 1.0 + 1e-9 for b in below)
    return (prose(f"`python benchmarks/prune_digits.py` ({lines[0].strip()}):") + "\n" + header + "\n"
            + "\n".join(line for line in lines if line.startswith("|---") or line.startswith("| ")
                         and not line.startswith("| model")) + "\n\n"
            + prose(f"The least-squares refit recovers {span(recovered)} points of what the cut loses, fine-tuning "
                    f"moves the accuracy by {span(tuned)} points more, and the pruned models end {span(below)} points "
                    f"below float: {within} of {len(below)} within one point."))


def _sweep(run: Runs, model: str, data: str, *grid: str, split: str = "test") -> tuple[str, dict]:
    """The command line and `--json` payload of a sweep on stm32 with --goal battery --max-drop 0.01, measured on
    data/{split}_x.npy and _y.npy."""
    # a directory per model and grid: two figures sweeping one model must not reuse each other's cached points
    # (the "N computed, M cached" line would then depend on which figure ran first)
    directory = Path(run.scratch) / f"sweep-{Path(model).stem}-{hashlib.sha256(repr(grid).encode()).hexdigest()[:8]}"
    args = ["sweep", model, "--target", "stm32", "--calib", f"{data}/calib.npy", "--data", f"{data}/{split}_x.npy",
            "--labels", f"{data}/{split}_y.npy", "-o", str(directory), *grid, "--goal", "battery", "--max-drop", "0.01"]
    shown = " ".join(a if not a.startswith(run.scratch) else "DIR" for a in args)
    return f"mcu-attn {shown}", run.json(*args)


def _sweep_table(payload: dict) -> str:
    from mcu_attn.sweep import format_table

    lines = format_table(payload, "DIR").splitlines()
    return "```\n" + "\n".join(line for line in lines if not line.startswith("wrote ")) + "\n```\n\n"


def _point(payload: dict, bits: int, attention: str, prune: float = 0.0) -> dict:
    return next(p for p in payload["points"] if p["config"] == {"bits": bits, "attention": attention,
                                                               "prune_heads": prune, "prune_ffn": prune,
                                                               "low_rank": None})


@figure("sweep-digits", "docs/sweep.md", kind="emulated")
def sweep_digits(run: Runs) -> str:
    command, payload = _sweep(run, DIGITS_MODEL, f"{DIGITS}/data")
    fp32, int8, int4 = (_point(payload, bits, "dense") for bits in (32, 8, 4))
    pruned = _point(payload, 8, "dense", 0.5)
    return (prose(f"`{command}` ({len(payload['points'])} points, 450 test images; energy and cycles are estimates "
                  f"of one inference):") + "\n" + _sweep_table(payload)
            + prose(f"Int8 dense is {100 * (int8['accuracy'] - fp32['accuracy']):+.2f} points against fp32 dense at "
                    f"{fp32['energy_uj'] / int8['energy_uj']:.1f}× less energy; int4 dense needs "
                    f"{int4['instructions'] / int8['instructions']:.2f}× the instructions of int8 (unpacking the "
                    f"weights). Pruning half the heads and FFN channels of the int8 build takes "
                    f"{100 * (1 - pruned['energy_uj'] / int8['energy_uj']):.0f}% off the energy and "
                    f"{100 * (int8['accuracy'] - pruned['accuracy']):.1f} points off the accuracy."))


@figure("sweep-long", "docs/sweep.md", kind="emulated")
def sweep_long(run: Runs) -> str:
    command, payload = _sweep(run, "examples/digits_long/digits_long_band.onnx", "examples/digits_long/data",
                              "--grid", "bits=32,8,4", "--grid", "attention=dense,model", "--grid", "prune=0")
    fp32 = _point(payload, 32, "dense")
    near = [p for p in payload["points"] if "error" not in p and p["accuracy"] >= fp32["accuracy"] - 0.01]
    best = min(near, key=lambda p: p["energy_uj"])
    return (prose(f"`{command}`:") + "\n" + _sweep_table(payload)
            + prose(f"Within one point of the fp32 dense build ({fp32['accuracy']:.4f}), the point with the least "
                    f"estimated energy is {best['describe']}: {best['accuracy']:.4f}, {best['energy_uj']:,.0f} µJ "
                    f"against {fp32['energy_uj']:,.0f} µJ per inference, "
                    f"{fp32['energy_uj'] / best['energy_uj']:.1f}× less."))


@figure("sweep-dynamic", "docs/sweep.md", kind="emulated")
def sweep_dynamic(run: Runs) -> str:
    command, payload = _sweep(run, DIGITS_MODEL, f"{DIGITS}/data", "--grid", "bits=8,4", "--grid", "attention=dense",
                              "--grid", "prune=0", "--grid", "token-prune=none,auto", "--grid", "early-exit=none,auto")
    front = [point_text(p) for p in payload["points"] if p.get("pareto")]
    return (prose(f"`{command}` ({len(payload['points'])} points, 450 test images; a point with token pruning or "
                  f"early exit gives the mean per inference over them):") + "\n" + _sweep_table(payload)
            + prose(f"The Pareto front: {'; '.join(front)}."))


@figure("sweep-stream", "docs/sweep.md", kind="emulated")
def sweep_stream(run: Runs) -> str:
    command, payload = _sweep(run, "examples/sensor_stream/sensor_stream.onnx", "examples/sensor_stream/data",
                              "--grid", "bits=8", "--grid", "attention=model", "--grid", "prune=0", "--grid",
                              "streaming=none,0,auto", split="stream")
    window = _point(payload, 8, "model")
    steps = [p for p in payload["points"] if p["config"].get("streaming")]
    return (prose(f"`{command}` (a stream of 2,000 positions; every point's energy is per step: the window point "
                  f"runs `ma_run` on the whole window at each step):") + "\n" + _sweep_table(payload)
            + prose("Energy per step against re-running the window: " + "; ".join(
                f"{point_text(p)} {p['energy_uj'] / window['energy_uj']:.3f}" for p in steps) + "."))


def _dynamic(run: Runs, model: str, *extra: str) -> str:
    """benchmarks/dynamic.py's table for one example model, with the command that prints it."""
    command = ("benchmarks/dynamic.py", "--model", model, *extra)
    return f"`python {' '.join(command)}`:\n\n" + run.script(*command)


@figure("dynamic-digits", "docs/dynamic.md", kind="emulated")
def dynamic_digits(run: Runs) -> str:
    return _dynamic(run, "digits_vit")


@figure("dynamic-long", "docs/dynamic.md", kind="emulated")
def dynamic_long(run: Runs) -> str:
    # 90 of the 450 test images: each simulated inference of the 257-token model is ~100x the digits ViT's
    return _dynamic(run, "digits_long", "--limit", "90")


@figure("dynamic-stream", "docs/dynamic.md", kind="emulated")
def dynamic_stream(run: Runs) -> str:
    return _dynamic(run, "sensor_stream")


# ------------------------------------------------------------------------------------------ regions in files
def _markers(name: str) -> tuple[str, str]:
    return f"<!-- figure: {name} -->\n", f"<!-- /figure: {name} -->"


def committed(name: str, root: Path = ROOT) -> str:
    """The text between the markers of figure `name` in its document."""
    start, end = _markers(name)
    text = (root / FIGURES[name].document).read_text()
    match = re.search(re.escape(start) + "(.*?)" + re.escape(end), text, re.S)
    if match is None:
        raise SystemExit(f"{FIGURES[name].document}: no region marked {start.strip()} ... {end}")
    return match.group(1)


def write(name: str, content: str, root: Path = ROOT) -> bool:
    """Replace the region's text; True if it changed."""
    start, end = _markers(name)
    path = root / FIGURES[name].document
    text = path.read_text()
    old = committed(name, root)
    if old == content:
        return False
    path.write_text(text.replace(start + old + end, start + content + end, 1))
    return True


def diff(name: str, content: str, root: Path = ROOT) -> str:
    """A unified diff from the committed region to `content` ('' when equal)."""
    old = committed(name, root)
    document = FIGURES[name].document
    return "".join(difflib.unified_diff(old.splitlines(True), content.splitlines(True),
                                        f"{document} (committed {name})", f"{name} (measured now)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare; exit 1 with a diff when a region differs")
    mode.add_argument("--write", action="store_true", help="rewrite the regions")
    mode.add_argument("--list", action="store_true", help="list the figures")
    parser.add_argument("--kind", choices=KINDS, action="append", help="only figures of this kind")
    parser.add_argument("names", nargs="*", help="figures (default: all, or all of --kind)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; --list shows them")
    names = args.names or [name for name, f in FIGURES.items() if not args.kind or f.kind in args.kind]
    if args.list:
        for name in names:
            print(f"{name:<24} {FIGURES[name].kind:<9} {FIGURES[name].document}")
        return 0
    runs, stale = Runs(), []
    try:
        for name in names:
            print(f"{name}: measuring ({FIGURES[name].kind})", file=sys.stderr, flush=True)
            content = FIGURES[name].make(runs)
            if args.write:
                print(f"{name}: {'rewritten' if write(name, content) else 'unchanged'} in {FIGURES[name].document}")
            elif content != committed(name):
                stale.append(name)
                print(diff(name, content))
    finally:
        runs.close()
    if stale:
        print(f"stale figures: {', '.join(stale)} (python benchmarks/readme_figures.py --write "
              f"{' '.join(stale)})")
        return 1
    if args.check:
        print(f"{len(names)} figures match what their commands print")
    return 0


if __name__ == "__main__":
    sys.exit(main())
