"""`--token-prune K[,after:B] | auto`: after block B's attention, keep the class token and the K tokens it attends
to most; the rest of the model runs on K + 1 tokens (docs/dynamic.md).

1. Where: a `TokenSelect` node (ir/ops/token_select.py) right after the residual Add of block B's attention
   (passes/blocks.py), scored by that attention's own q and k. The block's MLP and every later block then run on
   K + 1 tokens; the sequence length is static, so the memory plan is exact for every input (the arena of the
   pruned layers shrinks with them) and the work saved is the same for every input.
2. What must hold: the output reads one class token; every attention from block B on is dense, not causal and
   unmasked (pruned tokens would break a window, a causal order or a mask); nothing after the cut depends on the
   sequence length (a Reshape to a fixed shape, a per-position constant): such a node is named in the error.
   The nodes after the cut are retyped from their references; the class token is moved to position 0.
3. `auto`, for every block that can be pruned, finds the smallest K of 0, 1, 2, 3, 4, 6, 8, 12, ... (below
   S - 1) whose top-1 class on the calibration data differs from the unpruned model's on at most `tolerance` of
   the samples, by bisection (agreement grows with K, so about log2 of the candidates are run), and keeps the
   block whose choice has the fewest MACs. The part of the model before the cuts runs once (the candidates
   share it); each candidate runs only what follows its cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mcu_attn.data import top1
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import node_macs
from mcu_attn.ir.ops.attention import node_pattern
from mcu_attn.ir.verify import verify
from mcu_attn.passes.blocks import attention_nodes, attention_residual, class_token, position, retype
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run


@dataclass(frozen=True)
class PruneChoice:
    auto: bool
    keep: int = 0
    block: int = 0

    @staticmethod
    def parse(text: str) -> "PruneChoice":
        if text == "auto":
            return PruneChoice(True)
        match = re.fullmatch(r"(\d+)(?:,after:(\d+))?", text)
        if not match:
            raise UserError(f"--token-prune {text!r}: expected auto, K or K,after:B (K tokens kept besides the class "
                            f"token after the attention of block B, default 0)")
        return PruneChoice(False, int(match.group(1)), int(match.group(2) or 0))


def macs(graph: Graph) -> int:
    return sum(node_macs(graph, node) for node in graph.nodes)


def prune_tokens(graph: Graph, block: int, keep: int) -> Graph:
    """A copy of `graph` with a TokenSelect keeping `keep` tokens besides the class token after block `block`'s
    attention (see the module docstring)."""
    graph = graph.copy()
    blocks = attention_nodes(graph)
    if not 0 <= block < len(blocks):
        raise UserError(f"--token-prune after:{block}: the model has {len(blocks)} attention blocks "
                        f"(0 to {len(blocks) - 1})")
    for later in blocks[block:]:
        masked = len(later.inputs) > 3 and bool(later.inputs[3])
        if not node_pattern(later).dense or node_pattern(later).causal or masked:
            raise UserError(f"--token-prune: attention '{later.name}' is local, causal or masked; pruning tokens "
                            f"before it would change which keys each query sees (dense attention only)")
    for later in blocks[block:]:
        if graph.shape(later.inputs[1])[-2] != graph.shape(later.inputs[0])[-2]:
            raise UserError(f"--token-prune: attention '{later.name}' attends to keys projected along the sequence "
                            f"(linformer), fitted for its full length (dense attention only)")
    gather, cls = class_token(graph)
    attention = blocks[block]
    residual = attention_residual(graph, attention)
    stream = residual.outputs[0]
    seq = graph.shape(stream)[-2]
    if not 0 <= keep < seq - 1:
        raise UserError(f"--token-prune {keep}: keep fewer than {seq - 1} of the {seq - 1} tokens besides the class "
                        f"token")
    if stream in graph.outputs:
        raise UserError(f"--token-prune: {stream!r} is a model output")
    kept = graph.fresh(f"{attention.name}_tokens")
    select = Node("TokenSelect", [stream, attention.inputs[0], attention.inputs[1]], [kept],
                  {"heads": int(attention.attrs["heads"]), "head_dim": int(attention.attrs["head_dim"]),
                   "scale": float(attention.attr("scale", 1.0)), "keep": keep, "cls": cls},
                  f"{attention.name}/token_select")
    for reader in graph.consumers(stream):
        graph.set_inputs(reader, [kept if v == stream else v for v in reader.inputs])
    graph.insert_after(residual, [select])
    graph.set_inputs(gather, [gather.inputs[0], graph.add_const(f"{gather.name}_class_token", np.array(0, np.int64))])
    retype(graph, graph.nodes[position(graph, select):], "--token-prune", "the sequence length after the cut")
    graph.prune_unused()
    verify(graph)
    return graph


def _tail(graph: Graph, start: int) -> Graph:
    """The nodes of `graph` from index `start` on, as a graph whose inputs are the values they read from before."""
    tail = graph.copy()
    nodes = tail.nodes[start:]
    defined = {o for node in nodes for o in node.outputs}
    tail.inputs = sorted({v for node in nodes for v in node.inputs
                          if v and v not in defined and v not in tail.constants})
    tail.set_nodes(nodes)
    return tail


def _keeps(seq: int) -> list[int]:
    """K candidates below seq - 1: 0, 1, 2, 3, 4, 6, 8, 12, ... (powers of two and 1.5 times them)."""
    return sorted({0} | {k for i in range(17) for k in (2 ** i, 3 * 2 ** i) if k < seq - 1})


def choose(graph: Graph, calib: np.ndarray, choice: PruneChoice, tolerance: float) -> tuple[Graph, dict]:
    """The pruned graph and the report: what was kept, its MACs, and (auto) every candidate tried."""
    if calib is None:
        raise UserError("--token-prune chooses and calibrates on calibration data: pass --calib C.npy")
    base = macs(graph)
    report = {"tolerance": tolerance, "samples": int(len(calib)), "macs_unpruned": base,
              "compared": "top-1 class against the unpruned model on the calibration data"}
    blocks = [choice.block]
    if choice.auto:
        blocks = [b for b, node in enumerate(attention_nodes(graph)) if _prunable(graph, b)]
        if not blocks:
            return graph, {**report, "chosen": None, "macs": base, "tried": [],
                           "note": "no block is followed only by dense attention"}
    reference, cut_values = _prefix(graph, calib, blocks)
    tried: list[dict] = []
    pruned_graphs: dict[tuple[int, int], Graph] = {}

    def judge(block: int, keep: int) -> dict:
        pruned = pruned_graphs[(block, keep)] = prune_tokens(graph, block, keep)
        tail = _tail(pruned, _select_index(pruned))
        outputs = np.stack([run(tail, {v: values[v] for v in tail.inputs})[tail.outputs[0]]
                            for values in cut_values])
        entry = {"block": block, "keep": keep, "macs": macs(pruned),
                 "changed": float(np.mean(top1(outputs) != top1(reference)))}
        tried.append(entry)
        return entry

    with progress("token pruning candidates", total=None if choice.auto else 1, unit="candidates") as advance:
        for block in blocks:
            if not choice.auto:
                judge(block, choice.keep)
                advance()
                continue
            keeps = _keeps(graph.shape(attention_nodes(graph)[block].inputs[0])[-2])
            low, high = 0, len(keeps)   # bisection for the smallest K within tolerance (agreement grows with K)
            while low < high:
                middle = (low + high) // 2
                entry = judge(block, keeps[middle])
                advance(note=f"after block {block}, keep {keeps[middle]}: top-1 changed on {entry['changed']:.3f}")
                low, high = (low, middle) if entry["changed"] <= tolerance else (middle + 1, high)
    fits = [t for t in tried if not choice.auto or t["changed"] <= tolerance]
    if choice.auto:
        report["tried"] = tried
    if not fits:
        return graph, {**report, "chosen": None, "macs": base}
    best = min(fits, key=lambda t: (t["macs"], t["changed"]))
    return pruned_graphs[(best["block"], best["keep"])], {
        **report, "chosen": f"{best['keep']},after:{best['block']}", "block": best["block"], "keep": best["keep"],
        "macs": best["macs"], "changed": best["changed"]}


def _prunable(graph: Graph, block: int) -> bool:
    try:
        prune_tokens(graph, block, 0)
    except UserError:
        return False
    return True


def _select_index(graph: Graph) -> int:
    return next(i for i, node in enumerate(graph.nodes) if node.op == "TokenSelect")


def _prefix(graph: Graph, calib: np.ndarray, blocks: list[int]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """The unpruned outputs on the calibration data and, per sample, the values the pruned tails read (the
    values of the part before the cut, which every candidate of a block shares)."""
    needed: set[str] = set()
    for block in blocks:
        pruned = prune_tokens(graph, block, 0)
        needed.update(_tail(pruned, _select_index(pruned)).inputs)
    outputs, values = [], []
    with progress("token pruning: unpruned model", total=len(calib), unit="samples") as advance:
        for sample in calib:
            result = run(graph, {graph.inputs[0]: sample}, keep=needed)
            outputs.append(result[graph.outputs[0]])
            values.append({name: result[name] for name in needed})
            advance()
    return np.stack(outputs), values
