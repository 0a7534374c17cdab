"""Code generation: an IR graph (after the frontend pipeline, float or quantized) -> a self-contained C project.

1. Every node finds its emitter on its op's spec (`ir/ops/lowering.py`; an unsupported op is a UserError naming
   it) and becomes a memory-planner step: views, in-place candidates and scratch come from the emitter entry.
2. `memory.plan_memory` places every intermediate in one arena (the input and output stay in the caller's
   buffers where possible).
3. Each non-view node emits kernel calls; the emitters register the data the calls read through `EmitContext`.
4. Jinja2 templates (`mcu_attn/firmware_templates/model`, `harness`; StrictUndefined) write that data and those calls
   out verbatim: all decisions and arithmetic are made here, none in the templates.
The result is deterministic: names derive from the graph, iteration follows node order or sorted keys, and no
path, time or host detail reaches the files.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Callable

import jinja2
import numpy as np

from mcu_attn.codegen.cformat import CTYPES, Names, c_float, c_initializer, c_int
from mcu_attn.codegen.kernels import KERNELS, TEMPLATES, kernel_files
from mcu_attn.codegen.memory import Location, MemoryPlan, Step, plan_memory
from mcu_attn.codegen.prefix import DEFAULT as DEFAULT_PREFIX
from mcu_attn.codegen.prefix import Renamer
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import node_macs
from mcu_attn.ir.ops.lowering import emitter_of, only_first_output

EXECUTABLE = "model_host"
DEFAULT_QUERY_TILE = 1   # least RAM; --sram-budget trades RAM for a larger tile (docs/firmware.md, "Memory plan")
IO_DTYPES = ("float32", "int8", "int32")  # int32: token ids
HARNESS_FILES = ("main.c", "Makefile")   # the host harness: it uses the model's API, it is not part of the model


@dataclass(frozen=True)
class ConstArray:
    name: str
    ctype: str
    values: np.ndarray
    comment: str
    hot: bool = False   # read at data-dependent addresses on every inference: copied to RAM (model.c.j2)

    @property
    def nbytes(self) -> int:
        return int(self.values.size) * _CSIZE[self.ctype]


_CSIZE = {ctype: np.dtype(dtype).itemsize for dtype, ctype in CTYPES.items() if dtype != "int4"}


@dataclass
class Project:
    """The generated files (relative path -> bytes) and what the report needs to know about them."""
    files: dict[str, bytes]
    plan: MemoryPlan
    layers: list[dict]
    weights_bytes: int      # constant tensors in weights.c
    params_bytes: int       # operator parameters in model.c (tables, strides; structs as on a 32-bit target)
    kernel_functions: list[str]   # the ma_* functions model.c calls
    sources: list[str] = field(default_factory=list)   # C sources in link order (main.c first)
    headers: list[str] = field(default_factory=list)
    query_tile: int = 1                                 # query rows per attention kernel tile
    renamer: Renamer = field(default_factory=lambda: Renamer(DEFAULT_PREFIX, {}))   # --prefix (harness files too)
    kernel_variant: str = "ref"                         # codegen.kernels.VARIANTS: the kernel sources used
    stream: dict | None = None                          # --streaming: ma_step's layers, event threshold, its arena
    arena_bytes: int = 0                                # the arena: ma_run's plan, or ma_step's where larger
    hot_table_bytes: int = 0                            # hot tables: RAM where ma_init copies them (model.c.j2)


class EmitContext:
    """What an emitter may ask for while it turns one node into calls."""

    def __init__(self, graph: Graph, plan: MemoryPlan, query_tile: int) -> None:
        self.graph = graph
        self.plan = plan
        self.query_tile = query_tile  # query rows per attention kernel tile
        self.names = Names()
        self.weights: dict[tuple[str, str], ConstArray] = {}
        self.tables: dict[tuple[str, tuple], ConstArray] = {}
        self.structs: list[dict] = []
        self.struct_names: dict[tuple, str] = {}   # struct content -> its name (identical structs are shared)
        self.checks: list[dict] = []
        self.states: list[dict] = []   # static state buffers (streaming attention's rings), zeroed by ma_stream_reset
        self.struct_bytes = 0
        self.step = -1  # the node being emitted (its scratch)

    # ---- pointers ------------------------------------------------------------------------------------------
    def _location(self, value: str, write: bool) -> Location:
        location = self.plan.values[value]
        if write and location.storage in ("input", "const"):
            raise AssertionError(f"{value} would be written in {location.storage} storage")
        return location

    def _bytes_base(self, location: Location) -> str:
        if location.storage == "const":
            return f"(const uint8_t *){self._natural(location.root)}"
        return {"arena": "ma_arena", "input": "(const uint8_t *)in", "output": "(uint8_t *)out"}[location.storage]

    def ptr(self, value: str, write: bool = False, offset: int = 0) -> str:
        """A typed pointer expression to `value` (plus `offset` bytes)."""
        location = self._location(value, write)
        ctype = CTYPES[self.graph.type(value).dtype]
        total = location.offset + offset
        if total == 0 and location.storage in ("input", "output"):
            return "in" if location.storage == "input" else "out"
        if total == 0 and location.storage == "const":
            return self._natural(location.root)
        qualifier = "" if write else "const "
        return f"({qualifier}{ctype} *)({self._bytes_base(location)} + {total})"

    def raw(self, value: str, write: bool = False, offset: int = 0) -> str:
        """A byte pointer expression to `value` (plus `offset` bytes), for the any-type layout kernels."""
        location = self._location(value, write)
        total = location.offset + offset
        base = self._bytes_base(location)
        return f"{base} + {total}" if total else base

    def scratch(self, ctype: str) -> str:
        return f"({ctype} *)(ma_arena + {self.plan.scratch[self.step]})"

    # ---- data ----------------------------------------------------------------------------------------------
    def weight(self, value: str, layout: str, make: Callable[[], np.ndarray], ctype: str) -> str:
        """A constant tensor in weights.c, in the layout a kernel reads (`make` builds it once)."""
        key = (value, layout)
        if key not in self.weights:
            hint = value if layout == "natural" else f"{value}_{layout}"
            array = np.asarray(make())
            shape = "x".join(str(d) for d in array.shape)
            self.weights[key] = ConstArray(self.names.get("ma_w_", hint), ctype, array,
                                           f"{value} ({layout}, {ctype} {shape})")
        return self.weights[key].name

    def _natural(self, value: str) -> str:
        dtype = self.graph.type(value).dtype
        if dtype not in CTYPES or dtype == "int4":
            raise UserError(f"constant {value!r} of type {dtype} cannot be read directly by the C kernels")
        return self.weight(value, "natural", lambda: self.graph.const(value), CTYPES[dtype])

    def table(self, hint: str, values, ctype: str, hot: bool = False) -> str:
        """A small static const array of operator parameters in model.c (identical ones are shared). A `hot` one
        (a lookup table, or per-channel parameters a kernel re-reads every row) is copied to RAM by ma_init on a
        part whose flash has wait states (MA_TABLES_IN_SRAM, model.c.j2)."""
        array = np.asarray(values, np.int64).reshape(-1)
        key = (ctype, tuple(array.tolist()))
        if key not in self.tables:
            self.tables[key] = ConstArray(self.names.get("ma_t_", hint), ctype, array, hint)
        if hot and not self.tables[key].hot:
            self.tables[key] = replace(self.tables[key], hot=True)
        return self.tables[key].name

    def struct(self, ctype: str, node: Node, fields: list[tuple[str, object]]) -> str:
        """A static const parameter struct in model.c; an identical one is shared (ma_step's layers and ma_run's
        use the same parameters where they can), a node asking again with other values gets a name of its own."""
        rendered = [{"name": key, "value": self.literal(value)} for key, value in fields]
        content = (ctype, tuple((f["name"], f["value"]) for f in rendered))
        if content in self.struct_names:
            return self.struct_names[content]
        hint = node.name or node.outputs[0]
        name = self.names.get("ma_p_", hint)
        if name in self.struct_names.values():
            name = self.names.get("ma_p_", f"{hint} {len(self.structs)}")
        self.struct_names[content] = name
        self.structs.append({"ctype": ctype, "name": name, "fields": rendered})
        # size on a 32-bit target: 4-byte ints, floats and pointers, 8-byte int64 fields
        self.struct_bytes += sum(8 if isinstance(v, tuple) and v[0] == "int64_t" else 4 for _, v in fields)
        return name

    def state(self, hint: str, nbytes: int) -> str:
        """A static, 8-byte aligned state buffer of `nbytes` in RAM that persists between calls (not in the
        arena); zeroed by ma_init and ma_stream_reset."""
        name = self.names.get("ma_s_", hint)
        self.states.append({"name": name, "bytes": int(nbytes)})
        return name

    def data_bytes(self) -> int:
        """Bytes of constant data registered so far (weights, tables, parameter structs): per-layer accounting."""
        return (sum(a.nbytes for a in self.weights.values()) + sum(a.nbytes for a in self.tables.values())
                + self.struct_bytes)

    def check(self, expr: str, bound: int) -> None:
        self.checks.append({"expr": expr, "bound": str(bound)})

    @staticmethod
    def literal(value, ctype: str | None = None) -> str:
        """C text of a parameter: float, int, (ctype, int) or an expression given as a string."""
        if isinstance(value, tuple):
            ctype, value = value
        if isinstance(value, str):
            return value
        if isinstance(value, float) or ctype == "float":
            return c_float(value)
        return c_int(int(value), ctype or "int32_t")


def layer_symbol(index: int, name: str, width: int = 3, kind: str = "layer") -> str:
    """`ma_layer_NNN_<name>` (`ma_step_NNN_<name>` for ma_step's): the function holding one node's kernel calls
    (docs/firmware.md)."""
    stem = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")[:48] or "node"
    return f"ma_{kind}_{index:0{width}d}_{stem}"


def comment_text(text: str) -> str:
    """`text` safe inside a C block comment and on one line of any generated file (names come from the model)."""
    return text.replace("*/", "* /").replace("\r", " ").replace("\n", " ")


def _sizes(graph: Graph) -> dict[str, int]:
    return {name: ttype.size * ttype.np_dtype.itemsize for name, ttype in graph.types.items()}


def _steps(graph: Graph, query_tile: int) -> list[Step]:
    steps = []
    for node in graph.nodes:
        entry = emitter_of(node)
        inputs = tuple(v for v in node.inputs if v)
        view = entry.view(graph, node) if entry.view else None
        scratch = entry.scratch(graph, node, query_tile) if entry.scratch else 0
        only_first_output(node, graph)
        steps.append(Step(inputs, (node.outputs[0],),
                          (node.inputs[0], view) if view is not None else None,
                          tuple(p for p in entry.inplace if p < len(node.inputs) and node.inputs[p]), scratch))
    return steps


def _guards(graph: Graph) -> dict[int, list[int]]:
    """Node index -> the guarded nodes (emitter `guard`, lowering.py) whose test runs right after it: after the
    node that computes the guarded input (-1: the graph input, before the first layer)."""
    producers = {out: index for index, node in enumerate(graph.nodes) for out in node.outputs}
    waiting: dict[int, list[int]] = {}
    for index, node in enumerate(graph.nodes):
        guard = emitter_of(node).guard
        if guard is not None:
            waiting.setdefault(producers.get(node.inputs[guard[0]], -1), []).append(index)
    return waiting


def _emit_guard(ctx: EmitContext, index: int, after: int, width: int, rendered: list[dict], layers: list[dict],
                functions: set[str]) -> None:
    """The layer function of node `index`'s guard, run right after node `after`: it returns nonzero when the
    model's output is written and ma_run is done (early exit)."""
    node = ctx.graph.nodes[index]
    position, check = emitter_of(node).guard
    tested = node.inputs[position]
    ctx.step = index
    before = ctx.data_bytes()
    call = check(ctx, node)
    functions.add(call.fn)
    name = f"{node.name or node.outputs[0]}_test"
    symbol = layer_symbol(index, name, width)
    number = 1 + sum(1 for layer in rendered if layer["guard"])
    rendered.append({"symbol": symbol, "guard": number, "calls": [{"fn": call.fn, "args": list(call.args)}],
                     "comment": comment_text(f"{name}: early exit {number}, tested on {tested}")})
    layers.append({"name": name, "op": node.op, "symbol": symbol, "macs": 0, "shape": list(ctx.graph.shape(tested)),
                   "storage": "output", "kind": "exit test", "arena_offset": None, "scratch_offset": None,
                   "arena_bytes": 0, "scratch_bytes": 0, "live_bytes": ctx.plan.live_bytes(max(after, 0)),
                   "weights_bytes": ctx.data_bytes() - before})


def _check_interface(graph: Graph) -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UserError(f"code generation needs one input and one output; the model has {len(graph.inputs)} "
                        f"and {len(graph.outputs)}")
    for name in graph.inputs + graph.outputs:
        dtype = graph.type(name).dtype
        if dtype not in IO_DTYPES:
            raise UserError(f"model input/output {name!r} is {dtype}; generated code takes float32, int8 or int32 "
                            f"(token ids)")


def _io_macros(graph: Graph, prefix: str, value: str) -> list[dict]:
    ttype = graph.type(value)
    macros = [{"name": f"MA_{prefix}_COUNT", "value": str(ttype.size)},
              {"name": f"MA_{prefix}_RANK", "value": str(len(ttype.shape))},
              {"name": f"MA_{prefix}_SHAPE", "value": "{" + ", ".join(map(str, ttype.shape)) + "}"}]
    if ttype.dtype == "int8":
        if ttype.quant is None or ttype.quant.per_channel:
            raise UserError(f"int8 model {prefix.lower()} {value!r} needs one scale and zero point")
        macros += [{"name": f"MA_{prefix}_SCALE", "value": c_float(ttype.quant.scale[0])},
                   {"name": f"MA_{prefix}_ZERO_POINT", "value": str(int(ttype.quant.zero_point[0]))}]
    return macros


def _exact_scale(graph: Graph, value: str) -> str | None:
    """The quantization scale of `value` as a C double literal (the reference's value), None for float I/O."""
    quant = graph.type(value).quant
    return None if quant is None else repr(float(quant.scale[0]))


def _array_view(array: ConstArray) -> dict:
    return {"name": array.name, "ctype": array.ctype, "length": max(1, int(array.values.size)),
            "body": c_initializer(array.values, array.ctype), "comment": comment_text(array.comment),
            "hot": array.hot}


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment (built once: the templates compile on first use)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                              autoescape=False)


