"""From one inference's executed blocks to per-layer instruction counts (shared by the unicorn and QEMU engines).

Input: a `Trace`: the distinct blocks that ran (start address, length), the id of every executed block in
order, where the current layer changed (marks), how often each block was followed by each other block in each
layer (transitions), and optionally every data read that hit flash with the layer it happened in. Unicorn's
native recorder (sim/native.py) builds it on the fly; `summarise` builds it with numpy from a plain list of
executed blocks (Unicorn's Python hooks, QEMU's `exec` trace). Output: a `Profile`, per layer:
- the static counts of `isa.FIELDS` (each distinct block classified once, multiplied by how often it ran in
  that layer: every executed block but the last has exactly one outgoing transition);
- `taken`: runs of blocks ending in a PC write whose successor does not start where they end (taken branches,
  returns, POP {pc});
- `flash_reads`: data accesses whose address lies in flash (the rest of `reads` + all `writes` are SRAM);
- the raw flash data addresses and the executed block order, kept so the cycle model can run its flash cache
  model (docs/cycle-model.md) with whatever geometry the target has.

Layer attribution (docs/firmware.md): a block that starts at a `ma_layer_NNN_*` symbol switches the current
layer; everything until the next switch (kernels, helpers, the glue in `ma_run` after the call) belongs to
it. What runs before the first layer (the `ma_harness_infer` / `ma_run` prologue) is its own row, so the rows
always add up to the total. Symbols sharing one address (identical code folded by the linker) are entered in
layer order: the next such layer after the current one, else the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mcu_attn.sim.isa import FIELDS, Block, classify

PREAMBLE = "(before the first layer)"
RETURN = -1   # a transition's successor id for "the call returned" (after the last executed block)


@dataclass(frozen=True)
class LayerRef:
    name: str
    symbol: str
    address: int
    op: str | None = None


@dataclass(frozen=True)
class Trace:
    """One inference's execution, summarised. Rows: 0 before the first layer, 1 + layer index after."""
    block_starts: np.ndarray        # int64[B]: each distinct block's start address
    block_sizes: np.ndarray         # int64[B]: and its length in bytes
    order: np.ndarray               # uint32[N]: the executed blocks in order (ids)
    mark_positions: np.ndarray      # int64[M]: from order[mark_positions[k]] on, the row is mark_rows[k]
    mark_rows: np.ndarray           # int32[M]
    transitions: np.ndarray         # int64[T, 4]: row, previous id, next id, how often
    read_addresses: np.ndarray      # [R]: data reads from flash, in order
    read_rows: np.ndarray           # int32[R]: the row each happened in
    row_reads: np.ndarray           # int64[rows]: how many of them per row


