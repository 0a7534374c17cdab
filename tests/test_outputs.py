"""What mcu-attn writes over: `eval --outputs` never replaces a device, a symbolic link (or its target), a
directory or one of the command's inputs; `build -o DIR` never deletes a file the last build did not write
unless --force is given, and never a directory holding its inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mcu_attn.build import MARKER, BuildOptions, build
from mcu_attn.errors import UserError
from mcu_attn.outputs import check_out_dir

from support import DIGITS, run_cli

MODEL = DIGITS / "digits_vit.onnx"
DATA = DIGITS / "data" / "test_x.npy"


def _one_line(result, phrase: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert phrase in lines[0], lines[0]


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: its kind, and a regular file's bytes or a link's target."""
    entries = {}
    for path in sorted(root.rglob("*")):
        kind = ("link" if path.is_symlink() else "dir" if path.is_dir() else "fifo" if path.is_fifo()
                else "file")
        content = os.readlink(path) if kind == "link" else path.read_bytes() if kind == "file" else None
        entries[path.relative_to(root).as_posix()] = (kind, content)
    return entries


def _outputs_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    model = tmp / "model.onnx"
    model.write_bytes(MODEL.read_bytes())
    data = tmp / "x.npy"
    data.write_bytes(DATA.read_bytes())
    precious = tmp / "precious.npy"
    precious.write_bytes(b"keep")
    (tmp / "link.npy").symlink_to(precious)
    (tmp / "dangling.npy").symlink_to(tmp / "nowhere.npy")
    (tmp / "folder").mkdir()
    os.mkfifo(tmp / "fifo.npy")
    return {
        "device node": (Path(os.devnull), "not a regular file"),
        "fifo": (tmp / "fifo.npy", "not a regular file"),
        "symlink to a file": (tmp / "link.npy", "symbolic link"),
        "dangling symlink": (tmp / "dangling.npy", "symbolic link"),
        "directory": (tmp / "folder", "is a directory"),
        "the model": (model, "is the input file"),
        "the data": (data, "is the input file"),
        "missing directory": (tmp / "absent" / "y.npy", "does not exist"),
        "name too long": (tmp / ("y" * 300 + ".npy"), "File name too long"),
    }


@pytest.mark.parametrize("case", ["device node", "fifo", "symlink to a file", "dangling symlink", "directory",
                                  "the model", "the data", "missing directory", "name too long"])
def test_eval_outputs_never_replaces(case, tmp_path):
    path, phrase = _outputs_cases(tmp_path)[case]
    before = _snapshot(tmp_path)
    device = os.stat(os.devnull)
    result = run_cli("eval", tmp_path / "model.onnx", "--float", "--data", tmp_path / "x.npy", "--outputs", path)
    _one_line(result, phrase)
    assert _snapshot(tmp_path) == before
    after = os.stat(os.devnull)
    assert (after.st_rdev, after.st_ino) == (device.st_rdev, device.st_ino)


def test_eval_outputs_replaces_a_regular_file(tmp_path):
    out = tmp_path / "y.npy"
    out.write_bytes(b"old")
    result = run_cli("eval", MODEL, "--float", "--data", DATA, "--outputs", out)
    assert result.returncode == 0, result.stderr
    assert np.load(out).shape == (450, 1, 10)  # one [1, 10] output per sample
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]  # no temporary file left


@pytest.fixture(scope="module")
def host_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("owned") / "out"
    build(MODEL, "host", out, BuildOptions(bits=32))
    return out


def test_marker_lists_every_file_of_the_build(host_build):
    listed = {line.split("  ", 1)[1] for line in (host_build / MARKER).read_text().splitlines()[1:]}
    on_disk = {p.relative_to(host_build).as_posix() for p in host_build.rglob("*") if p.is_file()}
    assert listed == on_disk - {MARKER}
    check_out_dir(host_build)  # untouched: a rebuild may replace it


@pytest.mark.parametrize("change, phrase", [
    ("add a file", "notes.txt"),
    ("edit a source", "model.c"),
    ("add a directory", "cmake-build/CMakeCache.txt"),
    ("add a symlink", "elsewhere"),
])
def test_foreign_files_need_force(change, phrase, host_build, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(host_build, out)
    if change == "add a file":
        (out / "notes.txt").write_text("mine")
    elif change == "edit a source":
        (out / "model.c").write_text("/* my fix */\n" + (out / "model.c").read_text())
    elif change == "add a directory":
        (out / "cmake-build").mkdir()
        (out / "cmake-build" / "CMakeCache.txt").write_text("x")
    else:
        (out / "elsewhere").symlink_to(tmp_path)
    with pytest.raises(UserError, match=f"did not write .*{phrase}.*--force"):
        check_out_dir(out)
    check_out_dir(out, force=True)


def test_force_replaces_a_foreign_directory_but_never_one_holding_an_input(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    _one_line(run_cli("build", MODEL, "--target", "host", "-o", out, "--bits", "32"), "--force")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    model = out / "model.onnx"
    model.write_bytes(MODEL.read_bytes())
    _one_line(run_cli("build", model, "--target", "host", "-o", out, "--bits", "32", "--force"),
              "holds the input file")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "notes.txt"]
    model.unlink()
    result = run_cli("build", MODEL, "--target", "host", "-o", out, "--bits", "32", "--force")
    assert result.returncode == 0, result.stderr
    assert not (out / "notes.txt").exists() and (out / MARKER).is_file()


@pytest.mark.parametrize("where, phrase", [("x" * 300, "File name too long"),
                                           ("/proc/self/fdinfo/out", "-o /proc/")])
def test_unwritable_or_too_long_output_directory(where, phrase, tmp_path):
    out = tmp_path / where
    _one_line(run_cli("build", MODEL, "--target", "host", "-o", out, "--bits", "32"), phrase)
    assert list(tmp_path.iterdir()) == []
