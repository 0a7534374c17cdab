"""Which keys each query of an attention block may see: one typed value, `AttentionPattern`.

The pattern travels unchanged from the frontend (a constant mask recognised as a pattern) and the sparsify pass
(`--attention`) through the IR (`Attention` and `QAttention` carry it as their `pattern` attribute), the
quantizer and the code generator to the C kernels, where it is one descriptor struct, `ma_attention_pattern`
(kernels/include/ma_attention_keys.h), whose fields are `c_fields()` in the same order. A new pattern is a
field here, its rule in `allowed`, and its key ranges in ma_attention_keys.h.

The key set of query i (of a sequence of S tokens):
- no window: every key;
- a local window W: |i - j| <= W // 2, or the last W keys (i - W < j <= i) when causal;
- the first G global tokens see every key and are seen by every query;
- causal keeps j <= i throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AttentionPattern:
    window: int = 0          # local band: |i - j| <= window // 2 (causal: the last `window` keys); 0: every key
    global_tokens: int = 0   # the first tokens, which see and are seen by every token
    causal: bool = False     # keys j <= i only

    def __post_init__(self) -> None:
        for name in ("window", "global_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"AttentionPattern.{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "causal", bool(self.causal))

    @property
    def dense(self) -> bool:
        """Every key (up to causality): no window restricts the keys."""
        return self.window == 0

    def allowed(self, seq: int) -> np.ndarray:
        """bool[S, S]: may query i attend to key j?"""
        i = np.arange(seq)[:, None]
        j = np.arange(seq)[None, :]
        if self.window <= 0:
            allowed = np.ones((seq, seq), bool)
        elif self.causal:
            allowed = (i - j) < self.window
        else:
            allowed = np.abs(i - j) <= self.window // 2
        if self.global_tokens:
            allowed = allowed | (i < self.global_tokens) | (j < self.global_tokens)
        if self.causal:
            allowed = allowed & (j <= i)
        return allowed

    def describe(self) -> str:
        """The pattern in `--attention` notation ("dense", "local:8,global:1"), ", causal" when causal."""
        text = "dense" if self.dense else f"local:{self.window}" + (
            f",global:{self.global_tokens}" if self.global_tokens else "")
        return text + (", causal" if self.causal else "")

    __str__ = describe

    def c_fields(self) -> list[tuple[str, int]]:
        """The fields of the C descriptor `ma_attention_pattern`, in its order."""
        return [("window", self.window), ("causal", int(self.causal)), ("global_tokens", self.global_tokens)]


DENSE = AttentionPattern()
CAUSAL = AttentionPattern(causal=True)
