"""The Arm GNU toolchain: finding it, running a generated project's Makefile, and reading the linker's verdict.

A build needs `arm-none-eabi-gcc` (with newlib-nano) and `make` on PATH. Without them `mcu-attn build` still writes
the sources and says how to install what is missing (`INSTALL_HINT`). A link that does not fit makes GNU ld say
"region `RAM' overflowed by N bytes"; `LinkOverflow` carries those numbers so the build can refuse the model in
one line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from mcu_attn.errors import UserError

PREFIX = "arm-none-eabi-"
INSTALL_HINT = ("install it with `apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi` on Debian/Ubuntu "
                "(elsewhere: the Arm GNU Toolchain for arm-none-eabi)")
_OVERFLOW = re.compile(r"region [`'\"]?(\w+)[`'\"]? overflowed by (\d+) bytes")


class FirmwareBuildError(RuntimeError):
    """The generated firmware failed to compile or link for a reason other than size (a generator bug)."""


class LinkOverflow(Exception):
    """The link did not fit: `regions` holds (memory region, bytes over) as GNU ld reported them."""

    def __init__(self, regions: tuple[tuple[str, int], ...]) -> None:
        super().__init__(", ".join(f"{name} over by {count} bytes" for name, count in regions))
        self.regions = regions


def missing_tools() -> list[str]:
    return [tool for tool in (PREFIX + "gcc", "make") if shutil.which(tool) is None]


def make(directory: Path, goal: str) -> str:
    """Run `make goal` in a generated firmware project; the output. Raises LinkOverflow or FirmwareBuildError."""
    tool = shutil.which("make")
    if tool is None:
        raise UserError("building firmware needs `make` on PATH (apt-get install make)")
    result = subprocess.run([tool, "--no-print-directory", goal], cwd=directory, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        overflow = _OVERFLOW.findall(output)
        if overflow:
            regions: dict[str, int] = {}
            for region, count in overflow:
                regions[region] = max(regions.get(region, 0), int(count))
            raise LinkOverflow(tuple(sorted(regions.items())))
        raise FirmwareBuildError(f"make {goal} failed in the generated firmware project:\n{output}".rstrip())
    return output