def rows_from_marks(count: int, positions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The row of each of `count` executed blocks, from the marks."""
    lengths = np.diff(np.append(positions, count))
    head = int(positions[0]) if len(positions) else count
    return np.concatenate([np.zeros(head, np.int32), np.repeat(rows.astype(np.int32), lengths)])


@dataclass
class Profile:
    """Counts of one inference. `counts[i]` belongs to `names[i]`; row 0 is the preamble."""
    names: list[str]
    symbols: list[str | None]
    ops: list[str | None]
    counts: np.ndarray                   # int64[rows, len(COUNT_FIELDS)]
    flash_addresses: np.ndarray          # data reads in flash, in order
    flash_rows: np.ndarray               # the row each of them belongs to
    block_starts: np.ndarray             # each distinct executed block: start, end (address past it),
    block_ends: np.ndarray               # instructions, and how often it ran
    block_instructions: np.ndarray
    block_runs: np.ndarray
    code_order: np.ndarray               # the executed blocks in order, as indices into block_*
    mark_positions: np.ndarray           # where the row changes in code_order (Trace)
    mark_rows: np.ndarray

    def total(self, name: str) -> int:
        return int(self.counts[:, COUNT_INDEX[name]].sum())

    def column(self, name: str) -> np.ndarray:
        return self.counts[:, COUNT_INDEX[name]]

    @property
    def code_starts(self) -> np.ndarray:
        return self.block_starts[self.code_order]

    @property
    def code_ends(self) -> np.ndarray:
        return self.block_ends[self.code_order]

    @property
    def code_rows(self) -> np.ndarray:
        return rows_from_marks(len(self.code_order), self.mark_positions, self.mark_rows)


COUNT_FIELDS = FIELDS + ("taken", "flash_reads")
COUNT_INDEX = {name: i for i, name in enumerate(COUNT_FIELDS)}


class BlockCache:
    """Classify each distinct block once; `read(address, count)` gives the code bytes."""

    def __init__(self, read: Callable[[int, int], bytes]) -> None:
        self.read = read
        self.blocks: dict[tuple[int, int], Block] = {}

    def by_size(self, address: int, size: int) -> Block:
        key = (address, size)
        if key not in self.blocks:
            self.blocks[key] = classify(self.read(address, size), address)
        return self.blocks[key]


def summarise(starts: np.ndarray, sizes: np.ndarray, layers: Sequence[LayerRef],
              read_addresses: np.ndarray | None = None, read_positions: np.ndarray | None = None) -> Trace:
    """The Trace of executed blocks given one by one (start address, length), with numpy; `read_positions[j]`
    is the index of the block the j-th flash read happened in."""
    pairs, order = np.unique(np.stack([np.asarray(starts, np.int64), np.asarray(sizes, np.int64)], axis=1),
                             axis=0, return_inverse=True)
    order = order.reshape(-1)
    block_starts = pairs[:, 0]
    by_address: dict[int, list[int]] = {}
    for index, layer in enumerate(layers):
        by_address.setdefault(layer.address, []).append(index)
    entries = np.flatnonzero(np.isin(block_starts, np.fromiter(by_address, np.int64, len(by_address)))[order])
    current, rows = 0, []
    for position in entries:
        candidates = [index + 1 for index in by_address[int(block_starts[order[position]])]]
        later = [c for c in candidates if c > current]
        current = later[0] if later else candidates[0]
        rows.append(current)
    marks, mark_rows = entries.astype(np.int64), np.array(rows, np.int32)
    row_of = rows_from_marks(len(order), marks, mark_rows)
    transitions = np.zeros((0, 4), np.int64)
    if len(order) > 1:
        triples = np.stack([row_of[:-1], order[:-1], order[1:]], axis=1).astype(np.int64)
        unique, times = np.unique(triples, axis=0, return_counts=True)
        transitions = np.column_stack([unique, times]).astype(np.int64)
    if read_addresses is None:
        read_addresses, read_rows = np.zeros(0, np.int64), np.zeros(0, np.int32)
    else:
        # a read before the first block (none happen: reads are made by blocks) counts in the first block's row
        read_rows = row_of[np.clip(np.asarray(read_positions, np.int64), 0, None)]
    return Trace(block_starts, pairs[:, 1], order.astype(np.uint32), marks, mark_rows, transitions,
                 np.asarray(read_addresses, np.int64), np.asarray(read_rows, np.int32),
                 np.bincount(read_rows, minlength=len(layers) + 1).astype(np.int64))


def build_profile(trace: Trace, blocks: Sequence[Block], layers: Sequence[LayerRef], return_address: int) -> Profile:
    """The per-layer counts of `trace`, whose distinct blocks classify as `blocks`; the call returned to
    `return_address`. A block at `return_address` ending the trace (Unicorn reports the block it stops at) is
    not part of the inference: the transition into it is the last block's return."""
    order = trace.order
    transitions = trace.transitions
    count = len(blocks)
    block_starts = np.array([b.address for b in blocks], np.int64)
    block_ends = np.array([b.end for b in blocks], np.int64)
    if len(order) and block_starts[order[-1]] == return_address:
        order = order[:-1]
    elif len(order):  # the last block's return: a transition to RETURN
        last_row = trace.mark_rows[-1] if len(trace.mark_rows) else 0
        transitions = np.vstack([transitions, [[last_row, order[-1], RETURN, 1]]])
    row_count = len(layers) + 1
    rows, previous, following, times = (transitions[:, i] for i in range(4))
    vectors = np.stack([b.vector for b in blocks]) if blocks else np.zeros((0, len(FIELDS)), np.int64)
    writes_pc = np.array([b.writes_pc for b in blocks], bool)
    successor = np.where(following == RETURN, return_address, block_starts[np.clip(following, 0, None)])
    taken = writes_pc[previous] & (successor != block_ends[previous])
    runs = np.zeros((row_count, count), np.int64)
    np.add.at(runs, (rows, previous), times)
    counts = np.zeros((row_count, len(COUNT_FIELDS)), np.int64)
    counts[:, :len(FIELDS)] = runs @ vectors
    counts[:, COUNT_INDEX["taken"]] = np.bincount(rows, weights=times * taken, minlength=row_count).astype(np.int64)
    counts[:, COUNT_INDEX["flash_reads"]] = trace.row_reads
    return Profile(names=[PREAMBLE] + [layer.name for layer in layers],
                   symbols=[None] + [layer.symbol for layer in layers],
                   ops=[None] + [layer.op for layer in layers],
                   counts=counts, flash_addresses=trace.read_addresses, flash_rows=trace.read_rows,
                   block_starts=block_starts, block_ends=block_ends, block_instructions=vectors[:, 0],
                   block_runs=runs.sum(axis=0), code_order=order, mark_positions=trace.mark_positions,
                   mark_rows=trace.mark_rows)
