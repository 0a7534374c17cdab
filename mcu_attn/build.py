"""`mcu-attn build`: ONNX -> IR -> (quantized) -> C project in `-o DIR`, compiled for the target.

The output directory is written atomically: everything is built in a temporary directory next to it (same file
system) and renamed into place at the end, so after any error `-o DIR` is exactly as it was. A directory may
only be replaced when it is empty or holds nothing but the files of an earlier build, else with --force
(mcu_attn/outputs.py).

For `--target host` the project is compiled with its own Makefile and the harness runs on check samples (the
first calibration samples, else seeded random inputs); `report.json` records how its outputs compare with the
numpy reference of the same graph: bit-exact for integer models, the largest absolute difference for float.

For a Cortex-M target (docs/firmware.md) the project gets the board files (`mcu_attn/codegen/firmware.py`) and
is compiled with arm-none-eabi-gcc in four steps: (1) the planned sizes (constant data against flash, arena and
I/O buffers against SRAM) are checked before anything is compiled; (2) `make objects` compiles every source with
-fstack-usage/-fcallgraph-info; (3) a first link with no stack reserved gives the ELF the stack analysis reads
(`mcu_attn/codegen/stack.py`); (4) linker.ld is written again with that bound reserved and the final link either
fits or GNU ld names the overflow, which becomes a one-line error. Without the toolchain the sources and
report.json are written all the same and the build ends with an error saying how to install it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from mcu_attn.codegen.emit import EXECUTABLE, Project
from mcu_attn.codegen.kernels import variant_for
from mcu_attn.compiler import Compilation, io_bytes, pruning_summary
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph
from mcu_attn.options import BuildOptions
from mcu_attn.outputs import MARKER, check_out_dir, file_list
from mcu_attn.progress import progress
from mcu_attn.report.html import build_html
from mcu_attn.sim.elf import HARNESS_SYMBOLS
from mcu_attn.targets.table import Target, get_target

RANDOM_CHECK_SAMPLES = 4


def _check_inputs(graph: Graph, calib: np.ndarray | None, count: int) -> tuple[np.ndarray, str]:
    """Check samples [N, *input shape]: the first calibration samples, else seeded random ones."""
    from mcu_attn.data import random_samples

    if calib is not None:
        return calib[:count], "calib"
    return random_samples(graph, RANDOM_CHECK_SAMPLES), "random"


def host_check(project_dir: Path, graph: Graph, samples: np.ndarray) -> dict:
    """Compile the project, run the harness on `samples` (float) and compare with the numpy reference."""
    from mcu_attn.codegen.host_run import make, run_harness
    from mcu_attn.reference.interpreter import run_stack
    from mcu_attn.reference.qmath import quantize

    from mcu_attn.data import check_stack

    samples = check_stack(graph, samples, "check samples")
    in_type, out_type = graph.type(graph.inputs[0]), graph.type(graph.outputs[0])
    if in_type.dtype == "int8":
        samples = quantize(samples, in_type.quant.scale[0], in_type.quant.zero_point[0]).astype(np.int8)
    expected = run_stack(graph, samples)
    with progress("compiling for the host", total=1, unit="steps") as advance:
        executable = make(project_dir)
        advance()
    got = run_harness(executable, samples, out_type.np_dtype, out_type.shape)
    difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return {"samples": int(samples.shape[0]), "bit_exact": bool(np.array_equal(got, expected)),
            "max_abs_error": float(difference.max()) if difference.size else 0.0}


def _io(graph: Graph, name: str) -> dict:
    ttype = graph.type(name)
    entry = {"name": name, "dtype": ttype.dtype, "shape": list(ttype.shape)}
    if ttype.quant is not None:
        entry.update(scale=float(ttype.quant.scale[0]), zero_point=int(ttype.quant.zero_point[0]))
    return entry


def make_report(target: Target, model: str, compilation: Compilation, check: dict | None,
                firmware: dict | None, sources: dict[str, bytes], planned: dict) -> dict:
    """report.json. `model`/`calib` name the copies in DIR/source/ (reproducible trees); the sha256s identify
    the files used; `options` are the build options, which `simulate` replays to rebuild the reference."""
    from mcu_attn.summary import attention_blocks, count_params

    options, graph, float_graph, project = (compilation.options, compilation.graph, compilation.float_graph,
                                            compilation.project)
    quantization = graph.meta.get("quantization")
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in sources.items()}
    # the variant the target's core builds anyway is not an option the user gave: replays choose it again
    recorded = dataclasses.replace(options, kernels=None) if project.kernel_variant == variant_for(target.core) \
        else options
    report = {
        "target": target.name,
        "model": model,
        "bits": options.bits,
        "options": recorded.record(SOURCE_CALIB),
        "params": count_params(float_graph),
        "macs": int(sum(layer["macs"] for layer in project.layers)),
        "flash_bytes": planned["flash_bytes"],
        "ram_bytes": project.arena_bytes,
        "weights_bytes": project.weights_bytes,
        "arena_bytes": project.arena_bytes,
        "elf": EXECUTABLE if target.is_host else None,
        "input": _io(graph, graph.inputs[0]),
        "output": _io(graph, graph.outputs[0]),
        "attention": attention_blocks(float_graph),
        "kernels": project.kernel_functions,
        "kernel_variant": project.kernel_variant,
        "layers": project.layers,
        "query_tile": project.query_tile,
        "sram_budget": options.sram_budget,
        "host_check": check,
        "quantization": quantization.as_dict() if hasattr(quantization, "as_dict") else None,
    }
    if "attention" in compilation.reports:
        report["attention_choice"] = compilation.reports["attention"]
    if "low_rank" in compilation.reports:
        report["low_rank"] = compilation.reports["low_rank"]
    if compilation.options.prunes:
        report["pruning"] = pruning_summary(compilation, compilation.without_pruning())
    if any(key in compilation.reports for key in ("token_prune", "early_exit")):
        report["dynamic"] = dynamic_entry(compilation, project)
    if project.stream is not None:
        report["stream"] = {**compilation.reports["streaming"], "delta": project.stream["delta"],
                            "input_count": project.stream["input_count"],
                            "arena_bytes": project.stream["arena_bytes"], "layers": project.stream["layers"],
                            "symbols": {name: project.renamer.rename(name) for name in STREAM_API}}
    if not target.is_host:
        report["planned"] = planned
        report["model_sha256"] = digests.get(model)
        report["calib"] = SOURCE_CALIB if options.calib else None
        report["calib_sha256"] = digests.get(SOURCE_CALIB)
        report["core"] = target.core
        report["memory"] = {"flash": {"base": target.flash_base, "bytes": target.flash_bytes},
                            "sram": {"base": target.sram_base, "bytes": target.sram_bytes}}
        report.update(firmware or {"flash_bytes": planned["flash_bytes"], "ram_bytes": planned["ram_bytes"],
                                   "compiled": False})
    return report


def dynamic_entry(compilation: Compilation, project: Project) -> dict:
    """report.json "dynamic": what --token-prune and --early-exit chose, and the firmware's exit variable."""
    from mcu_attn.reference.dynamic import exit_nodes

    entry = {key: compilation.reports[key] for key in ("token_prune", "early_exit") if key in compilation.reports}
    if exit_nodes(compilation.graph):
        entry["exit_symbol"] = project.renamer.rename("ma_last_exit")
    return entry


