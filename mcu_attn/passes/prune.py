"""Structured pruning (`--prune-heads R`, `--prune-ffn R`): whole attention heads and FFN hidden channels,
chosen on calibration data and removed physically, then the following projection refit by least squares.

Units. A head unit belongs to an `Attention` block whose q, k and v each come from a `Linear` read by nothing
else, and whose output is read by one `Linear` only (the output projection). Removing head h drops columns
h·D … (h+1)·D − 1 of the q, k and v weights and biases and the same rows of the output projection; the block's
`heads` attribute goes down by one, and every tensor in between gets narrower. A channel unit belongs to an FFN:
`Linear → single-input pointwise activation → Linear`, each read only by the next. Removing channel c drops
column c of the first weight and bias and row c of the second. Nothing is masked at run time: fewer weights,
fewer MACs, smaller activations. This is the IR every exporter's graph is brought to by the frontend (packed
in-projections are split, the ONNX `Attention` op and tf2onnx's Tensordot spellings become the same `Linear`s).

Importance, on data. The projection after a unit is linear, so removing unit u changes the sublayer's output
by exactly Δ_u = a_u · W_u: the unit's activations times its rows of the following weight. The importance of u
is the mean ‖Δ_u‖² over the calibration tokens divided by the mean ‖y‖² of the block output that the sublayer
adds into (the residual stream; the sublayer's own output when there is no residual Add). Units of different
layers so rank on one scale. The ranking is global: floor(R · units) units of the lowest importance go, and a
layer may lose more than another. A unit whose removal would take a block's last head, or an FFN's last
channel, is skipped in favour of the next one.

Reconstruction (`passes/reconstruct.py`) then refits each pruned sublayer's following projection, layer by
layer, on the calibration data, and `passes/finetune.py` trains the whole pruned model towards the unpruned
model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind, node_macs
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run

PRUNE_SAMPLES = 1024  # calibration samples that rank units and feed the refit: more fit better and take longer
CACHE_BYTES = 256 << 20  # the refit keeps the original model's targets for every sample: fewer samples above this


@dataclass(frozen=True)
class Sublayer:
    """One prunable sublayer: `units` heads (or channels) of `width` columns each between the producers and
    the following projection `follow`."""
    kind: str                      # "heads" or "channels"
    name: str                      # for reports: the Attention node's name, or the FFN's first Linear's
    producers: tuple[str, ...]     # outputs of the Linears whose columns go (q, k, v; or the first Linear)
    narrowed: tuple[str, ...]      # values whose last axis shrinks with them (q/k/v/attention out; hidden values)
    features: str                  # the value `follow` reads: the unit activations
    follow: str                    # output of the following Linear (output projection, second FFN Linear)
    block_output: str              # the value the sublayer's output adds into (for the importance scale)
    units: int
    width: int                     # columns per unit: head_dim, or 1 for a channel


def _linear_producer(graph: Graph, value: str) -> Node | None:
    node = graph.producer(value)
    if node is None or node.op != "Linear" or not graph.is_const(node.inputs[1]):
        return None
    if len(node.inputs) > 2 and node.inputs[2] and not graph.is_const(node.inputs[2]):
        return None
    return node


def _sole_reader(graph: Graph, value: str) -> Node | None:
    readers = graph.consumers(value)
    if len(readers) != 1 or value in graph.outputs:
        return None
    return readers[0]


def _following_linear(graph: Graph, value: str) -> Node | None:
    reader = _sole_reader(graph, value)
    if reader is None or reader.op != "Linear" or reader.inputs[0] != value or not graph.is_const(reader.inputs[1]):
        return None
    return reader


def _block_output(graph: Graph, value: str) -> str:
    """The residual Add the sublayer output feeds, or the output itself."""
    reader = _sole_reader(graph, value)
    return reader.outputs[0] if reader is not None and reader.op == "Add" else value


def _head_sublayer(graph: Graph, node: Node) -> Sublayer | None:
    projections = [_linear_producer(graph, v) for v in node.inputs[:3]]
    if any(p is None or _sole_reader(graph, p.outputs[0]) is not node for p in projections):
        return None
    if len({p.name for p in projections}) != 3:
        return None
    heads, dim = int(node.attrs["heads"]), int(node.attrs["head_dim"])
    if len(node.inputs) > 3 and node.inputs[3]:
        mask_shape = graph.shape(node.inputs[3])
        if len(mask_shape) >= 3 and mask_shape[-3] != 1:
            return None  # a mask per head would need slicing along with the heads
    follow = _following_linear(graph, node.outputs[0])
    if follow is None:
        return None
    out = follow.outputs[0]
    return Sublayer("heads", node.name or node.outputs[0], tuple(node.inputs[:3]),
                    tuple(node.inputs[:3]) + (node.outputs[0],), node.outputs[0], out, _block_output(graph, out),
                    heads, dim)


def _pointwise(graph: Graph, node: Node) -> bool:
    """A single-input activation applied per element (other inputs scalar constants)."""
    return (is_kind(node.op, "elementwise") and len(node.outputs) == 1
            and all(v and graph.is_const(v) and graph.const(v).size == 1 for v in node.inputs[1:])
            and graph.shape(node.inputs[0]) == graph.shape(node.outputs[0]))


def _ffn_sublayer(graph: Graph, up: Node) -> Sublayer | None:
    if up.op != "Linear" or _linear_producer(graph, up.outputs[0]) is not up:
        return None
    act = _sole_reader(graph, up.outputs[0])
    if act is None or act.inputs[0] != up.outputs[0] or not _pointwise(graph, act):
        return None
    follow = _following_linear(graph, act.outputs[0])
    if follow is None:
        return None
    channels = graph.shape(up.inputs[1])[1]
    return Sublayer("channels", up.name or up.outputs[0], (up.outputs[0],), (up.outputs[0], act.outputs[0]),
                    act.outputs[0], follow.outputs[0], _block_output(graph, follow.outputs[0]), channels, 1)


def find_sublayers(graph: Graph) -> tuple[list[Sublayer], list[Sublayer]]:
    """The prunable attention blocks and FFNs, in graph order."""
    heads = [s for n in graph.nodes if n.op == "Attention" for s in [_head_sublayer(graph, n)] if s]
    channels = [s for n in graph.nodes if n.op == "Linear" for s in [_ffn_sublayer(graph, n)] if s]
    return heads, channels


def importance(graph: Graph, sublayers: list[Sublayer], samples: np.ndarray) -> list[np.ndarray]:
    """Per sublayer: the importance of each unit (module docstring), from one pass over the samples."""
    wanted = sorted({v for s in sublayers for v in (s.features, s.block_output)})
    weights = [graph.const(graph.producer(s.follow).inputs[1]).astype(np.float64) for s in sublayers]
    change = [np.zeros(s.units) for s in sublayers]
    scale = [0.0] * len(sublayers)
    with progress("pruning: ranking channels", total=len(samples), unit="samples") as advance:
        for sample in samples:
            values = run(graph, {graph.inputs[0]: sample}, keep=wanted)
            for index, (s, weight) in enumerate(zip(sublayers, weights)):
                features = values[s.features].astype(np.float64).reshape(-1, s.units * s.width)
                for unit in range(s.units):
                    columns = slice(unit * s.width, (unit + 1) * s.width)
                    change[index][unit] += float(np.square(features[:, columns] @ weight[columns]).sum())
                scale[index] += float(np.square(values[s.block_output].astype(np.float64)).sum())
            advance()
    return [c / max(total, 1e-30) for c, total in zip(change, scale)]


def logit_importance(graph: Graph, sublayers: list[Sublayer], samples: np.ndarray) -> list[np.ndarray]:
    """Per attention block: for each head, the mean squared change of the model's outputs on the samples when
    that head alone is removed, relative to the mean squared output. One pass over the samples per head."""
    from mcu_attn.reference.interpreter import run_stack

    reference = run_stack(graph, samples).astype(np.float64)
    energy = max(float(np.mean(np.square(reference))), 1e-30)
    scores = []
    with progress("pruning: ranking heads", total=sum(s.units for s in sublayers), unit="heads") as advance:
        for sublayer in sublayers:
            change = np.zeros(sublayer.units)
            for unit in range(sublayer.units):
                trial = graph.copy()
                remove_units(trial, sublayer, [u for u in range(sublayer.units) if u != unit])
                change[unit] = float(np.mean(np.square(run_stack(trial, samples) - reference))) / energy
                advance()
            scores.append(change)
    return scores


def select(sublayers: list[Sublayer], scores: list[np.ndarray], ratio: float, what: str,
           option: str) -> list[list[int]]:
    """The units each sublayer keeps: floor(ratio · all units) of the lowest importance go, globally, never a
    sublayer's last unit. A ratio that cannot be met is a UserError."""
    total = sum(s.units for s in sublayers)
    remove = int(np.floor(ratio * total + 1e-9))
    removable = total - len(sublayers)
    if remove > removable:
        raise UserError(f"{option} {ratio:g} would remove {remove} of {total} {what}, but every "
                        f"{'attention block keeps a head' if what == 'heads' else 'FFN keeps a channel'}: at most "
                        f"{removable} can go (a ratio up to {removable / total:.3f})")
    ranked = sorted((float(scores[index][u]), index, u) for index, s in enumerate(sublayers)
                    for u in range(s.units))
    kept = [set(range(s.units)) for s in sublayers]
    for _, index, unit in ranked:
        if remove == 0:
            break
        if len(kept[index]) > 1:
            kept[index].discard(unit)
            remove -= 1
    return [sorted(units) for units in kept]


