"""`--prefix NAME`: every symbol the model files export, renamed, so that two models link into one firmware.

The generated model files (model.c/.h, weights.c/.h and kernels/) name everything they define `ma_*` (functions,
arrays, types) or `MA_*` (macros, include guards): that is the code generator's convention. With a prefix,
every such identifier in those files becomes `<prefix>_*` / `<PREFIX>_*`: `ma_run` -> `kws_run`, `ma_input_t`
-> `kws_input_t`, `MA_INPUT_SCALE` -> `KWS_INPUT_SCALE`, the kernels `ma_linear_s8` -> `kws_linear_s8`. Each
model thus carries its own kernels, and nothing of one clashes with another (static functions and include
guards too, so that profiles and headers stay unambiguous). File names stay: `#include` lines, and names
followed by `.c`/`.h`, are not renamed, and only C sources and headers are rewritten.

The harness files of a build (main.c, and on Cortex-M startup.c, console.c, board.h) are renamed only where they
use the model's identifiers; their own (`ma_harness_*`, `ma_console_*`, `MA_HAS_FPU`, ...) stay, so emulators
and `mcu-attn simulate` drive a prefixed build as any other (docs/firmware.md).
"""

from __future__ import annotations

import re

from mcu_attn.errors import UserError

DEFAULT = "ma"
_VALID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")
_IDENTIFIER = re.compile(r"\b(?:ma|MA)_\w+\b(?!\.[ch]\b)")   # not a file name (ma_kernels.h)
C_SUFFIXES = (".c", ".h")
_INCLUDE = re.compile(r"^\s*#\s*include\b.*$", re.M)


def check(prefix: str) -> str:
    """`prefix` when it makes valid, unreserved C identifiers; else a one-line error."""
    if not _VALID.fullmatch(prefix):
        raise UserError(f"--prefix {prefix!r}: give a C identifier of 1 to 31 letters, digits and underscores "
                        f"that starts with a letter")
    return prefix


class Renamer:
    """The `ma_`/`MA_` identifiers of a set of model files and their new names under `prefix`."""

    def __init__(self, prefix: str, model_files: dict[str, bytes]) -> None:
        self.prefix = check(prefix)
        found: set[str] = set()
        for name, text in model_files.items():
            if name.endswith(C_SUFFIXES):
                found.update(_IDENTIFIER.findall(_INCLUDE.sub("", text.decode())))
        self.names = {name: self.rename(name) for name in found}

    @property
    def active(self) -> bool:
        return self.prefix != DEFAULT

    def rename(self, name: str) -> str:
        """One identifier: `ma_x` -> `<prefix>_x`, `MA_X` -> `<PREFIX>_X`; other names are unchanged."""
        if name.startswith("ma_"):
            return f"{self.prefix}_{name[3:]}"
        if name.startswith("MA_"):
            return f"{self.prefix.upper()}_{name[3:]}"
        return name

    def file(self, name: str, data: bytes) -> bytes:
        """The C file `name` with the model's identifiers renamed (outside `#include` lines); other files
        (Makefile, CMakeLists.txt, Renode scripts) as they are."""
        if not self.active or not name.endswith(C_SUFFIXES):
            return data
        source = data.decode()
        pieces, last = [], 0
        for include in _INCLUDE.finditer(source):
            pieces.append(self._rename_code(source[last:include.start()]))
            pieces.append(include.group(0))
            last = include.end()
        pieces.append(self._rename_code(source[last:]))
        return "".join(pieces).encode()

    def _rename_code(self, text: str) -> str:
        return _IDENTIFIER.sub(lambda match: self.names.get(match.group(0), match.group(0)), text)