def planned_sizes(graph: Graph, project: Project, target: Target) -> dict:
    """What the memory plan alone says, before compiling: constant data for flash, arena + I/O (+ a stream's
    state, + the hot tables where ma_init copies them) for SRAM."""
    from mcu_attn.codegen.firmware import copies_tables

    io, state = io_bytes(graph), project.stream["state_bytes"] if project.stream else 0
    tables = project.hot_table_bytes if copies_tables(target) else 0
    return {"flash_bytes": project.weights_bytes + project.params_bytes,
            "ram_bytes": project.arena_bytes + io + state + tables, "arena_bytes": project.arena_bytes,
            "io_bytes": io, "state_bytes": state, "table_bytes": tables}


def check_fits(target: Target, planned: dict) -> None:
    """Refuse a model whose planned constant data or buffers alone exceed the target (step 1 of the build)."""
    for what, need, have in (("flash", planned["flash_bytes"], target.flash_bytes),
                             ("SRAM", planned["ram_bytes"], target.sram_bytes)):
        if need > have:
            detail = ("weights and operator parameters" if what == "flash"
                      else f"arena {planned['arena_bytes']:,} B + input/output {planned['io_bytes']:,} B"
                      + (f" + stream state {planned['state_bytes']:,} B" if planned["state_bytes"] else "")
                      + (f" + tables copied to RAM {planned['table_bytes']:,} B" if planned["table_bytes"] else ""))
            raise UserError(f"the model does not fit {target.name}: {what} overflows by {need - have:,} bytes "
                            f"({detail} = {need:,} B; the target has {have:,} B)")


def _overflow_error(target: Target, error) -> UserError:
    sizes = {"FLASH": target.flash_bytes, "RAM": target.sram_bytes}
    parts = [f"{'SRAM' if name == 'RAM' else name.lower()} overflows by {count:,} bytes "
             f"(the target has {sizes.get(name, 0):,} B)" for name, count in error.regions]
    return UserError(f"the model does not fit {target.name}: " + "; ".join(parts) + " (reported by the linker)")


# report.json "symbols": what the emulators look up (sim/elf.py), and the entry points around them
MODEL_API = ("ma_run", "ma_init")
STREAM_API = ("ma_step", "ma_stream_reset")
STARTUP_SYMBOLS = ("Reset_Handler", "main")