def memory_plan(graph: Graph, query_tile: int = DEFAULT_QUERY_TILE) -> tuple[list[Step], dict[str, int], MemoryPlan]:
    """The planner's steps, the value sizes and the arena plan of `graph` with attention tiles of `query_tile`
    query rows (scratch grows with the tile; results do not change)."""
    _check_interface(graph)
    if query_tile < 1:
        raise ValueError("query_tile must be at least 1")
    steps, sizes = _steps(graph, query_tile), _sizes(graph)
    return steps, sizes, plan_memory(steps, sizes, graph.inputs, graph.outputs, graph.constants)


def _emit_layers(ctx: EmitContext, graph: Graph, steps: list[Step], sizes: dict[str, int], plan: MemoryPlan,
                 kind: str = "layer") -> tuple[list[dict], list[dict], set[str]]:
    """One layer function per node of `graph` (plus the guards' functions): what the template renders, what
    report.json says about each, and the kernels they call. `kind` names them: ma_<kind>_NNN_<node>."""
    ctx.graph, ctx.plan = graph, plan
    rendered_layers, layers, functions = [], [], set()
    width = max(3, len(str(len(graph.nodes) - 1)))
    guards = _guards(graph)
    for guarded in guards.get(-1, ()):
        _emit_guard(ctx, guarded, -1, width, rendered_layers, layers, functions)
    for index, (node, step) in enumerate(zip(graph.nodes, steps)):
        ctx.step = index
        before = ctx.data_bytes()
        calls = [] if step.view_of is not None else emitter_of(node).emit(ctx, node)
        out = node.outputs[0]
        location = plan.values[out]
        how = "view" if step.view_of is not None else ("in place" if index in plan.inplace_steps else "")
        functions.update(call.fn for call in calls)
        note = f", {how}" if how else ""
        symbol = layer_symbol(index, node.name or out, width, kind)
        rendered_layers.append({"symbol": symbol,
                                "comment": comment_text(f"{node.name or out}: {node.op} -> "
                                                        f"{graph.type(out).describe()}{note}"),
                                "calls": [{"fn": c.fn, "args": list(c.args)} for c in calls], "guard": 0})
        fresh = location.storage == "arena" and not how and location.root == out
        layers.append({"name": node.name or out, "op": node.op, "symbol": symbol,
                       "macs": node_macs(graph, node), "shape": list(graph.shape(out)),
                       "storage": location.storage, "kind": how or "kernel",
                       "arena_offset": location.offset if location.storage == "arena" else None,
                       "scratch_offset": plan.scratch.get(index),
                       "arena_bytes": (sizes[out] if fresh else 0) + step.scratch,
                       "scratch_bytes": step.scratch,
                       "live_bytes": plan.live_bytes(index),
                       "weights_bytes": ctx.data_bytes() - before})
        for guarded in guards.get(index, ()):
            _emit_guard(ctx, guarded, index, width, rendered_layers, layers, functions)
    output = graph.outputs[0]
    if plan.copy_out and rendered_layers:  # the last layer function ends with the copy into the caller's buffer
        rendered_layers[-1]["calls"].append({"fn": "memcpy", "args": ["out", ctx.raw(output), str(sizes[output])]})
    return rendered_layers, layers, functions


