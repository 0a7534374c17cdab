"""The one compile function: an ONNX model and a `BuildOptions` value through named steps, in order.

  import    read the ONNX file, fold, fuse attention/LayerNorm/GELU (frontend pipeline); load --calib
  prune     --prune-heads / --prune-ffn: heads and FFN channels removed, chosen and refit on --calib
            (passes/prune.py, passes/reconstruct.py); a pre-quantized model is pruned on its float weights
  factor    --low-rank: linear layers as two low-rank factors, ranks chosen on --calib (passes/low_rank.py)
  sparsify  --attention: sparse attention patterns or dense attention (passes/sparsify.py)
  dynamic   --token-prune, --early-exit: the work done depends on the input (passes/token_prune.py,
            passes/early_exit.py; docs/dynamic.md), chosen and fitted on --calib
  quantize  --bits 8/4: the integer-only graph, calibrated on --calib or with a pre-quantized model's own
            scales (passes/quantize.py); --bits 32 keeps the float graph
  stream    --streaming: the one-position step graph of a causal model and its event threshold
            (passes/streaming.py)
  lower     every node mapped to its kernel emitter (ir/ops, beside the op): an unsupported op stops here
  plan      the attention query tile (--sram-budget) and the static arena (codegen/memory.py)
  emit      the C project (codegen/emit.py)

`eval` runs the steps up to `quantize` (it needs the reference), `build` all of them, `simulate` up to
`quantize` from the options report.json recorded, and `sweep` once per grid point. A `Compilation` keeps what
each step produced and runs only the steps it has not run yet, so a caller can check its data against the
imported graph before the slow steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph
from mcu_attn.options import BuildOptions

STEPS = ("import", "prune", "factor", "sparsify", "dynamic", "quantize", "stream", "lower", "plan", "emit")
QUERY_TILES = (16, 8, 4, 2, 1)  # tried largest first under --sram-budget (docs/firmware.md, "Memory plan")
PREQUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "QGemm", "MatMulNBits"})


def is_prequantized(graph: Graph) -> bool:
    """True for a QDQ, QOperator or MatMulNBits model: it brings its own scales."""
    return (any(node.op in PREQUANTIZED_OPS for node in graph.nodes)
            or any(graph.type(v).quant is not None for v in graph.constants))


def io_bytes(graph: Graph) -> int:
    """The caller's input and output buffers."""
    return sum(graph.type(v).size * graph.type(v).np_dtype.itemsize for v in (graph.inputs[0], graph.outputs[0]))


def choose_query_tile(graph: Graph, options: BuildOptions) -> int:
    """The largest query tile whose planned RAM fits --sram-budget (or the given or default tile without a
    budget); a budget below the plan with one query row per tile is an error naming that minimum. Only the
    memory plan is made per candidate, not the project."""
    from mcu_attn.codegen.emit import DEFAULT_QUERY_TILE, memory_plan

    if options.sram_budget is None:
        return options.query_tile or DEFAULT_QUERY_TILE
    io = io_bytes(graph)
    for tile in (options.query_tile,) if options.query_tile else QUERY_TILES:
        arena = memory_plan(graph, tile)[2].arena_bytes
        if arena + io <= options.sram_budget:
            return tile
    raise UserError(f"--sram-budget {options.sram_budget:,}: the smallest plan needs {arena + io:,} B "
                    f"(arena {arena:,} B with {tile} query row{'s' if tile > 1 else ''} per attention tile, "
                    f"input and output {io:,} B)")


