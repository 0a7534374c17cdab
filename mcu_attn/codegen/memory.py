"""Static memory plan: every intermediate tensor and every kernel scratch buffer gets a byte offset in ONE arena.

The planner sees the model as a list of steps (one per graph node, in execution order). Each step reads values,
writes values and may need scratch bytes for its own duration. Three kinds of storage exist besides the arena:
the caller's input buffer, the caller's output buffer and the constants in flash.

1. Views. A step whose output is a byte range of its input (Reshape, Squeeze, Unsqueeze, Flatten, Identity,
   a Gather or Slice that selects one contiguous block) emits no code and owns no storage: its output is
   `(root, offset)` of the value it views, so chains of views resolve to one root buffer. This is always safe
   here because every buffer is written only by the step that defines it (single assignment), except for
   in-place steps, which rule 2 only allows once every view of the old contents is dead.
2. In place. An elementwise step (GELU, Add, a table lookup, ...) may write its output over an input when that
   input is a whole arena buffer (offset 0, same size) whose contents, through every value that views them,
   are read for the last time by this very step. Graph outputs and the caller's input are never overwritten.
3. Lifetimes. A root buffer is live from the step that writes it to the last step that reads it or any view of
   it (inclusive); a graph output is read "after the last step". Scratch of step n is live during step n only,
   so it never overlaps that step's inputs or outputs.
4. Edges. The caller's input buffer is the storage of the graph input (no copy in). The graph output's root is
   placed in the caller's output buffer when the output is that whole root (no copy out); otherwise, e.g. the
   output views part of a larger tensor or the input itself, the root stays in the arena and ma_run ends with a
   copy.
5. Placement (greedy first fit, the TFLite Micro planner's idea): take the arena buffers in some order and give
   each the lowest offset, aligned to `align`, at which it overlaps no already-placed buffer whose lifetime
   intersects its own (first fit over the gaps between those buffers). The arena size is the highest end
   offset. Largest-first (TFLM's order) can leave holes, e.g. when a large short-lived scratch buffer lands
   under a long-lived tensor's path, so three orders are tried (largest first, largest size x lifetime first,
   definition order; ties by first step, then name, so the plan is deterministic) and the smallest arena kept.
   No plan can be below the bytes live in the busiest step (`MemoryPlan.live_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Step:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    view_of: tuple[str, int] | None = None   # (input value, byte offset): output 0 is a view, no code
    inplace: tuple[int, ...] = ()            # input positions output 0 may overwrite (elementwise kernels)
    scratch: int = 0                         # kernel scratch bytes, live during this step only


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first: int   # first step it is live in
    last: int    # last step it is live in (inclusive)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Location:
    storage: str   # "arena", "input", "output" or "const"
    root: str      # the value owning the storage (for "arena": the buffer name)
    offset: int    # bytes from the start of the storage ("arena": already includes the buffer's offset)


@dataclass
class MemoryPlan:
    arena_bytes: int
    buffers: dict[str, Buffer]              # arena buffers (roots and scratch) by name
    offsets: dict[str, int]                 # arena offset of each buffer
    values: dict[str, Location]             # where every value lives
    scratch: dict[int, int] = field(default_factory=dict)  # step index -> arena offset of its scratch
    copy_out: bool = False                  # ma_run ends by copying the output value into the caller's buffer
    inplace_steps: tuple[int, ...] = ()     # steps that write over an input

    def live_bytes(self, step: int) -> int:
        """Bytes of arena buffers (tensors and scratch) live during `step`: that layer's own peak."""
        return sum(b.size for b in self.buffers.values() if b.first <= step <= b.last)


def scratch_name(step: int) -> str:
    return f"scratch@{step}"


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


# Orders `place` tries (rule 5); the first is the TFLite Micro planner's. Ties: earlier first step, then name.
PLACEMENT_ORDERS = (
    lambda b: (-b.size, b.first, b.name),                           # largest first
    lambda b: (-b.size * (b.last - b.first + 1), b.first, b.name),  # largest size x lifetime first
    lambda b: (b.first, -b.size, b.name),                           # in order of definition
)


def place(buffers: Iterable[Buffer], align: int = 8) -> tuple[dict[str, int], int]:
    """First fit in each of PLACEMENT_ORDERS (rule 5): the offsets by buffer name and the arena size of the
    order with the smallest arena (the earliest order on a tie)."""
    buffers = list(buffers)
    best: tuple[dict[str, int], int] | None = None
    for key in PLACEMENT_ORDERS:
        offsets, total = _first_fit(sorted(buffers, key=key), align)
        if best is None or total < best[1]:
            best = (offsets, total)
    return best


