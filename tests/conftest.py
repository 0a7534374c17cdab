"""Session fixtures for the test suite, and a progress line per test file.

The suite runs in parallel (`pytest -n auto`, pytest-xdist): each worker is its own process with its own
session fixtures and its own `tmp_path_factory` directory, so fixtures here only read files or write below
their tmp paths. With xdist the terminal shows a dot per test in completion order; `FileProgress` adds one
line per file as soon as the last test of that file has finished (its outcomes, how many files are done, and
the time since the start), so a contributor sees where the run is.
"""

from __future__ import annotations

import os
import time
from collections import Counter

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS: see mcu_attn/__init__.py

import numpy as np  # noqa: E402
import pytest

from support import DIGITS


@pytest.fixture(scope="session")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The 450-image digits test split the example model was evaluated on."""
    return np.load(DIGITS / "data" / "test_x.npy"), np.load(DIGITS / "data" / "test_y.npy")


class FileProgress:
    """Prints `tests/test_x.py: 12 passed, 1 skipped [3/22 files, 41 s]` when a file's last test finishes."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.remaining: Counter[str] = Counter()  # tests per file not finished yet
        self.outcomes: dict[str, Counter[str]] = {}
        self.status: dict[str, str] = {}  # per test id: the outcome so far
        self.files_done = 0
        self.started = time.monotonic()

    def _expect(self, nodeids) -> None:
        if self.remaining:  # every xdist worker collects the same tests: count them once
            return
        for nodeid in nodeids:
            self.remaining[nodeid.split("::")[0]] += 1

    def pytest_collection_finish(self, session) -> None:
        self._expect(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        self._expect(ids)

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            self.status[report.nodeid] = "failed" if report.when == "call" else "error"
        elif report.skipped and report.nodeid not in self.status:
            self.status[report.nodeid] = "skipped"
        if report.when != "teardown":
            return
        path = report.nodeid.split("::")[0]
        self.outcomes.setdefault(path, Counter())[self.status.pop(report.nodeid, "passed")] += 1
        self.remaining[path] -= 1
        if self.remaining[path] == 0:
            self.files_done += 1
            counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes[path].items()))
            start = "\n" if self.reporter._tw.width_of_current_line else ""  # after the dots of this line
            self.reporter.write(f"{start}{path}: {counts} [{self.files_done}/{len(self.remaining)} files, "
                                f"{time.monotonic() - self.started:.0f} s]\n", flush=True)


@pytest.hookimpl(trylast=True)  # after the terminal reporter is registered
def pytest_configure(config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.pluginmanager.register(FileProgress(reporter), "file-progress")
