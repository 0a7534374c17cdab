"""Invariants of the static memory plan (mcu_attn/codegen/memory.py).

Random step lists stand in for graphs: chains of kernels, views, in-place candidates and scratch. Besides the
direct invariants (no two buffers live at the same time share bytes, alignment, views inside their root), the
plan is executed symbolically: every write stamps its bytes with the value written, and every read checks that
the bytes of the value it reads still carry that value's stamp.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.codegen.emit import memory_plan
from mcu_attn.codegen.memory import PLACEMENT_ORDERS, Buffer, Step, _first_fit, place, plan_memory, scratch_name

from support import DIGITS


def random_problem(seed: int):
    rng = np.random.default_rng(seed)
    sizes = {"x": int(rng.integers(1, 200)), "w": 64}
    values = ["x"]
    steps = []
    for index in range(int(rng.integers(3, 40))):
        out = f"v{index}"
        kind = rng.choice(["kernel", "kernel", "view", "inplace"])
        if kind == "view":
            source = str(rng.choice(values))
            offset = int(rng.integers(0, sizes[source] + 1))
            sizes[out] = int(rng.integers(0, sizes[source] - offset + 1))
            steps.append(Step((source,), (out,), view_of=(source, offset)))
        else:
            arity = int(rng.integers(1, 4))
            inputs = tuple(str(v) for v in rng.choice(values, arity)) + (("w",) if rng.random() < 0.3 else ())
            sizes[out] = sizes[inputs[0]] if kind == "inplace" else int(rng.integers(1, 300))
            scratch = int(rng.integers(1, 50)) if rng.random() < 0.2 else 0
            steps.append(Step(inputs, (out,), inplace=(0,) if kind == "inplace" else (), scratch=scratch))
        values.append(out)
    outputs = [values[-1]]
    return steps, sizes, outputs


def check_plan(steps, sizes, outputs, plan, align=8):
    # 1. buffers whose lifetimes intersect never share a byte; every offset is aligned
    buffers = list(plan.buffers.values())
    for i, a in enumerate(buffers):
        start_a = plan.offsets[a.name]
        assert start_a % align == 0
        assert start_a + a.size <= plan.arena_bytes
        for b in buffers[i + 1:]:
            start_b = plan.offsets[b.name]
            if a.overlaps_in_time(b) and a.size and b.size:
                assert start_a + a.size <= start_b or start_b + b.size <= start_a, (a, b)
    # 2. views and in-place outputs live inside their root's storage
    for value, location in plan.values.items():
        if location.storage == "arena":
            root = plan.buffers[location.root]
            base = plan.offsets[root.name]
            assert base <= location.offset and location.offset + sizes[value] <= base + root.size
    # 3. symbolic execution: reads see what was written
    stamps = np.full(max(plan.arena_bytes, 1), -1, np.int64)
    output_stamps = np.full(max(sizes[o] for o in outputs) + 1, -1, np.int64)
    expected: dict[str, int] = {}

    def region(value):
        location = plan.values[value]
        if location.storage == "arena":
            return stamps, location.offset
        if location.storage == "output":
            return output_stamps, location.offset
        return None, 0

    def write(value, stamp):
        memory, offset = region(value)
        if memory is not None:
            memory[offset:offset + sizes[value]] = stamp
        expected[value] = stamp

    def read_ok(value):
        memory, offset = region(value)
        return memory is None or np.all(memory[offset:offset + sizes[value]] == expected[value])

    for index, step in enumerate(steps):
        out = step.outputs[0]
        if step.view_of is not None:
            source = step.view_of[0]
            assert read_ok(source)
            expected[out] = expected.get(source, -1)  # inputs and constants are not planned
            continue
        overwritten = index in plan.inplace_steps
        if step.scratch:
            offset = plan.scratch[index]
            stamps[offset:offset + step.scratch] = -2 - index
        write(out, index)
        for value in step.inputs:
            if overwritten and plan.values[value].root == plan.values[out].root:
                continue  # the in-place input: consumed element by element as the output is written
            assert read_ok(value), f"step {index} reads {value}, which was overwritten"
    for value in outputs:
        assert read_ok(value)
    # 4. the arena is at least the peak of simultaneously live buffer bytes
    peak = max((sum(b.size for b in buffers if b.first <= t <= b.last) for t in range(len(steps))), default=0)
    assert plan.arena_bytes >= peak


@pytest.mark.parametrize("seed", range(200))
def test_random_plans(seed):
    steps, sizes, outputs = random_problem(seed)
    plan = plan_memory(steps, sizes, ["x"], outputs, ["w"])
    check_plan(steps, sizes, outputs, plan)


def test_place_first_fit_reuses_freed_space():
    buffers = [Buffer("a", 100, 0, 1), Buffer("b", 60, 1, 2), Buffer("c", 40, 2, 3), Buffer("d", 10, 3, 3)]
    offsets, total = place(buffers)
    assert offsets == {"a": 0, "b": 104, "c": 0, "d": 40}  # c and d take a's bytes once a is dead
    assert total == 164


def test_views_alias_without_storage():
    sizes = {"x": 64, "h": 64, "r": 64, "g": 16, "y": 16}
    steps = [Step(("x",), ("h",)), Step(("h",), ("r",), view_of=("h", 0)),
             Step(("r",), ("g",), view_of=("r", 32)), Step(("g",), ("y",))]
    plan = plan_memory(steps, sizes, ["x"], ["y"], [])
    assert set(plan.buffers) == {"h"}
    assert plan.values["r"].root == plan.values["g"].root == "h"
    assert plan.values["g"].offset == plan.offsets["h"] + 32
    assert plan.buffers["h"].last == 3   # kept alive by its view's reader
    assert plan.values["y"].storage == "output" and not plan.copy_out


def test_inplace_only_when_every_alias_is_dead():
    sizes = {v: 32 for v in ("x", "a", "v", "b", "c")}
    steps = [Step(("x",), ("a",)), Step(("a",), ("v",), view_of=("a", 0)), Step(("a",), ("b",), inplace=(0,)),
             Step(("v", "b"), ("c",))]
    plan = plan_memory(steps, sizes, ["x"], ["c"], [])
    assert plan.inplace_steps == ()  # v (a view of a) is read after b would overwrite a
    steps[3] = Step(("b",), ("c",))
    plan = plan_memory(steps, sizes, ["x"], ["c"], [])
    assert plan.inplace_steps == (2,) and plan.values["b"].root == "a"


def test_input_and_outputs_are_never_overwritten():
    sizes = {v: 32 for v in ("x", "a", "b")}
    plan = plan_memory([Step(("x",), ("a",), inplace=(0,)), Step(("a",), ("b",), inplace=(0,))], sizes, ["x"],
                       ["b"], [])
    assert plan.inplace_steps == ()
    assert plan.values["a"].storage == "arena" and plan.values["b"].storage == "output"


def test_output_viewing_part_of_a_buffer_is_copied_out():
    sizes = {"x": 8, "h": 64, "y": 16}
    plan = plan_memory([Step(("x",), ("h",)), Step(("h",), ("y",), view_of=("h", 16))], sizes, ["x"], ["y"], [])
    assert plan.copy_out and plan.values["y"].storage == "arena"
    assert plan.buffers["h"].last == 2  # live until the copy after the last step


def test_scratch_never_overlaps_its_step():
    sizes = {"x": 40, "q": 40, "o": 40}
    steps = [Step(("x",), ("q",)), Step(("q", "q", "q"), ("o",), scratch=12)]
    plan = plan_memory(steps, sizes, ["x"], ["o"], [])
    scratch = plan.buffers[scratch_name(1)]
    assert (scratch.first, scratch.last) == (1, 1)
    q = plan.offsets["q"]
    assert plan.scratch[1] >= q + 40 or plan.scratch[1] + 12 <= q


def test_digits_vit_plan():
    graph = import_model(DIGITS / "digits_vit.onnx")
    steps, sizes, plan = memory_plan(graph, query_tile=1)
    check_plan(steps, sizes, graph.outputs, plan)
    # the final Gather of the class token and the input Reshape are views; GELU and residual adds run in place
    ops = [n.op for n in graph.nodes]
    assert all(steps[i].view_of is not None for i, op in enumerate(ops) if op in ("Reshape", "Gather"))
    assert {ops[i] for i in plan.inplace_steps} >= {"Gelu", "Add"}
    # peak: residual stream, LayerNorm output and q, k, v (5 x 17 x 32 floats) while v is computed
    assert plan.arena_bytes == 5 * 17 * 32 * 4
    # each layer's live bytes (tensors and scratch) fit the arena, and the busiest layer is that peak
    assert max(plan.live_bytes(i) for i in range(len(steps))) == plan.arena_bytes


def test_place_keeps_the_order_with_the_smallest_arena():
    """Largest-first leaves a hole here (72 B); placing the long-lived buffer first reaches the bound of 64 B,
    the bytes live at step 4."""
    buffers = [Buffer("wide", 40, 1, 1), Buffer("long", 16, 0, 4), Buffer("a", 16, 4, 4), Buffer("b", 32, 4, 4)]
    assert _first_fit(sorted(buffers, key=PLACEMENT_ORDERS[0]), 8)[1] == 72
    offsets, total = place(buffers)
    assert total == 64 and offsets["long"] == 0
    for one in buffers:  # still a valid plan: buffers live at the same time never share bytes
        for other in buffers:
            if one is not other and one.overlaps_in_time(other):
                assert (offsets[one.name] + one.size <= offsets[other.name]
                        or offsets[other.name] + other.size <= offsets[one.name])
