"""`mcu-attn build`: ONNX -> IR -> (quantized) -> C project in `-o DIR`, compiled and checked on the host.

The output directory is written atomically: everything is built in a temporary directory next to it (same file
system) and renamed into place at the end, so after any error `-o DIR` is exactly as it was. A directory may
only be replaced when it is empty or carries the marker file of an earlier build (`MARKER`).

For `--target host` the project is compiled with its own Makefile and the harness runs on check samples (the
first calibration samples, else seeded random inputs); `report.json` records how its outputs compare with the
numpy reference of the same graph: bit-exact for integer models, the largest absolute difference for float.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcu_attn.api import import_model
from mcu_attn.codegen.emit import EXECUTABLE, Project, generate
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops import node_macs
from mcu_attn.passes.quantize import quantize_graph
from mcu_attn.targets.table import get_target

MARKER = ".mcu-attn-build"
MARKER_TEXT = "made by `mcu-attn build`; a later build with the same -o replaces this directory\n"
BITS = (8, 4, 32)
RANDOM_CHECK_SAMPLES = 4


@dataclass(frozen=True)
class BuildOptions:
    bits: int = 32                 # 8 or 4: integer weights (int8 activations); 32: the float baseline
    calib: str | None = None       # .npy stack of calibration samples (needed for 8 and 4)
    check_samples: int = 16        # samples the host harness is checked on


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output that is a file, lies below a file, or is a non-empty directory not made by a build."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a directory")
    existing = out_dir.resolve().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"-o {out_dir}: {existing} is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise UserError(f"-o {out_dir}: directory is not empty and was not made by mcu-attn build "
                        f"(no {MARKER} file); choose another directory or empty it")


def _check_options(target: str, options: BuildOptions) -> str:
    """The target's table name, after refusing what this build cannot do."""
    resolved = get_target(target)
    if resolved.name != "host":
        raise UserError(f"--target {target}: Cortex-M targets arrive with the firmware work; "
                        f"only --target host builds for now")
    if options.bits not in BITS:
        raise UserError(f"--bits {options.bits}: choose 8, 4 or 32")
    if options.bits != 32:
        if not options.calib:
            raise UserError(f"--bits {options.bits} needs --calib C.npy (calibration samples)")
    return resolved.name


def _load_calib(graph: Graph, options: BuildOptions) -> np.ndarray | None:
    if not options.calib:
        return None
    from mcu_attn.data import check_stack, load_stack

    return check_stack(graph, load_stack(options.calib, "calib"), "calib").astype(np.float32)


def _check_inputs(graph: Graph, calib: np.ndarray | None, count: int) -> tuple[np.ndarray, str]:
    """Float check samples [N, *input shape]: the first calibration samples, else seeded random ones."""
    if calib is not None:
        return calib[:count], "calib"
    shape = graph.shape(graph.inputs[0])
    rng = np.random.default_rng(0)
    return rng.standard_normal((RANDOM_CHECK_SAMPLES,) + shape).astype(np.float32), "random"


def host_check(project_dir: Path, graph: Graph, samples: np.ndarray) -> dict:
    """Compile the project, run the harness on `samples` (float) and compare with the numpy reference."""
    from mcu_attn.codegen.host_run import make, run_harness
    from mcu_attn.reference.interpreter import run
    from mcu_attn.reference.qmath import quantize

    from mcu_attn.data import check_stack

    samples = check_stack(graph, samples, "check samples")
    in_type, out_type = graph.type(graph.inputs[0]), graph.type(graph.outputs[0])
    if in_type.dtype == "int8":
        samples = quantize(samples, in_type.quant.scale[0], in_type.quant.zero_point[0]).astype(np.int8)
    expected = np.stack([run(graph, {graph.inputs[0]: s})[graph.outputs[0]] for s in samples])
    got = run_harness(make(project_dir), samples, out_type.np_dtype, out_type.shape)
    difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return {"samples": int(samples.shape[0]), "bit_exact": bool(np.array_equal(got, expected)),
            "max_abs_error": float(difference.max()) if difference.size else 0.0}


def _io(graph: Graph, name: str) -> dict:
    ttype = graph.type(name)
    entry = {"name": name, "dtype": ttype.dtype, "shape": list(ttype.shape)}
    if ttype.quant is not None:
        entry.update(scale=float(ttype.quant.scale[0]), zero_point=int(ttype.quant.zero_point[0]))
    return entry


def make_report(target: str, model: str, options: BuildOptions, float_graph: Graph, graph: Graph,
                project: Project, check: dict | None) -> dict:
    from mcu_attn.summary import attention_blocks, count_params

    quantization = graph.meta.get("quantization")
    return {
        "target": target,
        "model": model,
        "bits": options.bits,
        "params": count_params(float_graph),
        "macs": int(sum(node_macs(graph, node) for node in graph.nodes)),
        "flash_bytes": project.weights_bytes + project.params_bytes,
        "ram_bytes": project.plan.arena_bytes,
        "weights_bytes": project.weights_bytes,
        "arena_bytes": project.plan.arena_bytes,
        "elf": EXECUTABLE if target == "host" else None,
        "input": _io(graph, graph.inputs[0]),
        "output": _io(graph, graph.outputs[0]),
        "attention": attention_blocks(float_graph),
        "kernels": project.kernel_functions,
        "layers": project.layers,
        "host_check": check,
        "quantization": quantization.as_dict() if hasattr(quantization, "as_dict") else None,
    }


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished tree to out_dir; an earlier build there is moved aside first, back on failure."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    retired = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    os.rename(out_dir, retired / "tree")
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(retired / "tree", out_dir)
        shutil.rmtree(retired)
        raise
    shutil.rmtree(retired)


def build(onnx_path: str | os.PathLike, target: str, out_dir: str | os.PathLike,
          options: BuildOptions = BuildOptions()) -> dict:
    """Build `onnx_path` for `target` into `out_dir`; returns the report (also written as report.json)."""
    target = _check_options(target, options)
    check_out_dir(Path(out_dir))
    out_dir = Path(out_dir).resolve()
    float_graph = import_model(onnx_path)
    calib = _load_calib(float_graph, options)
    graph = float_graph
    if options.bits != 32:
        graph = quantize_graph(float_graph, calib, options.bits)
    project = generate(graph)

    created = _make_parents(out_dir.parent)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
        _write_tree(staging, {**project.files, MARKER: MARKER_TEXT.encode()})
        check = None
        if target == "host":
            samples, source = _check_inputs(float_graph, calib, options.check_samples)
            check = {"source": source, **host_check(staging, graph, samples)}
        report = make_report(target, Path(onnx_path).name, options, float_graph, graph, project, check)
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(created):  # parents made for this build go too: nothing half-written
            directory.rmdir()
        raise
    return report


def _make_parents(directory: Path) -> list[Path]:
    """mkdir -p, returning the directories it made, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))
