"""A seeded, bounded fuzzer of the ONNX import path, with a differential check against onnxruntime.

Case i of seed S mutates one committed fixture model (chosen by the case's own generator, `numpy` seeded with
(S, i)) with one or two protobuf-level mutations (tensor data types, dims, raw data, values made NaN/inf/0 or scaled,
attributes set to extreme or non-UTF-8 values or removed, op types swapped, inputs rewired, nodes dropped,
graph inputs given huge, zero or symbolic dims or other element types, outputs removed, opsets moved) and, in a
sixth of the cases, byte-level mutations of the serialized model (bit flips, cut or repeated ranges,
truncation). Then `mcu_attn.api.import_model` runs on the file in a forked child process with an address-space
limit (`MEMORY_LIMIT_BYTES` above the parent's) and a CPU-time limit (`CPU_LIMIT_S`), so neither a hang nor an
allocation can escape. Outcomes:

- `clean`: a one-line `UserError` (the only acceptable failure);
- `crash`: any other exception, a multi-line UserError, a signal, or a limit hit (time or memory);
- `imported`: the differential check runs the imported graph's numpy reference and onnxruntime on the same
  seeded inputs (a QDQ model whose activation Q/DQ pairs the frontend absorbed runs in onnxruntime without
  them too, as tests/test_fixture_models.py does). They must agree within `RTOL`/`ATOL` (`agree`). When onnxruntime refuses the model, the model is
  out of spec if onnx's checker or strict shape inference rejects it, and then importing it is a failure
  (`accepted_out_of_spec`); otherwise onnxruntime lacks a kernel for something valid and there is no oracle
  (`no_oracle`). A disagreement is a failure (`disagree`), unless both sides compute NaN in the same value inside
  the model on the test input (`undefined`, counted apart: from there on ONNX leaves results to the
  implementation, e.g. QuantizeLinear of NaN); the reference's first such value is checked in onnxruntime by
  making it an output. A disagreement is also `undefined` when a value inside the model exceeds 2^64 on the test
  input (a weight mutated to 3.4e38, say): beyond that float32 squares and sums overflow, and the result depends on
  the order of evaluation, which ONNX does not fix.

`python tests/fuzz_import.py --cases N [--seed S]` prints the totals and every failure; the test suite runs a few
hundred cases by default and >= 10,000 in the `fuzz` job (`pytest -m fuzz`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_vit" / "digits_vit.onnx"
MEMORY_LIMIT_BYTES = 2 << 30   # address space a case may add to the parent's (2 GiB)
CPU_LIMIT_S = 20               # CPU seconds per case (an import takes ~0.1-0.4 s; the slack absorbs a busy host)
WALL_LIMIT_S = 300             # wall-clock backstop when the host is starved
RTOL, ATOL = 1e-3, 1e-4        # float32 in another summation order (and erf/exp from other libraries), amplified
#                                by at most ~100x through a mutated model's blocks: 1e-3 relative still catches a
#                                wrong op, axis or operand, which moves outputs by O(1)

FAILURES = ("crash", "disagree", "accepted_out_of_spec")
ELEM_TYPES = (TensorProto.STRING, TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2,
              TensorProto.COMPLEX64, TensorProto.COMPLEX128, TensorProto.UNDEFINED, 99, TensorProto.FLOAT16,
              TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT4, TensorProto.BOOL, TensorProto.UINT8)
EXTREME_INTS = (0, -1, 1, 2, 3, 7, 65536, 2 ** 31, -(2 ** 31), 2 ** 62)
EXTREME_FLOATS = (float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e30, 1e-30, 3.4e38)
OP_TYPES = ("Add", "Sub", "Mul", "Div", "Relu", "Softmax", "Transpose", "MatMul", "Identity", "Sqrt", "Reshape",
            "LayerNormalization", "Gelu", "Erf", "Tanh", "ReduceMean", "Concat", "Gather", "Slice", "Where",
            "Cast", "Expand", "Pow", "Neg", "Exp", "Log", "Frobnicate")
# op swaps that keep a model valid more often than not: the differential check then compares real semantics
OP_FAMILIES = (("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"),
               ("Relu", "Tanh", "Sigmoid", "Erf", "Neg", "Abs", "Exp", "Sqrt", "Identity", "Softmax", "Gelu"))
DIMS = (0, 1, 2, 3, 17, 65536, 2 ** 31 - 1, -1)


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.onnx")) + [EXAMPLE]


# ---- mutations ----------------------------------------------------------------------------------------------

def _tensors(model: onnx.ModelProto) -> list[TensorProto]:
    found = list(model.graph.initializer)
    for node in model.graph.node:
        found += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    return found


def _decoded(tensor: TensorProto) -> np.ndarray | None:
    """The tensor's values, or None when an earlier mutation left them undecodable."""
    try:
        return onnx.numpy_helper.to_array(tensor).copy()
    except Exception:  # noqa: BLE001  (onnx raises several types for a broken tensor)
        return None


