"""The pass manager: an explicit list of passes, each with the reason it exists, verified after every step.

A pass is any object with `name`, `why` and `run(graph, ctx) -> PassResult`. The manager runs them in order,
verifies the IR after each one (a broken invariant names the pass that broke it) and returns a log of every
pass's result in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mcu_attn.ir.graph import Graph
from mcu_attn.ir.verify import VerifyError, verify


@dataclass
class PassResult:
    changed: bool
    stats: dict[str, Any] = field(default_factory=dict)


class Pass(Protocol):
    name: str
    why: str

    def run(self, graph: Graph, ctx: Any) -> PassResult: ...


@dataclass
class PipelineLog:
    steps: list[tuple[str, PassResult]] = field(default_factory=list)


def run_pipeline(graph: Graph, passes: list[Pass], ctx: Any = None) -> PipelineLog:
    log = PipelineLog()
    verify(graph)
    for step in passes:
        result = step.run(graph, ctx)
        try:
            verify(graph)
        except VerifyError as err:
            raise VerifyError(f"after pass {step.name}: {err}") from None
        log.steps.append((step.name, result))
    return log
