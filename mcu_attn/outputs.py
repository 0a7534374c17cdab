"""Where mcu-attn writes: output files and `-o DIR` trees, never over something it does not own.

Output files (`eval --outputs`): the path must be new or an existing regular file (not a symbolic link, a device
node, a FIFO or a directory) and must not be one of the command's own input files. The array is written to a
temporary file in the same directory and renamed over the path, so a reader never sees half a file and an error
leaves the old file as it was.

Output directories (`build -o DIR`): a build writes its tree to a staging directory and renames it into place
(build.py). Before that, an existing DIR may only be replaced when it is empty, or when every file in it is one the
last build wrote, byte for byte: the marker file `MARKER` lists each file of the finished tree with its sha256.
Any other file (notes, a CMake build directory, an edited source) means the directory holds work the build did
not make, and it is replaced only with `--force`. An input file inside DIR is refused even then.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from mcu_attn.errors import UserError

MARKER = ".mcu-attn-build"
MARKER_TEXT = ("made by `mcu-attn build` (these files, by sha256); a later build with the same -o replaces this "
               "directory while it holds nothing else\n")
_SHOWN = 3  # foreign files named in the error


def _same_file(path: Path, others: Iterable[str | os.PathLike | None]) -> str | None:
    for other in others:
        if other and os.path.exists(other) and os.path.samefile(path, other):
            return os.fspath(other)
    return None


def check_output_file(path: str | os.PathLike, what: str, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse an output path that is not a new or regular file, lies in a missing directory, or is an input."""
    path = Path(path)
    directory = path.parent.resolve() if path.parent != Path("") else Path.cwd()
    if not directory.is_dir():
        raise UserError(f"{what} {path}: directory {directory} does not exist")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path
    except OSError as err:
        raise UserError(f"{what} {path}: {err.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"{what} {path}: is a symbolic link; give the path of a regular file to write")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise UserError(f"{what} {path}: is {kind}; give the path of a regular file to write")
    same = _same_file(path, inputs)
    if same:
        raise UserError(f"{what} {path}: is the input file {same}; write the outputs elsewhere")
    return path


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray, what: str,
                    inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """np.save to `path` through a temporary file renamed into place (see the module docstring)."""
    path = check_output_file(path, what, list(inputs))
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npy.part")
    except OSError as err:
        raise UserError(f"{what} {path}: cannot write in {path.parent.resolve()}: {err.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array)
        os.replace(temporary, path)
    except OSError as err:
        os.unlink(temporary)
        raise UserError(f"{what} {path}: cannot write: {err.strerror}") from None
    except BaseException:
        os.unlink(temporary)
        raise


def file_list(root: Path) -> str:
    """The marker's contents for the finished tree under `root`: one `sha256  relative/path` line per file."""
    lines = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and relative != MARKER:
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {relative}\n")
    return MARKER_TEXT + "".join(lines)


def _foreign_files(out_dir: Path) -> list[str]:
    """Files under `out_dir` that the build recorded in its marker did not write (or that changed since)."""
    written: dict[str, str] = {}
    for line in (out_dir / MARKER).read_text(errors="replace").splitlines()[1:]:
        digest, _, relative = line.partition("  ")
        written[relative] = digest
    foreign = []
    for path in sorted(out_dir.rglob("*")):
        relative = path.relative_to(out_dir).as_posix()
        if relative == MARKER or (path.is_dir() and not path.is_symlink()):
            continue
        if (path.is_symlink() or not path.is_file() or relative not in written
                or hashlib.sha256(path.read_bytes()).hexdigest() != written[relative]):
            foreign.append(relative)
    return foreign


def check_out_dir(out_dir: Path, force: bool = False, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse an output that is a file, lies below a file, holds an input, has a name the file system refuses,
    or (without `force`) is a non-empty directory holding anything the last build did not write."""
    try:
        _check_out_dir(out_dir, force, inputs)
    except OSError as err:
        raise UserError(f"-o {out_dir}: {err.strerror}") from None


def _check_out_dir(out_dir: Path, force: bool, inputs: Iterable[str | os.PathLike | None]) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a directory")
    existing = out_dir.resolve().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"-o {out_dir}: {existing} is not a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    root = out_dir.resolve()
    for item in inputs:
        if item and Path(item).resolve().is_relative_to(root):
            raise UserError(f"-o {out_dir}: holds the input file {item}, which replacing the directory would delete")
    if force:
        return
    if not (out_dir / MARKER).is_file():
        raise UserError(f"-o {out_dir}: directory is not empty and was not made by mcu-attn build "
                        f"(no {MARKER} file); choose another directory, empty it, or pass --force to replace it")
    foreign = _foreign_files(out_dir)
    if foreign:
        shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        raise UserError(f"-o {out_dir}: holds {len(foreign)} file{'s' if len(foreign) > 1 else ''} the last build "
                        f"did not write ({shown}); move {'them' if len(foreign) > 1 else 'it'} away or pass --force "
                        f"to replace the directory")
