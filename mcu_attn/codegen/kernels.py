"""Which kernel files a generated model needs: a tiny linker over `mcu_attn/firmware_templates/kernels`.

Each reference source (`ref/*.c`) is scanned for the external `ma_*` functions it defines and the `ma_*`
functions it calls. Starting from the functions the model calls, the closure over "defined in" and "calls"
gives the sources to copy; the headers are every header reachable through `#include "..."` from `ma_kernels.h`
and from those sources. Kernel files can thus be split, merged or renamed without touching the code generator.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from mcu_attn.errors import UserError

TEMPLATES = Path(__file__).resolve().parents[1] / "firmware_templates"
KERNELS = TEMPLATES / "kernels"
MAIN_HEADER = "ma_kernels.h"

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
# a definition starts at column 0: return type, name, parameters, then a body (not a ';')
_DEFINITION = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(ma_\w+)\s*\([^;{]*\)\s*\{", re.M)
_CALL = re.compile(r"\b(ma_\w+)\s*\(")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


@lru_cache(maxsize=None)
def _scan(path: Path, stamp: float) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    del stamp  # part of the cache key only: an edited file is rescanned
    text = _COMMENT.sub(" ", path.read_text())
    defined = frozenset(_DEFINITION.findall(text))
    return defined, frozenset(_CALL.findall(text)) - defined, tuple(_INCLUDE.findall(text))


def _info(path: Path):
    return _scan(path, path.stat().st_mtime)


def _sources() -> dict[str, Path]:
    """Defined function -> the reference source defining it."""
    table: dict[str, Path] = {}
    for path in sorted((KERNELS / "ref").glob("*.c")):
        for name in _info(path)[0]:
            table[name] = path
    return table


def kernel_files(functions: Iterable[str]) -> list[Path]:
    """The sources and headers (paths under KERNELS, sorted) that define `functions` and what they use."""
    table = _sources()
    wanted = sorted(set(functions))
    sources: set[Path] = set()
    while wanted:
        name = wanted.pop()
        if name not in table:
            raise UserError(f"no kernel source defines {name}()")
        path = table[name]
        if path in sources:
            continue
        sources.add(path)
        wanted.extend(sorted(call for call in _info(path)[1] if call in table))
    headers: set[Path] = set()
    pending = [KERNELS / "include" / MAIN_HEADER] + [KERNELS / "include" / inc for s in sorted(sources)
                                                    for inc in _info(s)[2]]
    while pending:
        header = pending.pop()
        if header in headers:
            continue
        if not header.is_file():
            raise FileNotFoundError(f"kernel header {header.name} is included but missing from {header.parent}")
        headers.add(header)
        pending.extend(KERNELS / "include" / inc for inc in _info(header)[2])
    return sorted(sources | headers)
