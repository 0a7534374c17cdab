"""`--early-exit THRESHOLD[,after:B] | auto`: a classifier head after block B; the firmware stops there when the
head is confident (docs/dynamic.md).

1. Features: the class token of the residual stream after block B (passes/blocks.py) on every calibration
   sample, from the float reference, normalised as a LayerNorm without scale and bias does.
2. The head: a linear map from those features to the deployed model's own logits on the same samples, by ridge
   least squares in closed form (numpy; the calibration data has no labels, so the head learns to predict what
   the whole model would say: distillation). Matching the logits, not only the class, keeps the head's softmax
   on the scale of the model's, so one confidence threshold means the same for both.
3. The graph: Gather(class token) -> LayerNormalization(scale 1, bias 0) -> Linear (the head) right after
   block B, and `EarlyExit(output, head, threshold)` (ir/ops/early_exit.py) as the model's output: the head's
   logits when its largest softmax probability reaches THRESHOLD, else the whole model's. The firmware tests the
   head as soon as it is computed and returns from ma_run when it is confident.
4. `auto` tries every block but the last and thresholds from `THRESHOLDS`, and keeps the candidate with the
   fewest expected MACs (exit fraction x MACs up to the test + the rest x MACs of the whole model) whose top-1
   class on the calibration data differs from the model without exit on at most `tolerance` of the samples. The
   head judged there is cross-fitted (two halves, each predicted by the head fitted on the other), so the
   choice is not made on the samples the head was fitted to; the deployed head is then fitted on all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mcu_attn.data import top1
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import infer_types, node_macs
from mcu_attn.ir.verify import verify
from mcu_attn.passes.blocks import attention_nodes, block_output, class_token, position
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
RIDGE = 1e-2          # the ridge penalty, relative to the mean diagonal of the normal equations (not on the bias)
EPSILON = 1e-5        # the head's LayerNorm epsilon (PyTorch's default)


@dataclass(frozen=True)
class ExitChoice:
    auto: bool
    threshold: float = 1.0
    block: int = 0

    @staticmethod
    def parse(text: str) -> "ExitChoice":
        if text == "auto":
            return ExitChoice(True)
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?)(?:,after:(\d+))?", text)
        if not match or not 0.0 < float(match.group(1)) <= 1.0:
            raise UserError(f"--early-exit {text!r}: expected auto, THRESHOLD or THRESHOLD,after:B (the head's "
                            f"softmax confidence in (0, 1] needed to stop after block B, default 0)")
        return ExitChoice(False, float(match.group(1)), int(match.group(2) or 0))


def _normalise(features: np.ndarray) -> np.ndarray:
    """What the head's LayerNorm (no scale or bias) does, in float64."""
    centred = features - features.mean(axis=-1, keepdims=True)
    return centred / np.sqrt(np.mean(centred ** 2, axis=-1, keepdims=True) + EPSILON)