def _mutate_tensor(tensor: TensorProto, rng: np.random.Generator) -> str:
    choice = rng.integers(5)
    if choice == 4:  # a plausible weight change: the model stays valid and the differential check compares it
        array = _decoded(tensor)
        if array is None or array.dtype.kind != "f" or array.size == 0:
            return "no-op"
        factor = float(rng.choice((-1.0, 0.5, 2.0, 1.001, 10.0)))
        with np.errstate(all="ignore"):
            scaled = (array * factor).astype(array.dtype)
        tensor.CopyFrom(onnx.numpy_helper.from_array(scaled, tensor.name))
        return f"tensor {tensor.name!r} scaled by {factor}"
    if choice == 0:
        tensor.data_type = int(rng.choice(ELEM_TYPES))
        return f"tensor {tensor.name!r} data_type {tensor.data_type}"
    if choice == 1:
        dims = list(tensor.dims)
        action = rng.integers(4)
        if action == 0 and dims:
            dims[rng.integers(len(dims))] = int(rng.choice(DIMS))
        elif action == 1:
            dims.append(int(rng.choice(DIMS)))
        elif action == 2 and dims:
            dims.pop(rng.integers(len(dims)))
        else:
            dims = []
        del tensor.dims[:]
        tensor.dims.extend(dims)
        return f"tensor {tensor.name!r} dims {dims}"
    if choice == 2 and tensor.raw_data:
        raw = tensor.raw_data
        cut = int(rng.integers(len(raw) + 1))
        tensor.raw_data = raw[:cut] if rng.random() < 0.5 else raw + rng.bytes(int(rng.integers(1, 64)))
        return f"tensor {tensor.name!r} raw_data {len(raw)} -> {len(tensor.raw_data)} bytes"
    array = _decoded(tensor)
    if array is None or array.size == 0 or array.dtype.kind not in "fiu":
        return "no-op"
    flat = array.reshape(-1)
    positions = rng.integers(flat.size, size=int(rng.integers(1, 4)))
    value = float(rng.choice(EXTREME_FLOATS)) if array.dtype.kind == "f" else int(rng.choice((0, -1, 127, 2 ** 31 - 1)))
    try:
        with np.errstate(all="ignore"):
            flat[positions] = value
    except (OverflowError, ValueError):
        flat[positions] = 0
    tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    return f"tensor {tensor.name!r} values {value} at {positions.tolist()}"


def _mutate_attribute(node: onnx.NodeProto, rng: np.random.Generator) -> str:
    if not node.attribute or rng.random() < 0.15:
        name = str(rng.choice(("axis", "perm", "epsilon", "block_size", "to", "keepdims", "bogus")))
        node.attribute.append(onnx.helper.make_attribute(name, int(rng.choice(EXTREME_INTS))))
        return f"node {node.name!r} +attribute {name}"
    attr = node.attribute[int(rng.integers(len(node.attribute)))]
    if rng.random() < 0.15:
        node.attribute.remove(attr)
        return f"node {node.name!r} -attribute {attr.name}"
    kind = attr.type
    plausible = rng.random() < 0.5
    if kind == onnx.AttributeProto.INT:
        attr.i = int(rng.integers(-2, 4)) if plausible else int(rng.choice(EXTREME_INTS))
    elif kind == onnx.AttributeProto.FLOAT:
        attr.f = float(rng.choice((0.5, 2.0, 1e-3, 1e-6))) if plausible else float(rng.choice(EXTREME_FLOATS))
    elif kind == onnx.AttributeProto.INTS and attr.ints:
        values = list(attr.ints)
        action = rng.integers(3)
        if action == 0:
            values[rng.integers(len(values))] = int(rng.choice(EXTREME_INTS))
        elif action == 1:
            values = [int(v) for v in rng.permutation(values)] + ([values[0]] if rng.random() < 0.5 else [])
        else:
            values = values[:-1]
        del attr.ints[:]
        attr.ints.extend(values)
    elif kind == onnx.AttributeProto.STRING:
        attr.s = bytes(rng.choice((b"\xff\xfe\xfd", b"", b"tanh", b"none", b"\xc3")))
    elif kind == onnx.AttributeProto.TENSOR:
        return _mutate_tensor(attr.t, rng)
    else:
        return "no-op"
    return f"node {node.name!r} attribute {attr.name}"