def compile_firmware(directory: Path, target: Target, model: str, api: tuple[str, ...] = MODEL_API) -> dict:
    """Steps 2-4 in `directory` (a written project): the report entries of the linked firmware (`api`: the
    model's entry points, renamed by --prefix)."""
    from mcu_attn.codegen import elfinfo, firmware
    from mcu_attn.codegen.stack import stack_bound
    from mcu_attn.targets import toolchain

    elf = directory / firmware.ELF
    try:
        with progress("compiling firmware", total=3, unit="steps") as advance:
            toolchain.make(directory, "objects")
            advance(note="sources compiled")
            (directory / firmware.LINKER_SCRIPT).write_bytes(firmware.linker_script(target, model, 0))
            toolchain.make(directory, firmware.ELF)
            stack = stack_bound(elf, sorted((directory / "build").rglob("*.ci")))
            elf.unlink()
            advance(note=f"stack bound {stack.bytes} B")
            (directory / firmware.LINKER_SCRIPT).write_bytes(firmware.linker_script(target, model, stack.bytes))
            toolchain.make(directory, firmware.ELF)
            advance(note="linked")
    except toolchain.LinkOverflow as error:
        elf.unlink(missing_ok=True)
        raise _overflow_error(target, error) from None
    section_list = elfinfo.sections(elf)
    use = elfinfo.memory_use(section_list, target.sram_base, target.sram_bytes)
    symbols = elfinfo.symbols(elf, list(HARNESS_SYMBOLS + api + STARTUP_SYMBOLS))
    return {"compiled": True, "elf": firmware.ELF, "flash_bytes": use["flash_bytes"],
            "ram_bytes": use["ram_static_bytes"] + stack.bytes, "ram_static_bytes": use["ram_static_bytes"],
            "sections": section_list, "stack": stack.as_dict(), "symbols": symbols,
            "renode": sorted(f"renode/{target.name}.{ext}" for ext in ("resc", "robot"))
            if target.renode_platform else [], "qemu_machine": target.qemu_machine}




def _add_layer_symbols(report: dict, directory: Path) -> None:
    """Address and code size of each layer function in the ELF (report.json layers[i])."""
    from mcu_attn.codegen import elfinfo

    layers = report["layers"] + (report["stream"]["layers"] if "stream" in report else [])
    found = elfinfo.symbols(directory / report["elf"], [layer["symbol"] for layer in layers])
    for layer in layers:
        entry = found.get(layer["symbol"])
        layer["address"] = entry["address"] if entry else None
        layer["code_bytes"] = entry["size"] if entry else None


def emulate(directory: Path, compilation: Compilation, sample: np.ndarray, source: str) -> dict:
    """One inference of the linked firmware in the emulator (mcu_attn/sim): checked against the reference,
    profiled per layer; report.json "emulated". A firmware the emulator cannot run is reported, not fatal."""
    from mcu_attn.sim.run import SimOptions, simulate

    try:
        result = simulate(str(directory), sample, None, SimOptions(), compilation=compilation)
    except UserError as error:
        return {"error": str(error)}
    return {"sample": f"the first {source} sample" if source == "calib" else "a seeded random input",
            "bit_exact": result["bit_exact"],
            **{key: result[key] for key in ("within_tolerance", "max_abs_error") if key in result},  # float builds
            "instructions": result["instructions"], "cycles": result["cycles"],
            "time_ms": result["time_ms"], "energy_uj": result["energy_uj"], "note": result["estimate"]["note"],
            "layers": [{key: row[key] for key in ("name", "symbol", "op", "instructions", "cycles", "energy_uj",
                                                  "share")} for row in result["layers"]]}


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
    retired = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=RETIRED_PREFIX))
    os.rename(out_dir, retired / "tree")
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(retired / "tree", out_dir)
        shutil.rmtree(retired)
        raise
    shutil.rmtree(retired)


