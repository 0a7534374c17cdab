"""Run an IR graph with each op's numpy reference.

Nodes run in their (topological) order; a value is dropped as soon as its last reader has run unless the
caller asks to keep every intermediate (`keep`), which the pass tests and the per-layer comparisons use.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops import spec
from mcu_attn.progress import progress


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds converted to the graph's input dtypes; a missing input or a wrong shape is a UserError."""
    values: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise UserError(f"missing input {name!r} (the model takes {', '.join(graph.inputs)})")
        ttype = graph.type(name)
        array = np.asarray(feeds[name])
        if array.shape != ttype.shape:
            raise UserError(f"input {name!r} has shape {list(array.shape)}, the model needs {list(ttype.shape)}")
        values[name] = array.astype(ttype.np_dtype, copy=False)
    return values


def run(graph: Graph, feeds: Mapping[str, np.ndarray], keep: Iterable[str] | bool = ()) -> dict[str, np.ndarray]:
    """Outputs of `graph` (plus the values named in `keep`, or all of them when keep is True)."""
    values: dict[str, np.ndarray] = dict(graph.constants)
    values.update(check_feeds(graph, feeds))
    keep_all = keep is True
    wanted = set(graph.outputs) | (set() if keep_all else set(keep or ()))
    last_use: dict[str, int] = {}
    for position, node in enumerate(graph.nodes):
        for value in node.inputs:
            last_use[value] = position
    for position, node in enumerate(graph.nodes):
        args = [values[v] if v else None for v in node.inputs]
        results = spec(node.op).run(node, args)
        if len(results) < len([o for o in node.outputs if o]):
            raise RuntimeError(f"{node.op} {node.name} produced {len(results)} outputs, graph expects {len(node.outputs)}")
        for name, result in zip(node.outputs, results):
            if name:
                values[name] = result
        if not keep_all:
            for value in node.inputs:
                if last_use.get(value) == position and value not in wanted and value not in graph.constants:
                    values.pop(value, None)
    if keep_all:
        return values
    return {name: values[name] for name in wanted}


def run_stack(graph: Graph, samples: Sequence[np.ndarray]) -> np.ndarray:
    """The first output of `graph` for every sample of a stack (each fed to its first input), stacked on axis 0."""
    outputs = []
    with progress("reference", total=len(samples), unit="samples") as advance:
        for sample in samples:
            outputs.append(run(graph, {graph.inputs[0]: sample})[graph.outputs[0]])
            advance()
    return np.stack(outputs)