def _mutate_graph(model: onnx.ModelProto, rng: np.random.Generator) -> str:
    graph = model.graph
    choice = int(rng.integers(11))
    nodes = list(graph.node)
    node = nodes[int(rng.integers(len(nodes)))] if nodes else None
    if choice <= 2:
        tensors = _tensors(model)
        return _mutate_tensor(tensors[int(rng.integers(len(tensors)))], rng) if tensors else "no-op"
    if choice <= 4 and node is not None:
        return _mutate_attribute(node, rng)
    if choice == 5 and node is not None:
        family = next((f for f in OP_FAMILIES if node.op_type in f), None)
        node.op_type = str(rng.choice(family if family and rng.random() < 0.7 else OP_TYPES))
        return f"node {node.name!r} op_type {node.op_type}"
    if choice == 6 and node is not None and node.input:
        values = [v for n in nodes for v in n.output] + [t.name for t in graph.initializer] + \
                 [i.name for i in graph.input]
        position = int(rng.integers(len(node.input)))
        action = rng.integers(3)
        if action == 0:
            node.input[position] = str(rng.choice(values))
        elif action == 1 and len(node.input) > 1:
            node.input[0], node.input[-1] = node.input[-1], node.input[0]
        else:
            del node.input[position]
        return f"node {node.name!r} inputs {list(node.input)}"
    if choice == 7 and node is not None:
        graph.node.remove(node)
        return f"removed node {node.name!r}"
    if choice == 8 and graph.input:
        value = graph.input[int(rng.integers(len(graph.input)))]
        tensor_type = value.type.tensor_type
        if rng.random() < 0.3:
            tensor_type.elem_type = int(rng.choice(ELEM_TYPES))
            return f"input {value.name!r} elem_type {tensor_type.elem_type}"
        dims = tensor_type.shape.dim
        if dims:
            dim = dims[int(rng.integers(len(dims)))]
            if rng.random() < 0.3:
                dim.dim_param = "n"
            else:
                dim.dim_value = int(rng.choice((0, 2, 65536, 2 ** 31)))
        return f"input {value.name!r} dims {[d.dim_value or d.dim_param for d in dims]}"
    if choice == 9:
        if rng.random() < 0.5:
            del graph.output[:]
            return "removed every output"
        if not graph.output:
            return "no-op"
        graph.output[0].name = str(rng.choice([v for n in nodes for v in n.output] or ["nowhere"]))
        return f"output is {graph.output[0].name!r}"
    if model.opset_import:
        opset = model.opset_import[0]
        opset.version = int(rng.choice((7, 11, 13, opset.version - 1, opset.version + 1, 25)))
        return f"opset {opset.version}"
    return "no-op"


