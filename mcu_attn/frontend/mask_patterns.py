"""Recognise a constant attention mask as an `AttentionPattern` (a model trained with sparse attention).

A model trained with a constant 0/-inf mask that is exactly a pattern (a band, strided keys, a dilated window,
block-sparse blocks, global tokens, their unions, causal or not) runs that pattern's sparse kernel: the same
keys in the same ascending order, so the results are those of the dense kernel with the mask, bit for bit.

The pattern's parameters are read off the mask, then every candidate they suggest is compared with the mask
element by element (`AttentionPattern.allowed`); the first exact one is the answer, and a mask no candidate
reproduces stays a mask:
1. causal: no key after its query is allowed;
2. global tokens G: the leading keys every query sees (every earlier query, when causal);
3. between the other tokens, the offsets d = i - j of the allowed pairs: the window is the contiguous run of
   offsets around 0; the offsets beyond it are multiples of their greatest common divisor, a stride K (strided
   keys) or a dilation D (a dilated window, reaching as far as the largest offset);
4. blocks: a block size B divides every boundary of the rows' runs of two or more allowed keys (boundaries at
   the ends of the sequence, at the global tokens and, when causal, at the query itself do not count); between
   blocks, the same offset analysis on block numbers gives the local blocks L and the block stride S, and the
   offsets beyond the local blocks' reach a stride of strided keys.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from mcu_attn.ir.pattern import AttentionPattern


def match_pattern(allowed: np.ndarray) -> AttentionPattern | None:
    """The pattern whose key sets are exactly `allowed` (bool [S, S]), or None."""
    seq = allowed.shape[0]
    i, j = np.indices(allowed.shape)
    causal = bool(seq > 1 and not allowed[i < j].any())
    if np.array_equal(allowed, AttentionPattern(causal=causal).allowed(seq)):
        return AttentionPattern(causal=causal)
    full_columns = (allowed | (j > i)).all(axis=0) if causal else allowed.all(axis=0)
    global_tokens = int(np.argmin(np.append(full_columns, False)))
    for fields in _candidates(allowed, global_tokens, causal):
        for globals_ in dict.fromkeys((global_tokens, 0)):
            try:
                pattern = AttentionPattern(global_tokens=globals_, causal=causal, **fields)
            except ValueError:  # a combination the kernels do not take (two progressions)
                continue
            if np.array_equal(pattern.allowed(seq), allowed):
                return pattern
    return None


def _candidates(allowed: np.ndarray, global_tokens: int, causal: bool) -> list[dict]:
    """Pattern fields the mask suggests, simplest first."""
    qi, kj = np.nonzero(allowed[global_tokens:, global_tokens:])
    core, step, reach = _offsets(qi - kj, causal)
    window = core + 1 if causal else 2 * core

    def with_window(parts: list[dict]) -> list[dict]:
        return parts + ([dict(part, window=window) for part in parts] if window else [])

    found = [dict(window=max(window, 1))]
    if step:
        dilated = reach // step + 1 if causal else 2 * (reach // step)
        found += with_window([dict(stride=step)]) + with_window([dict(dilated=dilated, dilation=step)])
    for block in _block_sizes(allowed, global_tokens, causal):
        local, block_stride, _ = _offsets(_full_block_offsets(allowed, block, global_tokens, causal), causal)
        parts = [dict(block=block, block_local=local)]
        if block_stride:
            parts.append(dict(block=block, block_local=local, block_stride=block_stride))
        found += with_window(parts)
        # strided keys beyond the local blocks' reach, (L + 1) B - 1
        far = [abs(d) for d in set((qi - kj).tolist()) if abs(d) >= (local + 1) * block]
        if far:
            found.append(dict(block=block, block_local=local, stride=reduce(math.gcd, far)))
    return found


def _offsets(offsets: np.ndarray, causal: bool) -> tuple[int, int, int]:
    """(core, step, reach) of offsets d = i - j: every offset in [-core, core] (causal: [0, core]) is present;
    the others are multiples of step, the farthest `reach` away (step 0 when there are none)."""
    present = set(np.unique(offsets).tolist())
    core = 0
    while core + 1 in present and (causal or -(core + 1) in present):
        core += 1
    beyond = [abs(d) for d in present if abs(d) > core]
    return core, (reduce(math.gcd, beyond) if beyond else 0), max(beyond, default=0)


def _block_sizes(allowed: np.ndarray, global_tokens: int, causal: bool) -> list[int]:
    """Candidate block sizes: the divisors (largest first, at most three) of the greatest common divisor of the
    boundaries of the non-global rows' runs of two or more allowed keys (single keys are strided ones)."""
    seq = allowed.shape[0]
    edges = np.diff(allowed[global_tokens:].astype(np.int8), axis=1, prepend=0, append=0)
    row, start = np.nonzero(edges == 1)
    end = np.nonzero(edges == -1)[1]  # row-major order: the end of each run follows its start
    long = end - start >= 2
    row, cuts = np.concatenate([row[long]] * 2), np.concatenate([start[long], end[long]])
    own = row + global_tokens + 1 if causal else np.full_like(row, -1)
    cuts = cuts[(cuts != 0) & (cuts != seq) & (cuts != global_tokens) & (cuts != own)]
    if cuts.size == 0:
        return []
    size = reduce(math.gcd, np.unique(cuts).tolist())
    return [b for b in range(min(size, seq - 1), 1, -1) if size % b == 0][:3]


def _full_block_offsets(allowed: np.ndarray, block: int, global_tokens: int, causal: bool) -> np.ndarray:
    """qb - kb of the (query block, key block) pairs whose keys are all allowed (ignoring the global tokens,
    keys after a causal query and the positions past the end of the sequence), blocks of global tokens only
    left out."""
    seq = allowed.shape[0]
    count = -(-seq // block)
    i, j = np.indices(allowed.shape)
    free = allowed | (i < global_tokens) | (j < global_tokens) | ((j > i) if causal else False)
    padded = np.ones((count * block, count * block), bool)
    padded[:seq, :seq] = free
    full = padded.reshape(count, block, count, block).all(axis=(1, 3))
    real = np.arange(count) * block + block > global_tokens  # blocks with a non-global token
    qb, kb = np.nonzero(full & real[:, None] & real[None, :])
    return (qb - kb)[(qb >= kb) | (not causal)]  # causal: later key blocks are free, not allowed
