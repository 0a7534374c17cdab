"""Streaming attention (docs/dynamic.md, "Streaming"): the step graph of the causal sensor example, its numpy
reference against re-running the window, the event test in C (host and Cortex-M4) against the reference, and
ma_step in the firmware against the reference, step by step.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from support import DIGITS, FIXTURES, ROOT, run_cli

from mcu_attn.errors import UserError
from mcu_attn.options import BuildOptions

EXAMPLE = ROOT / "examples" / "sensor_stream"
MODEL = EXAMPLE / "sensor_stream.onnx"
CALIB = EXAMPLE / "data" / "calib.npy"
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


@pytest.fixture(scope="module")
def compiled():
    from mcu_attn.compiler import compile_model

    return compile_model(MODEL, BuildOptions(calib=str(CALIB), streaming="0"), until="stream")


@pytest.fixture(scope="module")
def positions(compiled):
    from mcu_attn.reference.qmath import quantize

    quant = compiled.graph.type(compiled.graph.inputs[0]).quant
    stream = np.load(EXAMPLE / "data" / "stream_x.npy")[100:180]
    return quantize(stream, quant.scale[0], quant.zero_point[0]).astype(np.int8)


def test_step_graph(compiled):
    from mcu_attn.passes.streaming import receptive_field

    step = compiled.step
    assert step.shape(step.inputs[0]) == (1, 1, 24) and step.shape(step.outputs[0]) == (1, 5)
    assert [n.op for n in step.nodes].count("QAttentionStep") == 2 and "QAttention" not in [n.op for n in step.nodes]
    assert receptive_field(step) == 15 and compiled.reports["streaming"]["exact_over_a_stream"]
    assert compiled.delta == 0


def test_stream_equals_the_window(compiled, positions):
    """Exact streaming: from a reset state over one window, and over a longer stream at every step with a whole
    window behind it (the window of 32 covers the 15 positions the output depends on), bit for bit."""
    from mcu_attn.reference.interpreter import run_stack
    from mcu_attn.reference.stream import run_stream

    outputs, computed = run_stream(compiled.step, positions, 0)
    assert computed.all()
    windows = np.stack([positions[e - 31:e + 1] for e in range(31, len(positions))])[:, None]
    expected = run_stack(compiled.graph, windows)
    assert np.array_equal(outputs[31:], expected)
    fresh, _ = run_stream(compiled.step, positions[:32], 0)
    assert np.array_equal(fresh[-1], run_stack(compiled.graph, positions[None, None, :32])[0])


def test_event_rule_skips_only_after_the_receptive_field(compiled):
    from mcu_attn.reference.stream import Stream

    stream = Stream(compiled.step, 3)
    quiet = np.zeros(24, np.int8)
    decisions = [stream.step(quiet + (i % 2))[1] for i in range(20)]   # within 3 of the anchor: 15 computed
    assert decisions == [True] * 15 + [False] * 5
    out, computed = stream.step(quiet + 3)                              # a change of 3: a new anchor
    assert computed and stream.steady == 1


def test_event_kernel_matches_the_reference(compiled):
    """ma_event_s8 on the host and on a Cortex-M4 (emulated) against the reference's rule, on random inputs with
    differences right at the threshold."""
    from mcu_attn.reference.stream import Stream
    from mcu_attn.sim.kernel_calls import S8_FUNCTIONS, EmulatorBackend, HostBackend, build_kernel_elf
    from test_kernels_s8 import FLAGS, INCLUDE, SOURCES

    from mcu_attn.codegen.host_cc import compile_shared

    backends = [HostBackend(compile_shared(SOURCES, INCLUDE, FLAGS, name="ma_kernels_s8"))]
    if shutil.which("arm-none-eabi-gcc"):
        backends.append(EmulatorBackend(build_kernel_elf("arm", "cortex-m4", S8_FUNCTIONS), "cortex-m4"))
    rng = np.random.default_rng(3)
    for backend in backends:
        for case in range(30):
            delta, settle = int(rng.integers(0, 5)), int(rng.integers(1, 6))
            reference = Stream(compiled.step, delta)
            reference.settle = settle
            backend.reset()
            last, counters = backend.inout(np.zeros(24, np.int8)), backend.inout(np.zeros(2, np.int32))
            base = rng.integers(-100, 100, 24)
            for _ in range(25):
                x = np.clip(base + rng.integers(-delta - 1, delta + 2, 24) * (rng.random(24) < 0.2), -128,
                            127).astype(np.int8)
                got = backend.call("ma_event_s8", ("ptr", backend.input(x)), ("i32", 24), ("i32", delta),
                                   ("i32", settle), ("ptr", last.address), ("ptr", counters.address))
                assert bool(got) == reference._compute(x), (case, delta, settle)


def test_refusals(tmp_path):
    from mcu_attn.compiler import compile_model

    with pytest.raises(UserError, match="not causal local attention"):
        compile_model(DIGITS / "digits_vit.onnx", BuildOptions(calib=str(DIGITS / "data" / "calib.npy"),
                                                               streaming="0"), until="stream")
    result = run_cli("eval", FIXTURES / "models" / "seq_causal_block.onnx", "--data", CALIB, "--streaming", "x")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--streaming 'x'" in result.stderr
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "f", "--bits", "32", "--streaming", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--bits 8 or 4" in result.stderr


@needs_gcc
def test_firmware_steps_match_the_reference(tmp_path):
    """STM32F407 (Cortex-M4): ma_step over 80 positions (active, then idle) with an event threshold that skips
    the settled idle steps: outputs and decisions equal the reference's at every step; a skipped step costs a
    small fraction of a computed one, and a computed step a fraction of re-running the window."""
    from mcu_attn.build import build
    from mcu_attn.sim.run import SimOptions, simulate

    report = build(MODEL, "stm32f407", tmp_path / "fw", BuildOptions(calib=str(CALIB), streaming="0.1"))
    assert report["stream"]["delta"] == 6 and report["stream"]["symbols"]["ma_step"] == "ma_step"
    data = np.load(EXAMPLE / "data" / "stream_x.npy")[100:180]
    labels = np.load(EXAMPLE / "data" / "stream_y.npy")[100:180]
    result = simulate(str(tmp_path / "fw"), data, labels, SimOptions())
    assert result["mode"] == "stream" and result["bit_exact"] and result["computed_match"]
    assert 0.0 < result["computed_fraction"] < 1.0 and result["window"]["bit_exact"]
    rows = {row["class"]: row for row in result["mean"]["classes"]}
    assert rows["skipped step"]["instructions"] < 0.05 * rows["step"]["instructions"]
    assert rows["step"]["instructions"] < 0.2 * result["window"]["instructions"]
