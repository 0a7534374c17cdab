"""mcu_attn.progress: quiet for quick steps, a counter on a log, a redrawn line on a terminal, silent nesting."""

from __future__ import annotations

import io
import time

import pytest

from mcu_attn import progress as progress_module
from mcu_attn.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Captured:
    """stderr as pytest captured it (sys.stderr is pytest's during the test body, so that is what progress sees)."""

    def __init__(self, capsys) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys, monkeypatch) -> Captured:
    monkeypatch.delenv("MCU_ATTN_PROGRESS", raising=False)
    return Captured(capsys)


def test_a_quick_step_prints_nothing(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "QUIET_S", 0.0)  # past the terminal's quiet time, below the log's period
    with progress("calibrating", total=3, unit="samples") as advance:
        for _ in range(3):
            advance()
    assert stderr.getvalue() == ""


def test_a_long_step_on_a_log_is_a_counter_with_a_last_line(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "QUIET_S", 0.0)
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    with progress("calibrating", total=2, unit="samples") as advance:
        advance()
        advance(note="last")
    lines = stderr.getvalue().splitlines()
    assert lines[0].startswith("calibrating: 1/2 samples ") and "\r" not in stderr.getvalue()
    assert lines[-1].startswith("calibrating: 2/2 samples ") and lines[-1].endswith("(last) done")


def test_a_terminal_line_is_redrawn_in_place_and_kept(monkeypatch) -> None:
    monkeypatch.delenv("MCU_ATTN_PROGRESS", raising=False)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(progress_module, "QUIET_S", 0.0)
    monkeypatch.setattr(progress_module, "REDRAW_S", 0.0)
    with progress("simulating", total=4, unit="samples") as advance:
        advance(2)
    text = terminal.getvalue()
    assert text.startswith("\r\033[K") and text.endswith("\n")
    assert "simulating: 2/4 samples [############............]" in text


def test_the_ticker_keeps_a_long_single_item_alive(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "QUIET_S", 0.0)
    monkeypatch.setattr(progress_module, "REDRAW_S", 0.01)
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.01)
    seen, deadline = "", time.monotonic() + 30
    with progress("compiling firmware", total=1, unit="steps"):
        while "\n" not in seen and time.monotonic() < deadline:  # one long item, no advance: only the ticker writes
            time.sleep(0.01)
            seen += stderr.getvalue()
    assert seen.startswith("compiling firmware: 0/1 steps")


def test_nested_steps_and_the_switch_are_silent(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "QUIET_S", 0.0)
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    with progress("outer", total=1) as advance:
        with progress("inner", total=5) as inner:
            inner(5)
        advance()
    text = stderr.getvalue()
    assert "inner" not in text and "outer: 1/1" in text
    monkeypatch.setenv("MCU_ATTN_PROGRESS", "0")
    with progress("outer", total=1) as advance:
        advance()
    assert stderr.getvalue() == ""


def test_an_error_leaves_no_final_line(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "QUIET_S", 10.0)
    with pytest.raises(ValueError):
        with progress("calibrating", total=2):
            raise ValueError("bad sample")
    assert stderr.getvalue() == ""
