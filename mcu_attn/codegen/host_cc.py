"""Compile C sources with the host C compiler into a shared library, cached by content.

Used by the kernel tests (the C kernels run through ctypes against the numpy references) and by code generation
for the `host` target. The cache key covers the compiler, the flags, every source and every header in the include
directories, so an edited kernel or header is always rebuilt, and parallel or repeated callers share one build.
The library is written under a temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

HEADER_SUFFIXES = (".h", ".inc")


class CompileError(RuntimeError):
    """The host compiler rejected the sources; the message holds its command line and diagnostics."""


def default_compiler() -> str:
    return os.environ.get("CC", "gcc")


def cache_dir() -> Path:
    """`$MCU_ATTN_CACHE/host_cc`, else a per-user directory under the system temporary directory."""
    root = os.environ.get("MCU_ATTN_CACHE")
    base = Path(root) if root else Path(tempfile.gettempdir()) / f"mcu-attn-{_user_tag()}"
    return base / "host_cc"


def _user_tag() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid else "user"


def _headers(include_dirs: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for directory in include_dirs:
        if directory.is_dir():
            found.extend(sorted(p for p in directory.rglob("*") if p.suffix in HEADER_SUFFIXES and p.is_file()))
    return found


def _key(compiler: str, sources: Sequence[Path], include_dirs: Sequence[Path], flags: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in (compiler, *flags, *map(str, include_dirs)):
        digest.update(part.encode() + b"\0")
    for path in (*sources, *_headers(include_dirs)):
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def compile_shared(sources: Iterable[str | os.PathLike], include_dirs: Iterable[str | os.PathLike] = (),
                   flags: Iterable[str] = ("-O2",), *, compiler: str | None = None, name: str = "lib") -> Path:
    """Build `sources` into a shared library (`-shared -fPIC` are added) and return its path.

    Repeated calls with the same compiler, flags, sources and headers return the cached library.
    Raises `CompileError` with the compiler's output when the build fails.
    """
    compiler = compiler or default_compiler()
    sources = [Path(s).resolve() for s in sources]
    include_dirs = [Path(d).resolve() for d in include_dirs]
    flags = [str(f) for f in flags]
    if not sources:
        raise ValueError("compile_shared needs at least one source file")
    if shutil.which(compiler) is None:
        raise CompileError(f"C compiler {compiler!r} not found")
    out_dir = cache_dir() / _key(compiler, sources, include_dirs, flags)
    target = out_dir / f"{name}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{name}.{os.getpid()}.so.part"
    command = [compiler, *flags, "-shared", "-fPIC", *(f"-I{d}" for d in include_dirs), "-o", str(partial),
               *map(str, sources)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise CompileError(f"{' '.join(command)}\n{result.stdout}{result.stderr}".rstrip())
    os.replace(partial, target)
    return target
