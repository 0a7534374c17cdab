"""Attention patterns: the one typed value (`AttentionPattern`), its `--attention` notation, its C descriptor and
the two C views of its key sets against the Python rule, key for key.

kernels/include/ma_attention_keys.h has the rule itself (`ma_attention_sees`, which the portable kernels apply)
and the ascending runs of keys at a constant step the DSP kernel walks (`ma_attention_keys` +
`ma_key_next_run`). A small C driver (compiled with the host gcc, -Wall -Wextra -Werror, once with the
sanitizers) marks, for every query of a sequence, the keys each view gives; both must equal
`AttentionPattern.allowed`, the runs must come in strictly ascending order with every key once, and
`ma_attention_max_keys` must bound every row.
"""

from __future__ import annotations

import ctypes
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_cases import patterns
from mcu_attn.codegen.host_cc import compile_shared
from mcu_attn.codegen.kernels import KERNELS
from mcu_attn.ir.pattern import DENSE, AttentionPattern

DRIVER = r"""
#include "ma_attention_keys.h"

/* For each query i: sees[i][j] from ma_attention_sees; runs[i][j] = how often the runs give key j; returns
 * INT32_MIN when a run goes backwards or is empty, else the largest row key count over the bound (<= 0 when
 * bounded). */
int32_t key_views(const ma_attention_pattern *p, int32_t seq, uint8_t *sees, uint8_t *runs) {
    int32_t i, j, worst = -seq;
    for (i = 0; i < seq; ++i) {
        const ma_key_set keys = ma_attention_keys(p, seq, i);
        ma_key_cursor cursor = {0, 0};
        int32_t start, count, step, last = -1, total = 0;
        for (j = 0; j < seq; ++j) sees[i * seq + j] = (uint8_t)ma_attention_sees(p, i, j);
        while (ma_key_next_run(&keys, &cursor, &start, &count, &step)) {
            if (count < 1 || step < 1 || start <= last) return INT32_MIN;
            for (j = 0; j < count; ++j) runs[i * seq + start + j * step] += 1;
            last = start + (count - 1) * step;
            total += count;
        }
        if (total - ma_attention_max_keys(p, seq) > worst) worst = total - ma_attention_max_keys(p, seq);
    }
    return worst;
}
"""
FLAGS = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"]


class CPattern(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name, _ in DENSE.c_fields()]


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    source = tmp_path_factory.mktemp("keys") / "key_views.c"
    source.write_text(DRIVER)
    library = ctypes.CDLL(str(compile_shared([source], [KERNELS / "include"], FLAGS, name="key_views")))
    library.key_views.restype = ctypes.c_int32

    def run(pattern: AttentionPattern, seq: int) -> tuple[np.ndarray, np.ndarray, int]:
        sees, runs = np.zeros((seq, seq), np.uint8), np.zeros((seq, seq), np.uint8)
        worst = library.key_views(ctypes.byref(CPattern(*(v for _, v in pattern.c_fields()))), seq,
                                  sees.ctypes.data_as(ctypes.c_void_p), runs.ctypes.data_as(ctypes.c_void_p))
        return sees, runs, worst

    return run


def check(views, pattern: AttentionPattern, seq: int) -> None:
    sees, runs, worst = views(pattern, seq)
    expected = pattern.allowed(seq)
    assert worst != -2 ** 31, f"{pattern}: a run of keys is empty or goes backwards"
    assert np.array_equal(sees != 0, expected), f"{pattern} at {seq}: ma_attention_sees differs"
    assert np.array_equal(runs, expected.astype(np.uint8)), f"{pattern} at {seq}: the key runs differ"
    assert worst <= 0, f"{pattern} at {seq}: a row has {worst} keys more than ma_attention_max_keys"


EXAMPLES = ["local:4", "local:5,global:2", "strided:4", "strided:3,local:2,global:1", "dilated:4,2",
            "dilated:5,3,local:2,global:3", "block:4", "block:4,1", "block:4,1,3", "block:4,0,2,global:1",
            "block:8,1,2,local:3", "strided:5,block:4", "block:3,1,dilated:2,4"]


@pytest.mark.parametrize("text", EXAMPLES)
@pytest.mark.parametrize("causal", [False, True])
def test_examples(views, text: str, causal: bool) -> None:
    for seq in (1, 2, 7, 17, 40):
        check(views, AttentionPattern.parse(text, causal), seq)


def test_dense_and_global_rows(views) -> None:
    for pattern, seq in itertools.product([DENSE, AttentionPattern(causal=True), AttentionPattern(3, 40)], (1, 9)):
        check(views, pattern, seq)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(pattern=patterns(), seq=st.integers(1, 70))
def test_random_patterns(views, pattern: AttentionPattern, seq: int) -> None:
    check(views, pattern, seq)


# ---- the Python value and its notation -----------------------------------------------------------------------

@pytest.mark.parametrize("text", EXAMPLES)
def test_notation_round_trips(text: str) -> None:
    pattern = AttentionPattern.parse(text)
    assert AttentionPattern.parse(",".join(pattern.terms())) == pattern


def test_block_terms() -> None:
    assert AttentionPattern.parse("block:16,1,4,2") == AttentionPattern(global_tokens=32, block=16, block_local=1,
                                                                       block_stride=4)
    assert AttentionPattern.parse("block:16,1,4,2,global:40").global_tokens == 40  # the larger prefix
    assert AttentionPattern.parse("strided:8,local:8,global:1", causal=True).describe() == \
        "local:8,strided:8,global:1 (causal)"


@pytest.mark.parametrize("text, phrase", [
    ("local:0", "window must be at least 1"), ("local:4,global:-1", "cannot be negative"),
    ("strided:1", "stride must be at least 2"), ("dilated:4", "dilated takes"), ("dilated:4,1", "at least 2"),
    ("block:4,1,1", "block stride must be at least 2"), ("strided:4,dilated:2,2", "one of strided"),
    ("global:2", "restrict nothing"), ("local:4,local:2", "given twice"), ("ring:3", "unknown term"),
    ("4,local:2", "cannot read"), ("local:four", "cannot read")])
def test_notation_errors(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        AttentionPattern.parse(text)


def test_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="non-negative|integer"):
        AttentionPattern(window=-1)
    with pytest.raises(ValueError, match="both"):
        AttentionPattern(dilated=4)
    with pytest.raises(ValueError, match="block size"):
        AttentionPattern(block_local=2)