def _mutate_bytes(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    data = bytearray(data)
    choice = rng.integers(4)
    if choice == 0:
        for position in rng.integers(len(data), size=int(rng.integers(1, 8))):
            data[position] ^= 1 << int(rng.integers(8))
        return bytes(data), "bit flips"
    start = int(rng.integers(len(data)))
    length = int(rng.integers(1, 256))
    if choice == 1:
        return bytes(data[:start] + data[start + length:]), f"cut {length} bytes at {start}"
    if choice == 2:
        return bytes(data[:start] + data[start:start + length] + data[start:]), f"repeated {length} bytes at {start}"
    return bytes(data[:start]), f"truncated to {start} bytes"


def make_case(seed: int, index: int, sources: list[Path]) -> tuple[bytes, str, list[str]]:
    """(model bytes, source name, what was mutated) of case `index`."""
    rng = np.random.default_rng((seed, index))
    source = sources[int(rng.integers(len(sources)))]
    model = onnx.load(source)
    steps = [_mutate_graph(model, rng) for _ in range(int(rng.integers(1, 3)))]
    data = model.SerializeToString()
    if rng.random() < 0.15:
        data, step = _mutate_bytes(data, rng)
        steps.append(step)
    return data, source.name, steps


# ---- one case in a child process --------------------------------------------------------------------------

def _feeds(graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name in graph.inputs:
        ttype = graph.type(name)
        if ttype.np_dtype.kind == "f":
            feeds[name] = rng.standard_normal(ttype.shape).astype(ttype.np_dtype)
        elif ttype.np_dtype.kind == "b":
            feeds[name] = rng.random(ttype.shape) < 0.5
        else:
            feeds[name] = rng.integers(0, 4, ttype.shape).astype(ttype.np_dtype)
    return feeds


def _out_of_spec(model_bytes: bytes) -> str | None:
    """Why onnx itself rejects the model (checker or strict shape inference), or None."""
    try:
        model = onnx.load_from_string(model_bytes)
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # onnx raises several types
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return None


def _agree(ours: np.ndarray, theirs: np.ndarray) -> bool:
    if ours.shape != theirs.shape:
        return False
    ours64, theirs64 = ours.astype(np.float64), theirs.astype(np.float64)
    same_special = np.isnan(ours64) == np.isnan(theirs64)
    finite = np.isfinite(ours64) & np.isfinite(theirs64)
    if not same_special.all() or not np.array_equal(ours64[~finite & ~np.isnan(ours64)],
                                                       theirs64[~finite & ~np.isnan(theirs64)]):
        return False
    return bool(np.all(np.abs(ours64[finite] - theirs64[finite]) <= ATOL + RTOL * np.abs(theirs64[finite])))


def _differential(path: str, model_bytes: bytes, graph) -> dict:
    from mcu_attn.reference.interpreter import run

    from support import without_activation_qdq

    feeds = _feeds(graph, np.random.default_rng(0))
    try:
        oracle = model_bytes
        if graph.meta.get("qdq_activation_qparams"):  # the reference runs a QDQ model without its activation pairs
            oracle = without_activation_qdq(path)
        expected = _onnxruntime(oracle, feeds)
    except Exception as err:  # onnxruntime raises its own exception types for invalid models
        reason = _out_of_spec(model_bytes)
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        if reason:
            return {"outcome": "accepted_out_of_spec", "detail": f"{reason} (onnxruntime: {detail})"}
        return {"outcome": "no_oracle", "detail": detail}
    with np.errstate(all="ignore"):
        got = run(graph, feeds, keep=True)
    for name in graph.outputs:
        if name not in expected or not _agree(np.asarray(got[name]), np.asarray(expected[name])):
            broken = _first_nan(oracle, got)
            if broken is not None and np.isnan(_onnxruntime(oracle, feeds, broken)[broken]).any():
                # both sides computed NaN at the same value (a negative base to a fractional Pow, say): what
                # follows, e.g. QuantizeLinear of NaN, is left to the implementation
                return {"outcome": "undefined", "detail": f"{broken!r} holds NaN on the test input"}
            huge = _first_huge(oracle, got)
            if huge is not None:
                return {"outcome": "undefined", "detail": f"{huge!r} exceeds 2^64 on the test input"}
            return {"outcome": "disagree", "detail": f"output {name!r}"}
    return {"outcome": "agree"}


def _onnxruntime(model_bytes: bytes, feeds: dict, extra: str | None = None) -> dict[str, np.ndarray]:
    """onnxruntime's outputs of the model (and of the value `extra`, made an output) on `feeds`."""
    import onnxruntime as ort

    if extra is not None:
        model = onnx.load_from_string(model_bytes)
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(extra))
        model_bytes = model.SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _first_value(model_bytes: bytes, values: dict, holds) -> str | None:
    """The first value a node of the model computes (in the reference's order) whose float data `holds`."""
    produced = {out for node in onnx.load_from_string(model_bytes).graph.node for out in node.output}
    with np.errstate(invalid="ignore"):
        return next((name for name, value in values.items() if name in produced
                     and np.asarray(value).dtype.kind == "f" and holds(np.asarray(value))), None)


def _first_nan(model_bytes: bytes, values: dict) -> str | None:
    """The first value that holds NaN in the reference."""
    return _first_value(model_bytes, values, lambda value: np.isnan(value).any())


def _first_huge(model_bytes: bytes, values: dict) -> str | None:
    """The first value that exceeds 2^64 in magnitude in the reference: there its squares and sums overflow
    float32, and the result depends on the order of evaluation (a LayerNorm's variance in float32 or, as
    onnxruntime keeps it, float64; a bias added before or after a product)."""
    return _first_value(model_bytes, values, lambda value: (np.abs(value) > 2.0 ** 64).any())


def _child(model_bytes: bytes, scratch: str, write_fd: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 5))
    with open("/proc/self/statm") as stream:
        used = int(stream.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_LIMIT_BYTES, used + MEMORY_LIMIT_BYTES))
    import warnings

    from mcu_attn.api import import_model
    from mcu_attn.errors import UserError

    path = os.path.join(scratch, "case.onnx")
    with open(path, "wb") as stream:
        stream.write(model_bytes)
    result: dict
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            graph = import_model(path)
        except UserError as err:
            message = str(err)
            result = {"outcome": "clean" if message and "\n" not in message else "crash", "detail": message}
        except BaseException as err:  # noqa: BLE001  (every other exception is what the fuzzer looks for)
            frames = traceback.extract_tb(err.__traceback__)[-3:]
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
            result = {"outcome": "crash", "detail": f"{type(err).__name__}: {str(err)[:300]} [{where}]"}
        else:
            try:
                result = _differential(path, model_bytes, graph)
            except BaseException as err:  # noqa: BLE001
                result = {"outcome": "crash", "detail": f"differential: {type(err).__name__}: {str(err)[:300]}"}
    result["warnings"] = len(caught)
    os.write(write_fd, json.dumps(result).encode())
    os.close(write_fd)


