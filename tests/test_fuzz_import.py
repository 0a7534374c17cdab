"""The import path under the seeded fuzzer of `fuzz_import.py`: no crash (only one-line UserErrors), no
disagreement with onnxruntime, and no out-of-spec model accepted.

The default run takes `DEFAULT_CASES` cases in chunks (so pytest-xdist spreads them); `pytest -m fuzz` runs
`MARKED_CASES` more with another seed. Each chunk prints its totals (`-s` shows them).
"""

from __future__ import annotations

import os
import sys

import pytest

import fuzz_import

DEFAULT_CASES = 300
MARKED_CASES = 10_000
CHUNK = 50

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                reason="the fuzzer isolates each case in a forked child (POSIX)")


def _run(seed: int, start: int, cases: int) -> None:
    totals = fuzz_import.fuzz(cases, seed, start)
    print(f"fuzz seed {seed} cases {start}..{start + cases - 1}: {totals.summary()}")
    assert totals.cases == cases
    assert totals.failures == [], "\n".join(map(str, totals.failures))


@pytest.mark.parametrize("start", range(0, DEFAULT_CASES, CHUNK))
def test_fuzz_import(start):
    _run(0, start, CHUNK)


@pytest.mark.fuzz
@pytest.mark.parametrize("start", range(0, MARKED_CASES, 500))
def test_fuzz_import_long(start):
    _run(1, start, 500)