def fit_head(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares from normalised features [N, E] to target logits [N, C]: weight [E, C], bias [C]."""
    design = np.hstack([_normalise(features.astype(np.float64)), np.ones((len(features), 1))])
    normal = design.T @ design
    penalty = RIDGE * float(np.mean(np.diag(normal)[:-1]))
    normal[:-1, :-1] += penalty * np.eye(normal.shape[0] - 1)
    solution = np.linalg.solve(normal, design.T @ targets.astype(np.float64))
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def head_logits(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return _normalise(features.astype(np.float64)) @ weight.astype(np.float64) + bias


def confidence(logits: np.ndarray) -> np.ndarray:
    """The largest softmax probability of each row."""
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return 1.0 / weights.sum(axis=-1)


def cross_fitted(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Head logits of every sample from the head fitted on the other half (even and odd positions)."""
    halves = (np.arange(len(features)) % 2 == 0)
    out = np.zeros(targets.shape, np.float64)
    for part in (halves, ~halves):
        weight, bias = fit_head(features[~part], targets[~part])
        out[part] = head_logits(features[part], weight, bias)
    return out


def add_exit(graph: Graph, block: int, threshold: float, weight: np.ndarray, bias: np.ndarray) -> Graph:
    """A copy of `graph` with the head after block `block` and EarlyExit as its output (module docstring, 3)."""
    graph = graph.copy()
    stream = block_output(graph, block)
    cls = _class_position(graph, stream)
    width = graph.shape(stream)[-1]
    name = f"exit{block}"
    index = graph.add_const(f"{name}_class_token", np.array(cls, np.int64))
    scale = graph.add_const(f"{name}_norm_scale", np.ones(width, np.float32))
    shift = graph.add_const(f"{name}_norm_bias", np.zeros(width, np.float32))
    w = graph.add_const(f"{name}_head_w", np.ascontiguousarray(weight, np.float32))
    b = graph.add_const(f"{name}_head_b", np.ascontiguousarray(bias, np.float32))
    token, normed, logits = (graph.fresh(f"{name}_{part}") for part in ("token", "norm", "logits"))
    head = [Node("Gather", [stream, index], [token], {"axis": 1}, f"{name}/class_token"),
            Node("LayerNormalization", [token, scale, shift], [normed], {"axis": -1, "epsilon": EPSILON},
                 f"{name}/norm"),
            Node("Linear", [normed, w, b], [logits], {}, f"{name}/head")]
    producer = graph.producer(stream)
    if producer is None:
        graph.set_nodes(head + list(graph.nodes))
    else:
        graph.insert_after(producer, head)
    output = graph.outputs[0]
    decided = graph.fresh(f"{name}_output")
    node = graph.append(Node("EarlyExit", [output, logits], [decided], {"threshold": float(threshold)},
                             name))
    for value in (token, normed, logits):
        graph.types[value] = infer_types(graph, graph.producer(value))[0]
    graph.types[decided] = infer_types(graph, node)[0]
    if graph.shape(logits) != graph.shape(output):
        raise UserError(f"--early-exit: the head gives {list(graph.shape(logits))}, the output is "
                        f"{list(graph.shape(output))}")
    graph.replace_uses(output, decided)
    verify(graph)
    return graph


def _class_position(graph: Graph, stream: str) -> int:
    """The class token's position in `stream`: where the output reads it, or where a TokenSelect after the
    stream takes it from."""
    producer = graph.producer(stream)
    start = position(graph, producer) if producer is not None else -1
    for node in graph.nodes[start + 1:]:
        if node.op == "TokenSelect":
            return int(node.attrs["cls"])
    return class_token(graph)[1]


def _macs_until(graph: Graph, value: str) -> int:
    end = position(graph, graph.producer(value))
    return sum(node_macs(graph, node) for node in graph.nodes[:end + 1])


def choose(graph: Graph, calib: np.ndarray, choice: ExitChoice, tolerance: float) -> tuple[Graph, dict]:
    """The graph with its early exit and the report (see the module docstring)."""
    if calib is None:
        raise UserError("--early-exit fits its classifier head on calibration data: pass --calib C.npy")
    blocks = len(attention_nodes(graph))
    if blocks < 2:
        raise UserError(f"--early-exit: the model has {blocks} attention block(s); an exit needs a block after it")
    candidates = list(range(blocks - 1)) if choice.auto else [choice.block]
    if not 0 <= candidates[0] < blocks - 1:
        raise UserError(f"--early-exit after:{choice.block}: choose a block from 0 to {blocks - 2} (not the last)")
    streams = {b: block_output(graph, b) for b in candidates}
    full, features = _features(graph, calib, streams)
    classes = top1(full)
    head_macs = graph.shape(graph.outputs[0])[-1] * graph.shape(streams[candidates[0]])[-1]
    whole = sum(node_macs(graph, node) for node in graph.nodes) + head_macs
    tried = []
    for block in candidates:
        judged = cross_fitted(features[block], full.reshape(len(full), -1))
        sure = confidence(judged)
        until = _macs_until(graph, streams[block]) + head_macs
        for threshold in (THRESHOLDS if choice.auto else (choice.threshold,)):
            exits = sure >= threshold
            predicted = np.where(exits, judged.argmax(axis=-1), classes)
            fraction = float(exits.mean())
            tried.append({"block": block, "threshold": threshold, "exit_fraction": fraction,
                          "changed": float(np.mean(predicted != classes)),
                          "expected_macs": int(round(fraction * until + (1 - fraction) * whole)),
                          "macs_to_exit": int(until), "macs_full": int(whole)})
    fits = [t for t in tried if not choice.auto or t["changed"] <= tolerance]
    report = {"tolerance": tolerance, "samples": int(len(calib)),
              "compared": "top-1 class against the model without exit on the calibration data (head cross-fitted)"}
    if choice.auto:
        report["tried"] = tried
    if not fits:
        return graph, {**report, "chosen": None}
    best = min(fits, key=lambda t: (t["expected_macs"], t["changed"], -t["threshold"]))
    weight, bias = fit_head(features[best["block"]], full.reshape(len(full), -1))
    exited = add_exit(graph, best["block"], best["threshold"], weight, bias)
    return exited, {**report, **best, "chosen": f"{best['threshold']:g},after:{best['block']}"}


def _features(graph: Graph, calib: np.ndarray, streams: dict[int, str]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The model's outputs on the calibration data and, per block, the class token of the stream after it."""
    positions = {b: _class_position(graph, s) for b, s in streams.items()}
    outputs, features = [], {b: [] for b in streams}
    with progress("early exit: fitting the head", total=len(calib), unit="samples") as advance:
        for sample in calib:
            values = run(graph, {graph.inputs[0]: sample}, keep=set(streams.values()))
            outputs.append(values[graph.outputs[0]])
            for b, stream in streams.items():
                features[b].append(values[stream].reshape(-1, graph.shape(stream)[-1])[positions[b]])
            advance()
    return np.stack(outputs), {b: np.stack(f) for b, f in features.items()}