def build(onnx_path: str | os.PathLike, target: str, out_dir: str | os.PathLike,
          options: BuildOptions = BuildOptions(), on_plan: Callable[[dict], None] | None = None,
          force: bool = False, compilation: Compilation | None = None) -> dict:
    """Build `onnx_path` for `target` into `out_dir`; returns the report (also written as report.json).
    `on_plan`, when given, receives the plan (attention, memory per layer) before anything is compiled. `force`
    replaces an existing `out_dir` even when it holds files the last build did not write. `compilation`, when
    the caller has already compiled the model with `options` (sweep), is used as it is."""
    resolved = get_target(target)
    options.check()
    kernels = options.kernels or variant_for(resolved.core)  # recorded only when not the core's own
    if kernels != "ref" and resolved.is_host:
        raise UserError(f"kernel variant {kernels!r} runs on Cortex-M only; the host builds the ref kernels")
    check_out_dir(Path(out_dir), force, (onnx_path, options.calib))
    out_dir = Path(out_dir).resolve()
    compilation = (compilation or Compilation(Path(onnx_path), dataclasses.replace(options, kernels=kernels)))
    compilation.run("emit")
    graph, project = compilation.graph, compilation.project
    files = dict(project.files)
    sources = _source_files(Path(onnx_path), options)
    files.update(sources)
    missing: list[str] = []
    planned = planned_sizes(graph, project, resolved)
    if not resolved.is_host:
        from mcu_attn.codegen import firmware
        from mcu_attn.targets import toolchain

        check_fits(resolved, planned)
        files.update(firmware.board_files(project, resolved, graph.name))
        missing = toolchain.missing_tools()
        if missing:  # the project is complete without the ELF: write the script a later `make` links with
            files[firmware.LINKER_SCRIPT] = firmware.linker_script(resolved, graph.name, 0)
    if on_plan is not None:
        from mcu_attn.summary import attention_blocks

        on_plan({"target": resolved.name, "bits": options.bits, "attention": attention_blocks(compilation.float_graph),
                 "attention_choice": compilation.reports.get("attention"), "layers": project.layers,
                 "dynamic": {key: value for key, value in compilation.reports.items()
                             if key in ("token_prune", "early_exit", "streaming")},
                 "arena_bytes": project.arena_bytes, "query_tile": project.query_tile,
                 "sram_budget": options.sram_budget, "pruning": compilation.reports.get("pruning"),
                 "low_rank": compilation.reports.get("low_rank")})

    created: list[Path] = []
    staging = None
    try:
        _make_parents(out_dir.parent, created)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=STAGING_PREFIX))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
        _write_tree(staging, dict(sorted(files.items())))
        check = firmware_entries = None
        if resolved.is_host:
            samples, source = _check_inputs(compilation.float_graph, compilation.calib, options.check_samples)
            check = {"source": source, **host_check(staging, graph, samples)}
        elif not missing:
            api = MODEL_API + (STREAM_API if project.stream is not None else ())
            firmware_entries = compile_firmware(staging, resolved, graph.name, tuple(map(project.renamer.rename, api)))
        report = make_report(resolved, source_model(Path(onnx_path)), compilation, check, firmware_entries, sources,
                             planned)
        if firmware_entries:
            _add_layer_symbols(report, staging)
            (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")  # what the emulator reads
            sample, source = _check_inputs(compilation.float_graph, compilation.calib, 1)
            report["emulated"] = emulate(staging, compilation, sample, source)
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (staging / "report.html").write_text(build_html(report))
        (staging / MARKER).write_text(file_list(staging))
        _swap_into_place(staging, out_dir)
    except BaseException as err:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(created):  # parents made for this build go too: nothing half-written
            directory.rmdir()
        if isinstance(err, OSError) and _about_output(err, out_dir):
            raise UserError(f"-o {out_dir}: cannot write there: {err.strerror}") from None
        raise
    if missing:
        from mcu_attn.targets.toolchain import INSTALL_HINT

        raise UserError(f"{' and '.join(missing)} not found on PATH: wrote the sources to {out_dir} without "
                        f"compiling them; {INSTALL_HINT}, then run `make -C {out_dir}`")
    return report


STAGING_PREFIX = ".mcu-attn-tmp-"  # beside -o DIR: fixed and short, so any DIR name that fits fits these too
RETIRED_PREFIX = ".mcu-attn-old-"
SOURCE_CALIB = "source/calib.npy"


def source_model(model: Path) -> str:
    """Where DIR/source/ keeps the model: model.onnx, or model.tflite for a TFLite model."""
    from mcu_attn.frontend.tflite_file import is_tflite

    return "source/model.tflite" if is_tflite(model) else "source/model.onnx"


def _source_files(model: Path, options: BuildOptions) -> dict[str, bytes]:
    """The model and calibration data the build used, copied into DIR/source/: the build directory is
    self-contained, so `simulate DIR` can rebuild the reference anywhere (Docker included), and the tree stays
    reproducible (no paths of the machine that built it)."""
    files = {source_model(model): model.read_bytes()}
    if options.calib:
        files[SOURCE_CALIB] = Path(options.calib).read_bytes()
    return files


def _make_parents(directory: Path, created: list[Path]) -> None:
    """mkdir -p, appending each directory it makes to `created`, outermost first (also when a mkdir fails)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _about_output(err: OSError, out_dir: Path) -> bool:
    """True when `err` concerns the output location (a directory on the way to out_dir, or a file below its
    parent): an unwritable, full or read-only place, or a name too long, not a fault of the build itself."""
    if not err.filename:
        return False
    path = Path(os.fspath(err.filename))
    return out_dir.parent.is_relative_to(path) or path.is_relative_to(out_dir.parent)
