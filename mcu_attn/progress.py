"""Progress of long steps, on stderr, so a person never stares at a silent terminal.

Usage, from any module that runs a long loop (or one long call):

    from mcu_attn.progress import progress

    with progress("calibrating", total=len(samples), unit="samples") as advance:
        for sample in samples:
            ...
            advance()                    # or advance(note="local:4") to show what the step is on

How it shows (stdout stays free for results and `--json`):
- stderr is a terminal: one line redrawn in place with the count, a bar, the elapsed time and the note; a
  ticker thread redraws it while a single item takes long (a firmware link, an emulated inference), so the
  clock keeps moving. When the step ends the line stays, with its total time.
- stderr is not a terminal (CI logs, pipes, tests): a plain counter, one line at most every `LOG_EVERY_S`, and a
  last line when the step ends if it printed one before. A step shorter than `LOG_EVERY_S` leaves a log as it was.
- On a terminal, a step that ends within `QUIET_S` shows nothing, so quick commands stay as they were.
- Steps inside a step (the reference runs inside one of `--attention auto`'s candidates) show nothing: only the
  outermost step reports, so lines never fight.
- `MCU_ATTN_PROGRESS=0` in the environment silences it all.

Why a small counter of our own and not `rich` or `tqdm`: the output is one line on stderr, must appear with the
core install (an optional extra would leave most users with a silent terminal), must stay quiet for quick steps
and under nesting, and is about a hundred lines; a dependency would add install weight for no behaviour we need.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

QUIET_S = 1.0          # a step shorter than this prints nothing
REDRAW_S = 0.2         # terminal: redraw this often
LOG_EVERY_S = 10.0     # not a terminal: one line at most this often
BAR = 24

_depth = 0  # how many steps are open: only the outermost shows


class _Line:
    """The state of one shown step and how it is written."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO) -> None:
        self.label, self.total, self.unit, self.stream = label, total, unit, stream
        self.terminal = stream.isatty()
        self.started = self.last = time.monotonic()
        self.done, self.note, self.printed = 0, "", False
        self.lock = threading.Lock()

    def text(self, now: float) -> str:
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        bar = ""
        if self.terminal and self.total:
            full = min(BAR, BAR * self.done // self.total)
            bar = " [" + "#" * full + "." * (BAR - full) + "]"
        note = f" ({self.note})" if self.note else ""
        return f"{self.label}: {count}{' ' + self.unit if self.unit else ''}{bar} {now - self.started:.1f} s{note}"

    def write(self, final: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if self.terminal:
                self.stream.write("\r\033[K" + self.text(now) + ("\n" if final else ""))
            else:
                self.stream.write(self.text(now) + (" done" if final else "") + "\n")
            self.stream.flush()
            self.last, self.printed = now, True

    def due(self) -> bool:
        now = time.monotonic()
        return now - self.started >= QUIET_S and now - self.last >= (REDRAW_S if self.terminal else LOG_EVERY_S)


def _enabled() -> bool:
    return os.environ.get("MCU_ATTN_PROGRESS", "1") != "0"


@contextmanager
def progress(label: str, total: int | None = None, unit: str = "") -> Iterator[Callable[..., None]]:
    """A step of `total` items (None: unknown); yields `advance(count=1, note="")` to call per item."""
    global _depth
    line = _Line(label, total, unit, sys.stderr) if _depth == 0 and _enabled() else None
    stop = threading.Event()

    def advance(count: int = 1, note: str = "") -> None:
        if line is None:
            return
        line.done += count
        line.note = note or line.note
        if line.due():
            line.write()

    def tick() -> None:
        while not stop.wait(REDRAW_S):
            if line.due():
                line.write()

    ticker = threading.Thread(target=tick, daemon=True) if line is not None else None
    _depth += 1
    if ticker is not None:
        ticker.start()
    failed = True
    try:
        yield advance
        failed = False
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        _depth -= 1
        if line is not None and failed:
            if line.terminal and line.printed:  # keep the partial line; what follows starts on a new one
                line.stream.write("\n")
        elif line is not None and (line.printed or (line.terminal and time.monotonic() - line.started >= QUIET_S)):
            line.write(final=True)
