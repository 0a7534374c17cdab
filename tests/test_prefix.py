"""Generated code that drops into an application (docs/firmware.md, "Using the model in an application").

- `--prefix NAME`: every global symbol the model files define starts with NAME_; two models with different
  prefixes link into one Cortex-M firmware and both give the reference's outputs in the emulator;
- the quantize/dequantize helpers of model.h equal the reference's quantize and dequantize;
- MA_ARENA_ATTRIBUTES / MA_WEIGHTS_ATTRIBUTES place the arena and the weights in the sections they name;
- a prefix that is not a C identifier is refused in one line.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support import DIGITS, run_cli

from mcu_attn.build import build
from mcu_attn.options import BuildOptions

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
INT8 = BuildOptions(bits=8, calib=str(CALIB))

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None,
                              reason="host gcc/binutils not installed")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


def _model_sources(directory: Path) -> list[Path]:
    return [directory / "model.c", directory / "weights.c"] + sorted((directory / "kernels").rglob("*.c"))


def _compile_objects(directory: Path, out: Path, compiler: str = "gcc", flags: tuple[str, ...] = ()) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    objects = []
    for index, source in enumerate(_model_sources(directory)):
        obj = out / f"{index}_{source.stem}.o"
        subprocess.run([compiler, "-std=c99", "-O2", "-c", *flags, f"-I{directory}",
                        f"-I{directory / 'kernels' / 'include'}", "-o", str(obj), str(source)], check=True)
        objects.append(obj)
    return objects


@needs_cc
def test_every_global_symbol_carries_the_prefix(tmp_path):
    build(MODEL, "host", tmp_path / "kws", BuildOptions(bits=8, calib=str(CALIB), prefix="kws"))
    objects = _compile_objects(tmp_path / "kws", tmp_path / "objects")
    listing = subprocess.run(["nm", "-g", "--defined-only", *map(str, objects)], capture_output=True, text=True,
                             check=True).stdout
    defined = [line.split()[-1] for line in listing.splitlines() if len(line.split()) == 3]
    assert {"kws_run", "kws_init", "kws_check"} <= set(defined)
    assert [name for name in defined if not name.startswith("kws_")] == []
    header = (tmp_path / "kws" / "model.h").read_text()
    assert "KWS_INPUT_SCALE" in header and "kws_input_t" in header and "ma_" not in header and "MA_" not in header
    report = (tmp_path / "kws" / "report.json").read_text()
    assert '"kws_layer_000_' in report and '"ma_layer_' not in report


@needs_cc
def test_quantize_helpers_equal_the_reference(tmp_path):
    from mcu_attn.reference.qmath import dequantize, quantize

    report = build(MODEL, "host", tmp_path / "q", INT8)
    scale, zero = report["input"]["scale"], report["input"]["zero_point"]
    out_scale, out_zero = report["output"]["scale"], report["output"]["zero_point"]
    rng = np.random.default_rng(0)
    ties = (np.arange(-140, 140) + 0.5 - zero) * np.float64(np.float32(scale))   # exact halves: half to even
    values = np.concatenate([rng.normal(0, 2, 500), ties, [0.0, -1e30, 1e30, scale * 1e6]]).astype(np.float32)
    program = tmp_path / "helpers.c"
    program.write_text('#include <stdio.h>\n#include "model.h"\nint main(void) {\n    float x;\n'
                       '    while (scanf("%a", &x) == 1) printf("%d\\n", ma_quantize_input(x));\n'
                       '    for (int q = -128; q < 128; ++q) printf("%a\\n", (double)ma_dequantize_output((int8_t)q));\n'
                       '    return 0;\n}\n')
    subprocess.run(["gcc", "-std=c99", "-O2", f"-I{tmp_path / 'q'}", "-o", str(tmp_path / "helpers"), str(program),
                    "-lm"], check=True)
    done = subprocess.run([str(tmp_path / "helpers")], input="\n".join(float(v).hex() for v in values),
                          capture_output=True, text=True, check=True)
    lines = done.stdout.split()
    got_q = np.array(lines[:len(values)], np.int64)
    got_f = np.array([float.fromhex(v) for v in lines[len(values):]], np.float32)
    assert np.array_equal(got_q, quantize(values, scale, zero))
    assert np.array_equal(got_f, dequantize(np.arange(-128, 128), out_scale, out_zero))
    assert len(set(got_q.tolist())) > 200  # the values cover the int8 range, saturation included


@needs_cc
def test_section_macros_place_the_arena_and_the_weights(tmp_path):
    from elftools.elf.elffile import ELFFile

    build(MODEL, "host", tmp_path / "s", BuildOptions(bits=8, calib=str(CALIB), prefix="kws"))
    flags = ('-DKWS_ARENA_ATTRIBUTES=__attribute__((section(".dtcm_arena")))',
             '-DKWS_WEIGHTS_ATTRIBUTES=__attribute__((section(".ext_flash")))')
    objects = _compile_objects(tmp_path / "s", tmp_path / "objects", flags=flags)
    placed: dict[str, set[str]] = {}
    for obj in objects[:2]:  # model.o, weights.o
        with open(obj, "rb") as stream:
            elf = ELFFile(stream)
            for symbol in elf.get_section_by_name(".symtab").iter_symbols():
                if symbol.name.startswith(("kws_arena", "kws_w_")) and isinstance(symbol["st_shndx"], int):
                    placed.setdefault(elf.get_section(symbol["st_shndx"]).name, set()).add(symbol.name)
    assert placed.pop(".dtcm_arena") == {"kws_arena"}
    weights = placed.pop(".ext_flash")
    assert len(weights) > 10 and all(name.startswith("kws_w_") for name in weights) and placed == {}


@needs_arm
def test_two_prefixed_models_run_in_one_firmware(tmp_path, digits_test):
    """An int8 and a float digits ViT, prefixes alpha and beta, linked with one application main.c: the emulator
    runs both on one image and each output equals its reference."""
    from mcu_attn.reference.interpreter import run_stack
    from mcu_attn.sim.build_dir import FLOAT_TOLERANCE, BuildDir
    from mcu_attn.sim.elf import load_firmware
    from mcu_attn.sim.unicorn import UnicornRunner
    from mcu_attn.targets.table import get_target

    target = get_target("stm32f407")
    build(MODEL, target.name, tmp_path / "alpha", BuildOptions(bits=8, calib=str(CALIB), prefix="alpha"))
    build(MODEL, target.name, tmp_path / "beta", BuildOptions(bits=32, prefix="beta"))
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.c").write_text("""#include <stdint.h>
#include "../alpha/model.h"
#include "../beta/model.h"
#define NOINIT __attribute__((section(".noinit"), aligned(8), used))
alpha_input_t ma_harness_input[ALPHA_INPUT_COUNT] NOINIT;
alpha_output_t ma_harness_output[ALPHA_OUTPUT_COUNT] NOINIT;
beta_input_t beta_sample[BETA_INPUT_COUNT] NOINIT;
beta_output_t beta_result[BETA_OUTPUT_COUNT] NOINIT;
__attribute__((noinline, used)) void ma_harness_idle(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, used)) void ma_harness_infer(void)
{
    alpha_run(ma_harness_input, ma_harness_output);
    beta_run(beta_sample, beta_result);
}
__attribute__((noinline, used, noreturn)) void ma_harness_halt(void) { for (;;) __asm__ volatile("bkpt #0"); }
int main(void) { alpha_init(); beta_init(); ma_harness_idle(); ma_harness_infer(); ma_harness_halt(); }
""")
    arch = list(target.cflags)
    objects = []
    for name in ("alpha", "beta"):
        objects += _compile_objects(tmp_path / name, tmp_path / "objects" / name, "arm-none-eabi-gcc", tuple(arch))
    objects += _compile_objects_of([app / "main.c", tmp_path / "alpha" / "startup.c", tmp_path / "alpha" / "bringup.c"],
                                   tmp_path / "alpha",
                                   tmp_path / "objects" / "app", arch)
    elf = tmp_path / "two.elf"
    subprocess.run(["arm-none-eabi-gcc", *arch, "--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections",
                    f"-Wl,-T,{tmp_path / 'alpha' / 'linker.ld'}", "-o", str(elf), *map(str, objects),
                    "-Wl,--start-group", "-lm", "-lc", "-lgcc", "-Wl,--end-group"], check=True)

    firmware = load_firmware(elf)
    runner = UnicornRunner(firmware, target)
    images = digits_test[0][:3]
    alpha, beta = BuildDir(tmp_path / "alpha"), BuildDir(tmp_path / "beta")
    for image in images:
        runner.uc.mem_write(firmware.address("beta_sample"), beta.prepare(image[None])[0].tobytes())
        got_alpha = alpha.decode(runner.infer(alpha.prepare(image[None])[0].tobytes()))
        got_beta = np.frombuffer(bytes(runner.uc.mem_read(firmware.address("beta_result"), beta.output.nbytes)),
                                 np.float32).reshape(beta.output.shape)
        assert np.array_equal(got_alpha, run_stack(alpha.graph, alpha.prepare(image[None]))[0])
        expected = run_stack(beta.graph, beta.prepare(image[None]))[0]
        # float kernels sum in another order than numpy and use fused multiply-adds (the bound simulate uses)
        assert np.all(np.abs(got_beta - expected) <= FLOAT_TOLERANCE * np.maximum(1.0, np.abs(expected)))


def _compile_objects_of(sources: list[Path], include: Path, out: Path, arch: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    objects = []
    for source in sources:
        obj = out / f"{source.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", *arch, "-std=c99", "-O2", "-c", f"-I{include}", "-o", str(obj),
                        str(source)], check=True)
        objects.append(obj)
    return objects


@pytest.mark.parametrize("prefix", ["9lives", "has space", "a-b", "x" * 40, ""])
def test_bad_prefix_is_one_line(tmp_path, prefix):
    done = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "out", "--bits", "32", "--prefix", prefix)
    assert done.returncode == 2 and "--prefix" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