def run_case(model_bytes: bytes) -> dict:
    """Import `model_bytes` in a forked child with memory and CPU limits; the outcome."""
    import select
    import time

    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryDirectory(prefix="mcu-attn-fuzz-") as scratch:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 0
            try:
                os.close(read_fd)
                _child(model_bytes, scratch, write_fd)
            except BaseException:  # noqa: BLE001
                code = 1
            os._exit(code)
        os.close(write_fd)
        chunks = []
        deadline = time.monotonic() + WALL_LIMIT_S
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                chunks = []
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        why = {"SIGXCPU": f"CPU limit {CPU_LIMIT_S} s", "SIGKILL": "killed (wall limit or memory)"}.get(name, name)
        return {"outcome": "crash", "detail": f"child died: {why}", "warnings": 0}
    return {"outcome": "crash", "detail": f"child exited {os.WEXITSTATUS(status)} without a result", "warnings": 0}


# ---- a run ----------------------------------------------------------------------------------------------------

@dataclass
class Totals:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    warnings: int = 0
    failures: list[dict] = field(default_factory=list)
    messages: Counter = field(default_factory=Counter)

    def add(self, index: int, source: str, steps: list[str], result: dict) -> None:
        self.cases += 1
        self.outcomes[result["outcome"]] += 1
        self.warnings += int(result.get("warnings", 0) > 0)
        if result["outcome"] == "clean":
            self.messages[_message_class(result["detail"])] += 1
        if result["outcome"] in FAILURES:
            self.failures.append({"case": index, "source": source, "mutations": steps, **result})

    def summary(self) -> dict:
        return {"cases": self.cases, **{k: self.outcomes.get(k, 0) for k in
                                       ("clean", "crash", "agree", "disagree", "accepted_out_of_spec", "no_oracle",
                                        "undefined")},
                "cases_with_warnings": self.warnings}


def _message_class(message: str) -> str:
    """The error's kind with names and numbers left out (for the table of clean errors)."""
    import re

    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message.split(": ", 1)[-1] if message.startswith("/") else message)
    return re.sub(r"\d+", "N", text)[:90]


def fuzz(cases: int, seed: int = 0, start: int = 0, progress: bool = False) -> Totals:
    import mcu_attn.api  # noqa: F401  (imported once here, so every forked case starts warm)
    import onnxruntime  # noqa: F401

    sources = fixtures()
    totals = Totals()
    for index in range(start, start + cases):
        data, source, steps = make_case(seed, index, sources)
        totals.add(index, source, steps, run_case(data))
        if progress and (index - start + 1) % 100 == 0:
            print(f"{index - start + 1}/{cases} {totals.summary()}", file=sys.stderr, flush=True)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--messages", action="store_true", help="also list the clean errors by kind")
    args = parser.parse_args(argv)
    totals = fuzz(args.cases, args.seed, args.start, progress=True)
    print(json.dumps(totals.summary()))
    if args.messages:
        for message, count in totals.messages.most_common():
            print(f"{count:6d}  {message}")
    for failure in totals.failures:
        print(json.dumps(failure))
    return 1 if totals.failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
