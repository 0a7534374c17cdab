"""Which keys each query of an attention block may see: one typed value, `AttentionPattern`.

The pattern travels unchanged from the frontend (a constant mask recognised as a pattern,
`frontend/mask_patterns.py`) and the sparsify pass (`--attention`) through the IR (`Attention` and `QAttention`
carry it as their `pattern` attribute), the quantizer and the code generator to the C kernels, where it is one
descriptor struct, `ma_attention_pattern` (kernels/include/ma_attention_keys.h), whose fields are `c_fields()`
in the same order. A new pattern is a field here, its rule in `allowed`, its term in `parse`/`describe`, and
its rule and key runs in ma_attention_keys.h.

The key set of query i (of a sequence of S tokens). Without a restricting part (window, stride, dilated window
or blocks) every key; otherwise the union of the parts present:
- `local:W`      a window: |i - j| <= W // 2, or the last W keys (i - W < j <= i) when causal;
- `strided:K`    every K-th key counted from the query, (i - j) % K == 0 (the query itself included), n/K keys;
- `dilated:W,D`  a window of W keys D apart: j = i + D t with |t| <= W // 2 (causal: 0 <= -t < W);
- `block:B,L,S`  blocks of B tokens: query block i // B sees key blocks within L blocks of its own, and with
                 S > 0 every S-th key block counted from its own (block-local and strided blocks);
- `global:G`     the first G tokens see every key and are seen by every query.
Causal keeps j <= i throughout. At most one of strided, dilated and strided blocks (each query's key set is
then a few contiguous ranges and one arithmetic progression of key runs, which the kernels walk in ascending
order, docs/integer-kernels.md).

`--attention` writes a pattern as comma-separated terms, each a name and its numbers: `local:16,global:1`,
`strided:8,local:8`, `dilated:8,2`, `block:16,1,4,global:1` (`block:B[,L[,S[,G]]]`, G global blocks = G·B
global tokens).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MAX_FIELD = 1 << 16  # sequences are at most 2^16 tokens (ma_kernels_s8.h): no field needs more


@dataclass(frozen=True)
class AttentionPattern:
    window: int = 0          # local band: |i - j| <= window // 2 (causal: the last `window` keys); 0: none
    global_tokens: int = 0   # the first tokens, which see and are seen by every token
    causal: bool = False     # keys j <= i only
    stride: int = 0          # strided keys: (i - j) % stride == 0; 0: none
    dilated: int = 0         # dilated window: `dilated` keys `dilation` apart; 0: none
    dilation: int = 0        # the dilated window's step (>= 2 with a dilated window, else 0)
    block: int = 0           # block size of the block-sparse part; 0: none
    block_local: int = 0     # key blocks within this many blocks of the query's block
    block_stride: int = 0    # and every block_stride-th key block counted from the query's block; 0: none

    def __post_init__(self) -> None:
        for name in ("window", "global_tokens", "stride", "dilated", "dilation", "block", "block_local",
                     "block_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_FIELD:
                raise ValueError(f"{name} must be an integer in [0, {MAX_FIELD}], got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "causal", bool(self.causal))
        if self.stride == 1:
            raise ValueError("strided:1 is every key: use dense")
        if (self.dilated > 0) != (self.dilation > 0):
            raise ValueError("a dilated window needs both its size and its dilation (dilated:W,D)")
        if self.dilated and self.dilation < 2:
            raise ValueError("dilated:W,1 is local:W: the dilation must be at least 2")
        if not self.block and (self.block_local or self.block_stride):
            raise ValueError("local and strided blocks need a block size (block:B,L,S)")
        if self.block_stride == 1:
            raise ValueError("block:B,L,1 is every block: use dense")
        if sum(bool(v) for v in (self.stride, self.dilated, self.block_stride)) > 1:
            raise ValueError("one of strided, dilated and strided blocks per pattern")

    @property
    def dense(self) -> bool:
        """Every key (up to causality): no part restricts the keys."""
        return not (self.window or self.stride or self.dilated or self.block)

    def allowed(self, seq: int) -> np.ndarray:
        """bool[S, S]: may query i attend to key j? (ma_attention_sees in C)"""
        i = np.arange(seq)[:, None]
        j = np.arange(seq)[None, :]
        d = i - j
        if self.dense:
            allowed = np.ones((seq, seq), bool)
        else:
            allowed = (i < self.global_tokens) | (j < self.global_tokens)
            if self.window:
                allowed |= (d < self.window) if self.causal else (np.abs(d) <= self.window // 2)
            if self.stride:
                allowed |= d % self.stride == 0
            if self.dilated:
                reach = (self.dilated - 1 if self.causal else self.dilated // 2) * self.dilation
                allowed |= (d % self.dilation == 0) & (np.abs(d) <= reach)
            if self.block:
                blocks = i // self.block - j // self.block
                allowed |= np.abs(blocks) <= self.block_local
                if self.block_stride:
                    allowed |= blocks % self.block_stride == 0
        if self.causal:
            allowed = allowed & (d >= 0)
        return allowed

    def terms(self) -> list[str]:
        """The pattern in `--attention` notation, one term per part ([] when dense)."""
        terms = []
        if self.window:
            terms.append(f"local:{self.window}")
        if self.stride:
            terms.append(f"strided:{self.stride}")
        if self.dilated:
            terms.append(f"dilated:{self.dilated},{self.dilation}")
        if self.block:
            numbers = [self.block, self.block_local, self.block_stride]
            while len(numbers) > 1 and numbers[-1] == 0:
                numbers.pop()
            terms.append("block:" + ",".join(map(str, numbers)))
        if self.global_tokens and not self.dense:
            terms.append(f"global:{self.global_tokens}")
        return terms

    def describe(self) -> str:
        """`--attention` notation ("dense", "strided:8,local:8,global:1"), with " (causal)" when causal."""
        return (",".join(self.terms()) or "dense") + (" (causal)" if self.causal else "")

    __str__ = describe

    def c_fields(self) -> list[tuple[str, int]]:
        """The fields of the C descriptor `ma_attention_pattern`, in its order."""
        return [("window", self.window), ("causal", int(self.causal)), ("global_tokens", self.global_tokens),
                ("stride", self.stride), ("dilated", self.dilated), ("dilation", self.dilation),
                ("block", self.block), ("block_local", self.block_local), ("block_stride", self.block_stride)]

    def problem(self, seq: int) -> str | None:
        """Why this pattern does not fit a sequence of `seq` tokens, or None."""
        if self.window > seq:
            return f"window {self.window} is larger than the sequence ({seq} tokens)"
        if self.global_tokens >= seq and not self.dense:
            return f"{self.global_tokens} global tokens leave no local tokens in a sequence of {seq}"
        if self.stride >= seq:
            return f"stride {self.stride} leaves each query only itself in a sequence of {seq}"
        if self.dilated and (self.dilated // 2 or 1) * self.dilation >= seq:
            return f"a dilated window {self.dilated} x {self.dilation} is wider than the sequence ({seq} tokens)"
        if self.block > seq:
            return f"block size {self.block} is larger than the sequence ({seq} tokens)"
        return None

    @staticmethod
    def parse(text: str, causal: bool = False) -> "AttentionPattern":
        """A pattern from `--attention` terms (see the module docstring); ValueError says what is wrong."""
        fields: dict[str, int] = {}
        for name, numbers in _terms(text):
            if name not in _TERMS:
                raise ValueError(f"unknown term {name!r}: expected local, global, strided, dilated or block")
            keys, minimum = _TERMS[name]
            if not minimum <= len(numbers) <= len(keys):
                raise ValueError(f"{name} takes {', '.join(keys[:minimum])}"
                                 + "".join(f"[, {key}" for key in keys[minimum:]) + "]" * (len(keys) - minimum))
            if any(key in fields for key in keys if key != "global_tokens"):
                raise ValueError(f"{name} given twice")
            given = dict(zip(keys, numbers))
            if "global_blocks" in given:  # G global blocks are the first G B tokens
                given["global_tokens"] = max(fields.get("global_tokens", 0), given.pop("global_blocks") * given["block"])
            fields.update(given)
        for key, value in fields.items():
            least = _LEAST[key]
            if value < least:
                raise ValueError(f"{_NAMES[key]} cannot be negative" if least == 0 else
                                 f"{_NAMES[key]} must be at least {least}")
        pattern = AttentionPattern(causal=causal, **fields)
        if pattern.dense:
            raise ValueError("global tokens alone restrict nothing: add local, strided, dilated or block")
        return pattern


# term name -> (the pattern fields its numbers give, in order; how many of them it needs)
_TERMS = {"local": (("window",), 1), "global": (("global_tokens",), 1), "strided": (("stride",), 1),
          "dilated": (("dilated", "dilation"), 2),
          "block": (("block", "block_local", "block_stride", "global_blocks"), 1)}
_LEAST = {"window": 1, "global_tokens": 0, "stride": 2, "dilated": 1, "dilation": 2, "block": 1, "block_local": 0,
          "block_stride": 2}
_NAMES = {"window": "the window", "global_tokens": "the number of global tokens", "stride": "the stride",
          "dilated": "the dilated window", "dilation": "the dilation", "block": "the block size",
          "block_local": "the number of local blocks", "block_stride": "the block stride"}


def _terms(text: str) -> list[tuple[str, list[int]]]:
    """`name:n,n,name:n` -> [(name, [n, n]), (name, [n])]: a bare number continues the previous term."""
    terms: list[tuple[str, list[int]]] = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(?:([a-z]+):)?\s*(-?\d+)\s*", item)
        if not match or (match.group(1) is None and not terms):
            raise ValueError(f"cannot read {item!r}: terms are name:number, e.g. local:16,global:1")
        number = int(match.group(2))
        if match.group(1) is None:
            terms[-1][1].append(number)
        else:
            terms.append((match.group(1), [number]))
    return terms


DENSE = AttentionPattern()