def generate(graph: Graph, query_tile: int = DEFAULT_QUERY_TILE, prefix: str = DEFAULT_PREFIX,
             variant: str = "ref", stream: tuple[Graph, int] | None = None) -> Project:
    """The C project for `graph`: model.h/.c, weights.h/.c, kernels/, main.c and a Makefile. Attention kernels
    take `query_tile` query rows at a time (see `memory_plan`); the model's symbols start with `prefix`
    (codegen/prefix.py); `variant` picks the kernel sources (`codegen.kernels.VARIANTS`). `stream`: the step
    graph of a causal model and its event threshold (passes/streaming.py): model.c then also has ma_step(),
    whose layers share the weights and the arena (their plan starts at offset 0 too) and keep their state in
    static buffers of their own."""
    from mcu_attn.passes.streaming import receptive_field

    steps, sizes, plan = memory_plan(graph, query_tile)
    ctx = EmitContext(graph, plan, query_tile)
    rendered_layers, layers, functions = _emit_layers(ctx, graph, steps, sizes, plan)
    arena_bytes, step_info = plan.arena_bytes, None
    if stream is not None:
        step_graph, delta = stream
        step_steps, step_sizes, step_plan = memory_plan(step_graph, query_tile)
        step_rendered, step_layers, step_functions = _emit_layers(ctx, step_graph, step_steps, step_sizes, step_plan,
                                                                  "step")
        functions |= step_functions | {"ma_event_s8"}
        arena_bytes = max(arena_bytes, step_plan.arena_bytes)
        inputs = step_graph.type(step_graph.inputs[0]).size
        step_info = {"layers": step_rendered, "report": step_layers, "delta": delta, "settle": receptive_field(step_graph),
                     "arena_bytes": step_plan.arena_bytes, "input_count": inputs,
                     # the rings, the event test's anchor and counters, the last output (model.c.j2)
                     "state_bytes": sum(state["bytes"] for state in ctx.states) + inputs + 8 + sizes[graph.outputs[0]]}
        ctx.graph, ctx.plan = graph, plan

    exits = sum(1 for layer in rendered_layers if layer["guard"])
    model = graph.name
    output = graph.outputs[0]
    in_ctype, out_ctype = (CTYPES[graph.type(v).dtype] for v in (graph.inputs[0], output))
    weights = [_array_view(a) for a in ctx.weights.values()]
    tables = [_array_view(a) for a in ctx.tables.values()]
    weights_bytes = sum(a.nbytes for a in ctx.weights.values())
    params_bytes = sum(a.nbytes for a in ctx.tables.values()) + ctx.struct_bytes
    macros = (_io_macros(graph, "INPUT", graph.inputs[0]) + _io_macros(graph, "OUTPUT", output)
              + [{"name": "MA_ARENA_BYTES", "value": str(arena_bytes)}])
    if step_info:
        macros.append({"name": "MA_STEP_INPUT_COUNT", "value": str(step_info["input_count"])})

    kernel_functions = sorted(f for f in functions if f.startswith("ma_"))
    kernel_paths = kernel_files(kernel_functions, variant)
    kernel_rel = {path: "kernels/" + path.relative_to(KERNELS).as_posix() for path in kernel_paths}
    sources = ["main.c", "model.c", "weights.c"] + sorted(r for r in kernel_rel.values() if r.endswith(".c"))
    headers = ["model.h", "weights.h"] + sorted(r for r in kernel_rel.values() if r.endswith(".h"))

    env = environment()
    common = {"model": comment_text(model), "executable": EXECUTABLE, "exits": exits, "stream": step_info,
              "input_ctype": in_ctype, "output_ctype": out_ctype}
    texts = {
        "model.h": env.get_template("model/model.h.j2").render(
            **common, macros=macros, input_quantized=in_ctype == "int8_t", output_quantized=out_ctype == "int8_t",
            input_scale=_exact_scale(graph, graph.inputs[0]), output_scale=_exact_scale(graph, output)),
        "model.c": env.get_template("model/model.c.j2").render(
            **common, arena_bytes=arena_bytes, arena_length=max(8, arena_bytes), tables=tables,
            structs=ctx.structs, checks=ctx.checks, layers=rendered_layers, states=ctx.states),
        "weights.h": env.get_template("model/weights.h.j2").render(
            **common, weights=weights, weights_bytes=weights_bytes),
        "weights.c": env.get_template("model/weights.c.j2").render(**common, weights=weights),
        "main.c": env.get_template("harness/main.c.j2").render(**common),
        "Makefile": env.get_template("harness/Makefile.j2").render(**common, sources=sources, headers=headers),
    }
    files = {name: text.encode() for name, text in texts.items()}
    files.update({rel: path.read_bytes() for path, rel in kernel_rel.items()})
    renamer = Renamer(prefix, {name: data for name, data in files.items() if name not in HARNESS_FILES})
    for layer in layers + (step_info["report"] if step_info else []):
        layer["symbol"] = renamer.rename(layer["symbol"])
    return Project({name: renamer.file(name, data) for name, data in sorted(files.items())}, plan, layers,
                   weights_bytes, params_bytes, [renamer.rename(f) for f in kernel_functions], sources, headers,
                   query_tile, renamer, variant,
                   {**step_info, "layers": step_info["report"]} if step_info else None,
                   arena_bytes, sum(a.nbytes for a in ctx.tables.values() if a.hot))
