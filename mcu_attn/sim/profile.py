"""From an executed-block trace to per-layer instruction counts (shared by the unicorn and QEMU engines).

Input: the start address and length of every block executed during one `ma_harness_infer` call, in order
(unicorn's block hook, or QEMU's `exec` trace with its `in_asm` block sizes), and optionally every data read
that hit flash (address, and the trace position it happened in). Output: a `Profile`, per layer:
- the static counts of `isa.FIELDS` (each distinct block classified once, multiplied by how often it ran);
- `taken`: blocks ending in a PC write whose successor does not start where they end (taken branches,
  returns, POP {pc});
- `flash_reads`: data accesses whose address lies in flash (the rest of `reads` + all `writes` are SRAM);
- the raw flash data addresses and executed code ranges, kept so the cycle model can run its flash cache
  model (docs/cycle-model.md) with whatever geometry the target has.

Layer attribution (docs/firmware.md): a block that starts at a `ma_layer_NNN_*` symbol switches the current
layer; everything until the next switch (kernels, helpers, the glue in `ma_run` after the call) belongs to
it. What runs before the first layer (the `ma_harness_infer` / `ma_run` prologue) is its own row, so the rows
always add up to the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mcu_attn.sim.isa import FIELDS, Block, classify

PREAMBLE = "(before the first layer)"


@dataclass(frozen=True)
class LayerRef:
    name: str
    symbol: str
    address: int
    op: str | None = None


@dataclass
class Profile:
    """Counts of one inference. `rows[i]` belongs to `names[i]`; row 0 is the preamble."""
    names: list[str]
    symbols: list[str | None]
    ops: list[str | None]
    counts: np.ndarray                   # int64[rows, len(COUNT_FIELDS)]
    flash_addresses: np.ndarray          # data reads in flash, in order
    flash_rows: np.ndarray               # the row each of them belongs to
    code_starts: np.ndarray              # executed blocks, in order
    code_ends: np.ndarray
    code_rows: np.ndarray
    code_instructions: np.ndarray | None = None   # instructions of each executed block

    def total(self, name: str) -> int:
        return int(self.counts[:, COUNT_INDEX[name]].sum())

    def column(self, name: str) -> np.ndarray:
        return self.counts[:, COUNT_INDEX[name]]


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


def _rows(addresses: np.ndarray, layers: Sequence[LayerRef]) -> np.ndarray:
    """Row of every executed block: 0 before the first layer, 1 + layer index after entering it."""
    rows = np.zeros(len(addresses), np.int64)
    by_address: dict[int, list[int]] = {}
    for index, layer in enumerate(layers):
        by_address.setdefault(layer.address, []).append(index)
    positions = np.flatnonzero(np.isin(addresses, np.fromiter(by_address, np.int64, len(by_address))))
    current = -1
    marks = []
    for position in positions:
        candidates = by_address[int(addresses[position])]
        # symbols sharing one address (identical code folded by the linker) are entered in layer order
        later = [c for c in candidates if c > current]
        current = later[0] if later else candidates[0]
        marks.append((position, current + 1))
    for (start, row), (stop, _) in zip(marks, marks[1:] + [(len(addresses), 0)]):
        rows[start:stop] = row
    return rows


def build_profile(starts: np.ndarray, blocks: Sequence[Block], order: np.ndarray, layers: Sequence[LayerRef],
                  return_address: int, flash_addresses: np.ndarray | None = None,
                  flash_positions: np.ndarray | None = None) -> Profile:
    """`blocks[order[i]]` ran i-th (starting at starts[i]); the call returned to `return_address`."""
    starts = np.asarray(starts, np.int64)
    order = np.asarray(order, np.int64)
    vectors = np.stack([b.vector for b in blocks]) if blocks else np.zeros((0, len(FIELDS)), np.int64)
    ends = np.array([b.end for b in blocks], np.int64)[order] if len(order) else np.zeros(0, np.int64)
    writes_pc = np.array([b.writes_pc for b in blocks], bool)[order] if len(order) else np.zeros(0, bool)
    successors = np.append(starts[1:], return_address)
    taken = writes_pc & (successors != ends)
    rows = _rows(starts, layers)
    row_count = len(layers) + 1
    counts = np.zeros((row_count, len(COUNT_FIELDS)), np.int64)
    # sum the static vectors of (row, block) pairs, weighted by how often each pair ran
    pair = rows * max(len(blocks), 1) + order
    unique, times = np.unique(pair, return_counts=True)
    for key, count in zip(unique, times):
        counts[key // max(len(blocks), 1), :len(FIELDS)] += vectors[key % max(len(blocks), 1)] * count
    counts[:, COUNT_INDEX["taken"]] = np.bincount(rows, weights=taken, minlength=row_count).astype(np.int64)
    if flash_addresses is None:
        flash_addresses = np.zeros(0, np.int64)
        flash_rows = np.zeros(0, np.int64)
    else:
        flash_addresses = np.asarray(flash_addresses, np.int64)
        flash_rows = rows[np.clip(np.asarray(flash_positions, np.int64), 0, max(len(rows) - 1, 0))]
        counts[:, COUNT_INDEX["flash_reads"]] = np.bincount(flash_rows, minlength=row_count)
    return Profile(names=[PREAMBLE] + [layer.name for layer in layers],
                   symbols=[None] + [layer.symbol for layer in layers],
                   ops=[None] + [layer.op for layer in layers],
                   counts=counts, flash_addresses=flash_addresses, flash_rows=flash_rows,
                   code_starts=starts, code_ends=ends, code_rows=rows,
                   code_instructions=vectors[order, 0] if len(order) else np.zeros(0, np.int64))