def _columns(sublayer: Sublayer, kept: list[int]) -> np.ndarray:
    return np.concatenate([np.arange(u * sublayer.width, (u + 1) * sublayer.width) for u in kept])


def _narrow_quant(quant: QuantParams | None, columns: np.ndarray) -> QuantParams | None:
    """Per-output-channel weight scales of a pre-quantized model follow the kept columns."""
    if quant is None or not quant.per_channel:
        return quant
    return QuantParams(tuple(quant.scale[c] for c in columns), tuple(quant.zero_point[c] for c in columns),
                       quant.axis, quant.bits)


def _replace_const(graph: Graph, node: Node, position: int, array: np.ndarray, quant: QuantParams | None) -> None:
    name = graph.add_const(node.inputs[position], np.ascontiguousarray(array),
                           TensorType(graph.type(node.inputs[position]).dtype, array.shape, quant))
    graph.set_inputs(node, [name if i == position else v for i, v in enumerate(node.inputs)])


def _narrow_value(graph: Graph, value: str, width: int) -> None:
    ttype = graph.type(value)
    graph.types[value] = TensorType(ttype.dtype, ttype.shape[:-1] + (width,), ttype.quant)


def remove_units(graph: Graph, sublayer: Sublayer, kept: list[int]) -> None:
    """Cut the removed units out of `graph` in place: producer columns, narrowed values, follower rows."""
    if len(kept) == sublayer.units:
        return
    columns = _columns(sublayer, kept)
    for value in sublayer.producers:
        node = graph.producer(value)
        weight = graph.const(node.inputs[1])
        _replace_const(graph, node, 1, weight[:, columns], _narrow_quant(graph.type(node.inputs[1]).quant, columns))
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = graph.const(node.inputs[2])
            _replace_const(graph, node, 2, bias.reshape(-1)[columns], None)
    for value in sublayer.narrowed:
        _narrow_value(graph, value, len(columns))
    if sublayer.kind == "heads":
        graph.producer(sublayer.features).attrs["heads"] = len(kept)
    follow = graph.producer(sublayer.follow)
    weight = graph.const(follow.inputs[1])
    _replace_const(graph, follow, 1, weight[columns, :], graph.type(follow.inputs[1]).quant)
    graph.prune_unused()