@dataclass
class Compilation:
    """One model compiled with one options value; `run(until)` runs the steps not yet run, up to `until`."""
    model: Path
    options: BuildOptions
    calib: np.ndarray | None = None      # given as an array (API callers); else loaded from options.calib
    done: list[str] = field(default_factory=list)
    imported: Graph | None = None        # after `import`
    float_graph: Graph | None = None     # the float model the build deploys (after `sparsify`)
    unreconstructed: Graph | None = None  # after `prune`: pruned without the least-squares refit (for reports)
    least_squares: Graph | None = None   # after `prune`: the least-squares refit without the fine-tuning (for reports)
    graph: Graph | None = None           # what code is generated from: quantized, or float for --bits 32
    reports: dict = field(default_factory=dict)  # what the steps report: "pruning", "attention", "quantization"
    query_tile: int | None = None
    step: Graph | None = None            # after `stream` (--streaming): the graph ma_step runs
    delta: int = 0                       # after `stream`: the event threshold in input steps (0: never skip)
    project: object | None = None        # codegen.emit.Project after `emit`

    def run(self, until: str = "emit") -> "Compilation":
        if until not in STEPS:
            raise ValueError(f"unknown compile step {until!r}")
        for step in STEPS[:STEPS.index(until) + 1]:
            if step not in self.done:
                getattr(self, "_" + step)()
                self.done.append(step)
        return self

    # ---- the steps, in order --------------------------------------------------------------------------------
    def _import(self) -> None:
        from mcu_attn.api import import_model
        from mcu_attn.data import load_stack, model_samples

        self.options.check()
        self.imported = import_model(self.model)
        if self.calib is None and self.options.calib:
            self.calib = load_stack(self.options.calib, "calibration")
        if self.calib is not None:
            self.calib = model_samples(self.imported, self.calib, "calibration data")
        if self.options.bits != 32 and self.calib is None and not is_prequantized(self.imported):
            raise UserError(f"--bits {self.options.bits} quantizes this float model on calibration samples: "
                            f"pass --calib C.npy (a stack of typical inputs), or --bits 32 for the float baseline")
        self.float_graph = self.imported

    def _prune(self) -> None:
        if not self.options.prunes:
            return
        from mcu_attn.passes.prune import prune_graph

        if self.calib is None:
            raise UserError("--prune-heads and --prune-ffn choose and refit on calibration data: pass --calib C.npy")
        graph, notes = self.float_graph, []
        if is_prequantized(graph):
            from mcu_attn.passes.manager import run_pipeline
            from mcu_attn.passes.pipeline import prequantized_pipeline

            graph = graph.copy()
            run_pipeline(graph, prequantized_pipeline())
            notes.append("pre-quantized model: pruned on its dequantized float weights; the layers that lose output "
                         "channels keep the model's scales of the kept ones, every refit layer is requantized with "
                         "new scales")
        result = prune_graph(graph, self.calib, self.options.prune_heads, self.options.prune_ffn,
                             self.options.prune_finetune)
        self.float_graph, self.unreconstructed, self.least_squares = (result.graph, result.unreconstructed,
                                                                      result.least_squares)
        self.reports["pruning"] = {**result.report, "notes": notes}

    def deployed(self, float_graph: Graph) -> Graph:
        """`float_graph` as the options deploy it: quantized for --bits 8/4 (as the `quantize` step does)."""
        if self.options.bits == 32:
            return float_graph
        from mcu_attn.passes.quantize import quantize_graph

        return quantize_graph(float_graph, self.calib, self.options.bits)

    def without_pruning(self) -> "Compilation":
        """The same compilation without --prune-heads/--prune-ffn, sharing the imported model and calibration."""
        return Compilation(self.model, replace(self.options, prune_heads=0.0, prune_ffn=0.0), calib=self.calib,
                           done=["import"], imported=self.imported, float_graph=self.imported)

    def _factor(self) -> None:
        if self.options.low_rank is None:
            return
        from mcu_attn.passes.low_rank import low_rank
        from mcu_attn.passes.sparsify import DEFAULT_TOLERANCE

        tolerance = DEFAULT_TOLERANCE if self.options.tolerance is None else self.options.tolerance
        self.float_graph, self.reports["low_rank"] = low_rank(self.float_graph, self.calib, self.options.low_rank,
                                                              tolerance, self.options.auto_metric)

    def _sparsify(self) -> None:
        if self.options.attention is None:
            return
        from mcu_attn.passes.sparsify import DEFAULT_TOLERANCE, AttentionChoice, choose

        tolerance = DEFAULT_TOLERANCE if self.options.tolerance is None else self.options.tolerance
        self.float_graph, self.reports["attention"] = choose(
            self.float_graph, self.calib, AttentionChoice.parse(self.options.attention), tolerance,
            self.options.auto_metric)

    def _dynamic(self) -> None:
        from mcu_attn.passes.sparsify import DEFAULT_TOLERANCE

        tolerance = DEFAULT_TOLERANCE if self.options.tolerance is None else self.options.tolerance
        if self.options.token_prune:
            from mcu_attn.passes.token_prune import PruneChoice, choose

            self.float_graph, self.reports["token_prune"] = choose(
                self.float_graph, self.calib, PruneChoice.parse(self.options.token_prune), tolerance)
        if self.options.early_exit:
            from mcu_attn.passes.early_exit import ExitChoice, choose

            self.float_graph, self.reports["early_exit"] = choose(
                self.float_graph, self.calib, ExitChoice.parse(self.options.early_exit), tolerance)

    def _quantize(self) -> None:
        self.graph = self.deployed(self.float_graph)
        if self.options.bits != 32:
            self.reports["quantization"] = self.graph.meta["quantization"].as_dict()

    def _stream(self) -> None:
        if self.options.streaming is None:
            return
        if self.options.bits == 32:
            raise UserError("--streaming builds integer firmware (its ring buffers and event test are integer, "
                            "bit-exact with the reference): use --bits 8 or 4")
        from mcu_attn.passes.sparsify import DEFAULT_TOLERANCE
        from mcu_attn.passes.streaming import StreamChoice, choose, step_graph

        tolerance = DEFAULT_TOLERANCE if self.options.tolerance is None else self.options.tolerance
        self.step = step_graph(self.graph)
        self.delta, self.reports["streaming"] = choose(self.graph, self.step, self.calib,
                                                       StreamChoice.parse(self.options.streaming), tolerance)

    def _lower(self) -> None:
        from mcu_attn.ir.ops.lowering import emitter_of

        if self.options.bits == 32 and (self.options.token_prune or self.options.early_exit):
            raise UserError("--token-prune and --early-exit build integer firmware (their decisions are integer "
                            "there, bit-exact with the reference): use --bits 8 or 4; eval --float runs them in float")
        for node in self.graph.nodes + (self.step.nodes if self.step is not None else ()):
            emitter_of(node)

    def _plan(self) -> None:
        self.query_tile = choose_query_tile(self.graph, self.options)

    def _emit(self) -> None:
        from mcu_attn.codegen.emit import generate

        self.project = generate(self.graph, self.query_tile, self.options.prefix, self.options.kernels or "ref",
                                (self.step, self.delta) if self.step is not None else None)


def planned_flash(project) -> int:
    """Constant data the plan puts in flash: weights and operator parameters (code excluded)."""
    return project.weights_bytes + project.params_bytes


def pruning_summary(compilation: Compilation, unpruned: Compilation) -> dict:
    """The pruning report with the planned flash (weights and operator parameters, at the deployed bit width)
    before and after pruning: both compilations are run through `emit`."""
    report = compilation.reports["pruning"]
    report["before"]["flash_bytes"] = planned_flash(unpruned.run("emit").project)
    report["after"]["flash_bytes"] = planned_flash(compilation.run("emit").project)
    return report


def compile_model(model: str | os.PathLike, options: BuildOptions, until: str = "emit",
                  calib: np.ndarray | None = None) -> Compilation:
    """Run the named steps up to `until` (see the module docstring)."""
    return Compilation(Path(model), options, calib).run(until)
