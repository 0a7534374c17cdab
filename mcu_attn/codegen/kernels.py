"""Which kernel files a generated model needs: a tiny linker over `mcu_attn/firmware_templates/kernels`.

Kernels come in variants with the same symbols (TFLite Micro's layout): `ref/` is portable C99, the
specification; `arm/` uses the Cortex-M DSP extension (ACLE intrinsics from `arm_acle.h`, no vendor headers).
`VARIANTS` gives each variant its search path: a function is taken from the first directory on the path that
defines it, so a variant only holds the kernels it makes faster and falls back to the specification for the
rest. `CORE_VARIANTS` says which cores build which variant. Adding a variant is its directory plus one line in
each table; adding an optimized kernel is one file in the variant's directory.

Each source (`<dir>/*.c`) is scanned for the external `ma_*` functions it defines and the `ma_*` functions it
calls. Starting from the functions the model calls, the closure over "defined in" and "calls" gives the sources
to copy; the headers are every header reachable through `#include "..."` from `ma_kernels.h` and from those
sources. Two sources of one directory defining the same function, or two chosen sources defining the same
function (a variant file that replaces only part of a specification file), are errors, never a silent choice.
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

# variant -> the kernel directories searched, first match wins
VARIANTS: dict[str, tuple[str, ...]] = {
    "ref": ("ref",),
    "arm": ("arm", "ref"),
}
# Cores with the DSP extension (SMLAD, SXTB16, SSAT, QADD): ARMv7E-M (Cortex-M4 and M7, where it is part of the
# architecture: ARMv7-M ARM DDI 0403E.e, A1.3 "the DSP extension ... ARMv7E-M") and the Cortex-M33, whose DSP
# extension is optional and which `-mcpu=cortex-m33` compiles for (the arm/ sources refuse to compile without
# __ARM_FEATURE_DSP, so a core without it fails loudly). Every other core builds the portable kernels.
CORE_VARIANTS: dict[str, str] = {"cortex-m4": "arm", "cortex-m7": "arm", "cortex-m33": "arm"}

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


def variant_for(core: str) -> str:
    """The kernel variant a core builds (`ref` for the host and cores without the DSP extension)."""
    return CORE_VARIANTS.get(core.lower(), "ref")


def _directory_table(directory: str) -> dict[str, Path]:
    """Defined function -> the one source of `directory` defining it."""
    table: dict[str, Path] = {}
    for path in sorted((KERNELS / directory).glob("*.c")):
        for name in _info(path)[0]:
            if name in table:
                raise UserError(f"kernels/{directory}: {name}() is defined in both {table[name].name} and "
                                f"{path.name}")
            table[name] = path
    return table


def _sources(variant: str) -> dict[str, Path]:
    """Defined function -> the source the variant takes it from."""
    if variant not in VARIANTS:
        raise UserError(f"kernel variant {variant!r}: known variants are {', '.join(sorted(VARIANTS))}")
    table: dict[str, Path] = {}
    for directory in VARIANTS[variant]:
        for name, path in _directory_table(directory).items():
            table.setdefault(name, path)
    return table


def kernel_files(functions: Iterable[str], variant: str = "ref") -> list[Path]:
    """The sources and headers (paths under KERNELS, sorted) that define `functions` and what they use."""
    table = _sources(variant)
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
    owners: dict[str, Path] = {}
    for path in sorted(sources):
        for name in _info(path)[0]:
            if name in owners:
                raise UserError(f"kernel variant {variant}: {name}() is defined in both "
                                f"{owners[name].relative_to(KERNELS)} and {path.relative_to(KERNELS)}; a variant "
                                f"file must define every function of the file it replaces")
            owners[name] = path
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
