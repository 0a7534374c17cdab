"""A stable, diff-friendly text dump of an IR graph (used in tests, `inspect --ir` and bug reports)."""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph


def _attr(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_attr(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    return str(value)


def dump(graph: Graph) -> str:
    lines = [f"graph {graph.name}"]
    lines += [f"  input {name}: {graph.type(name).describe()}" for name in graph.inputs]
    lines += [f"  const {name}: {graph.type(name).describe()}" for name in sorted(graph.constants)]
    for node in graph.nodes:
        outs = ", ".join(f"{o}: {graph.type(o).describe()}" for o in node.outputs if o)
        attrs = ", ".join(f"{k}={_attr(v)}" for k, v in sorted(node.attrs.items()))
        lines.append(f"  {outs} = {node.op}({', '.join(node.inputs)})" + (f" {{{attrs}}}" if attrs else ""))
    lines.append(f"  return {', '.join(graph.outputs)}")
    return "\n".join(lines) + "\n"
