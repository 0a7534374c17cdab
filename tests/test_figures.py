"""Every figure in README.md and docs/ is what its command prints now (benchmarks/readme_figures.py).

Cheap figures (reference runs, host builds) are checked in the default run; the long reference runs, the emulated
ones and the TensorFlow Lite Micro comparison in the slow job (`pytest -m slow`). A failure shows the diff and the command
that rewrites the region.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_figures as figures  # noqa: E402


def _names(*kinds: str) -> list[str]:
    return [name for name, entry in figures.FIGURES.items() if entry.kind in kinds]


@pytest.fixture(scope="module")
def runs():
    made = figures.Runs()
    yield made
    made.close()


def _check(name: str, runs) -> None:
    measured = figures.FIGURES[name].make(runs)
    assert measured == figures.committed(name), (
        figures.diff(name, measured) + f"\nregenerate: python benchmarks/readme_figures.py --write {name}")


@pytest.mark.parametrize("name", _names("cheap"))
def test_cheap_figure_is_current(name, runs) -> None:
    _check(name, runs)


@pytest.mark.slow
@pytest.mark.parametrize("name", _names("long", "emulated"))
def test_slow_figure_is_current(name, runs) -> None:
    if figures.FIGURES[name].kind == "emulated" and shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")
    _check(name, runs)


@pytest.mark.slow
@pytest.mark.parametrize("name", _names("tflm"))
def test_tflm_figure_is_current(name, runs) -> None:
    pytest.importorskip("tflite_micro", reason="the [tflm] extra is not installed (CI installs it)")
    _check(name, runs)


def test_every_region_has_a_figure_and_every_figure_a_region() -> None:
    marked = set()
    for document in ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]:
        text = (ROOT / document).read_text()
        marked |= {(document, name) for name in figures.re.findall(r"<!-- figure: ([\w-]+) -->", text)}
    assert marked == {(entry.document, name) for name, entry in figures.FIGURES.items()}


def test_a_hand_edited_figure_fails_the_check(tmp_path, runs) -> None:
    name = "inspect-example"
    measured = figures.FIGURES[name].make(runs)
    document = figures.FIGURES[name].document
    (tmp_path / document).parent.mkdir(parents=True, exist_ok=True)
    edited = figures.committed(name).replace("317,888", "317,889")
    assert edited != figures.committed(name)
    text = (ROOT / document).read_text().replace(figures.committed(name), edited)
    (tmp_path / document).write_text(text)
    report = figures.diff(name, measured, root=tmp_path)
    assert "-params  18,218    MACs 317,889" in report and "+params  18,218    MACs 317,888" in report
