"""Markdown the figure scripts write: tables and paragraphs wrapped as the documents are."""

from __future__ import annotations

import re


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def span(values: list[float], unit: str = "") -> str:
    """'2.0×' when the values round alike, else '3.2–3.8×'."""
    low, high = f"{min(values):.1f}", f"{max(values):.1f}"
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def prose(text: str) -> str:
    """A paragraph wrapped as the documents are (115 columns), never inside a word or a `code span`."""
    words, lines, line = re.findall(r"(?:[^\s`]|`[^`]*`)+", text), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > 115:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line]) + "\n"