def _first_fit(order: list[Buffer], align: int) -> tuple[dict[str, int], int]:
    """Each buffer in turn at the lowest aligned offset where it overlaps no placed buffer live at the same time."""
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[str, int] = {}
    for buffer in order:
        conflicts = sorted(((offset, other) for offset, other in placed if other.overlaps_in_time(buffer)),
                           key=lambda pair: pair[0])
        candidate = 0
        for offset, other in conflicts:
            if candidate + buffer.size <= offset:
                break
            candidate = max(candidate, _align_up(offset + other.size, align))
        offsets[buffer.name] = candidate
        placed.append((candidate, buffer))
    total = max((offsets[b.name] + b.size for _, b in placed), default=0)
    return offsets, total


def plan_memory(steps: Sequence[Step], sizes: Mapping[str, int], inputs: Sequence[str], outputs: Sequence[str],
                constants: Iterable[str], align: int = 8) -> MemoryPlan:
    """The plan of rules 1-5 for `steps`; `sizes` gives the byte size of every value."""
    constants = set(constants)
    end = len(steps)
    last_read: dict[str, int] = {name: end for name in outputs}
    for index, step in enumerate(steps):
        for value in step.inputs:
            if value not in outputs:
                last_read[value] = max(last_read.get(value, -1), index)

    root: dict[str, tuple[str, int]] = {name: (name, 0) for name in list(inputs) + sorted(constants)}
    defined_at: dict[str, int] = {}
    members: dict[str, list[str]] = {name: [name] for name in root}  # values sharing each root's storage
    inplace_steps = []
    for index, step in enumerate(steps):
        out = step.outputs[0]
        if step.view_of is not None:
            source, offset = step.view_of
            base, base_offset = root[source]
            root[out] = (base, base_offset + offset)
            members[base].append(out)
            outs = step.outputs[1:]
        else:
            target = _inplace_target(step, index, root, members, last_read, sizes, defined_at, outputs)
            if target is not None:
                root[out] = (target, 0)
                members[target].append(out)
                inplace_steps.append(index)
                outs = step.outputs[1:]
            else:
                outs = step.outputs
        for value in outs:
            root[value] = (value, 0)
            members[value] = [value]
            defined_at[value] = index

    storage: dict[str, str] = {name: "input" for name in inputs}
    storage.update({name: "const" for name in constants})
    copy_out = False
    for name in outputs:
        base, offset = root[name]
        if base in defined_at and offset == 0 and sizes[base] == sizes[name] and len(outputs) == 1:
            storage[base] = "output"
        else:
            copy_out = True

    buffers: dict[str, Buffer] = {}
    for base, index in defined_at.items():
        if base in storage:
            continue
        last = max([last_read.get(v, index) for v in members[base]] + [index])
        buffers[base] = Buffer(base, sizes[base], index, last)
    for index, step in enumerate(steps):
        if step.scratch:
            buffers[scratch_name(index)] = Buffer(scratch_name(index), step.scratch, index, index)
    offsets, total = place(buffers.values(), align)

    values: dict[str, Location] = {}
    for name, (base, offset) in root.items():
        kind = storage.get(base, "arena")
        values[name] = Location(kind, base, offset + (offsets[base] if kind == "arena" else 0))
    scratch = {i: offsets[scratch_name(i)] for i, s in enumerate(steps) if s.scratch}
    return MemoryPlan(total, buffers, offsets, values, scratch, copy_out, tuple(inplace_steps))


def _inplace_target(step: Step, index: int, root: Mapping[str, tuple[str, int]],
                    members: Mapping[str, list[str]], last_read: Mapping[str, int], sizes: Mapping[str, int],
                    defined_at: Mapping[str, int], outputs: Sequence[str]) -> str | None:
    """The root buffer output 0 of `step` may overwrite (rule 2), or None."""
    if step.outputs[0] in outputs:
        return None
    for position in step.inplace:
        base, offset = root[step.inputs[position]]
        if base not in defined_at or offset != 0 or sizes[base] != sizes[step.outputs[0]]:
            continue
        if all(last_read.get(v, -1) <= index for v in members[base]):
            return base
    return None
