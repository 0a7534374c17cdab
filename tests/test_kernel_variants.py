"""The kernel-variant seam (mcu_attn/codegen/kernels.py): which sources a core builds, and the errors that keep
two definitions of one kernel from ever being a silent choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcu_attn.codegen import kernels
from mcu_attn.codegen.kernels import KERNELS, VARIANTS, kernel_files, variant_for
from mcu_attn.errors import UserError


def _relative(paths) -> set[str]:
    return {p.relative_to(KERNELS).as_posix() for p in paths}


def test_cores_choose_variants() -> None:
    assert [variant_for(c) for c in ("cortex-m4", "cortex-m7", "cortex-m33", "host", "cortex-m0")] == \
        ["arm", "arm", "arm", "ref", "ref"]


def test_arm_variant_replaces_and_falls_back() -> None:
    arm = _relative(kernel_files(["ma_linear_s8", "ma_attention_f32"], "arm"))
    ref = _relative(kernel_files(["ma_linear_s8", "ma_attention_f32"], "ref"))
    assert "arm/linear_s8.c" in arm and "ref/linear_s8.c" not in arm
    assert "ref/attention_f32.c" in arm  # no arm version: the specification is used
    assert "ref/linear_s8.c" in ref and not any(p.startswith("arm/") for p in ref)
    assert "include/ma_dsp.h" in arm and "include/ma_dsp.h" not in ref


def test_every_arm_source_replaces_a_whole_ref_source() -> None:
    """An arm file defines exactly the functions of the ref file of the same name (so no link ever holds both)."""
    for path in sorted((KERNELS / "arm").glob("*.c")):
        reference = KERNELS / "ref" / path.name
        assert reference.is_file(), f"arm/{path.name} has no ref/{path.name} to specify it"
        assert kernels._info(path)[0] == kernels._info(reference)[0], path.name


def _fake_tree(tmp_path: Path, files: dict[str, str], monkeypatch) -> None:
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    (tmp_path / "include").mkdir(exist_ok=True)
    (tmp_path / "include" / "ma_kernels.h").write_text("/* empty */\n")
    monkeypatch.setattr(kernels, "KERNELS", tmp_path)


def test_two_definitions_in_one_variant_are_an_error(tmp_path: Path, monkeypatch) -> None:
    _fake_tree(tmp_path, {"ref/a.c": "void ma_f(void) {\n}\n", "ref/b.c": "void ma_f(void) {\n}\n"}, monkeypatch)
    with pytest.raises(UserError, match=r"ma_f\(\) is defined in both a.c and b.c"):
        kernel_files(["ma_f"], "ref")


def test_partial_replacement_is_an_error(tmp_path: Path, monkeypatch) -> None:
    _fake_tree(tmp_path, {"ref/a.c": "void ma_f(void) {\n}\nvoid ma_g(void) {\n}\n",
                          "arm/a.c": "void ma_f(void) {\n}\n"}, monkeypatch)
    assert _relative_to(tmp_path, kernel_files(["ma_f"], "arm")) == {"arm/a.c", "include/ma_kernels.h"}
    with pytest.raises(UserError, match=r"ma_f\(\) is defined in both"):
        kernel_files(["ma_f", "ma_g"], "arm")


def _relative_to(root: Path, paths) -> set[str]:
    return {p.relative_to(root).as_posix() for p in paths}


def test_unknown_variant() -> None:
    with pytest.raises(UserError, match="known variants"):
        kernel_files(["ma_linear_s8"], "neon")
    assert set(VARIANTS) == {"ref", "arm"}