def work(graph: Graph) -> dict:
    """Learned parameters and multiply-accumulates of a float graph."""
    from mcu_attn.summary import count_params

    return {"params": count_params(graph), "macs": int(sum(node_macs(graph, n) for n in graph.nodes))}


@dataclass
class PruneResult:
    graph: Graph             # pruned and reconstructed (least-squares refit, then fine-tuned)
    unreconstructed: Graph   # pruned, the following projections as they were (to show what the refit buys)
    least_squares: Graph     # pruned and refit by least squares, not fine-tuned (to show what fine-tuning buys)
    report: dict


def _agreement(reference: np.ndarray, graph: Graph, samples: np.ndarray) -> float:
    from mcu_attn.data import top1
    from mcu_attn.reference.interpreter import run_stack

    return float(np.mean(top1(run_stack(graph, samples)) == reference))


def _downstream_linears(graph: Graph, first: str) -> list[str]:
    """The outputs of the Linears from the one computing `first` to the end, in graph order."""
    linears = [node.outputs[0] for node in graph.nodes if node.op == "Linear"]
    return linears[linears.index(first):]


def prune_graph(graph: Graph, calib: np.ndarray, heads_ratio: float, ffn_ratio: float,
                finetune_steps: int = 0) -> PruneResult:
    """Remove `heads_ratio` of the attention heads and `ffn_ratio` of the FFN channels of a float graph, chosen
    and reconstructed on `calib` (the least-squares refit, then `finetune_steps` steps of fine-tuning); the
    report says what went, what it saved and what the refit recovered."""
    from mcu_attn.data import top1
    from mcu_attn.ir.verify import verify
    from mcu_attn.passes.finetune import finetune
    from mcu_attn.passes.reconstruct import refit
    from mcu_attn.reference.interpreter import run_stack

    head_layers, ffn_layers = find_sublayers(graph)
    per_sample = 4 * sum(graph.type(n.outputs[0]).size for n in graph.nodes if n.op in ("Linear", "Add"))
    samples = calib[:max(1, min(PRUNE_SAMPLES, CACHE_BYTES // max(per_sample, 1)))]
    chosen: list[tuple[Sublayer, list[int], np.ndarray]] = []
    for ratio, layers, what, rank, missing in (
            (heads_ratio, head_layers, "heads", logit_importance,
             "no attention block whose heads can be removed (q, k and v from Linear layers read only by the block, "
             "its output read by one Linear)"),
            (ffn_ratio, ffn_layers, "channels", importance,
             "no FFN whose channels can be removed (Linear, a pointwise activation, Linear, each read only by the "
             "next)")):
        if ratio <= 0:
            continue
        option = "--prune-heads" if what == "heads" else "--prune-ffn"
        if not layers:
            raise UserError(f"{option} {ratio:g}: the model has {missing}")
        scores = rank(graph, layers, samples)
        kept = select(layers, scores, ratio, what, option)
        chosen += list(zip(layers, kept, scores))
    pruned = graph.copy()
    columns: dict[str, np.ndarray] = {}
    for sublayer, kept, _ in chosen:
        remove_units(pruned, sublayer, kept)
        columns.update({value: _columns(sublayer, kept) for value in sublayer.producers})
    verify(pruned)
    unreconstructed = pruned.copy()
    position = {value: index for index, node in enumerate(graph.nodes) for value in node.outputs}
    follows = [s.follow for s, kept, _ in chosen if len(kept) < s.units]
    rows, tuned = [], {"applied": False, "reason": "nothing was refit"}
    downstream = _downstream_linears(graph, min(follows, key=position.__getitem__)) if follows else []
    if follows:
        rows = refit(graph, pruned, downstream, samples, columns)
        for row, value in zip(rows, downstream):
            row["role"] = "follows pruned units" if value in follows else "downstream"
    verify(pruned)
    least_squares = pruned.copy()
    if follows and finetune_steps:
        tuned = finetune(graph, pruned, calib, finetune_steps)
    elif follows:
        tuned = {"applied": False, "reason": "--prune-finetune 0"}
    reference = top1(run_stack(graph, samples))
    report = {
        "prune_heads": heads_ratio, "prune_ffn": ffn_ratio, "samples": int(len(samples)),
        "heads": [{"block": s.name, "heads_before": s.units, "heads_after": len(kept), "kept": kept,
                   "importance": [float(v) for v in scores]} for s, kept, scores in chosen if s.kind == "heads"],
        "channels": [{"ffn": s.name, "channels_before": s.units, "channels_after": len(kept)}
                     for s, kept, _ in chosen if s.kind == "channels"],
        "before": work(graph), "after": work(pruned),
        "reconstruction": rows,
        "finetune": tuned,
        "calib_agreement": {"without_reconstruction": _agreement(reference, unreconstructed, samples),
                            "least_squares_only": _agreement(reference, least_squares, samples),
                            "with_reconstruction": _agreement(reference, pruned, samples),
                            "note": "top-1 agreement with the unpruned float model on the calibration samples"},
    }
    return PruneResult(pruned, unreconstructed, least_squares, report)
