"""Sample stacks (.npy, samples along axis 0) and how they feed a model whose batch dimension is 1.

A stack holds real numbers: integers or floats (bool, complex, datetime, text, records and objects are refused
when the file is read), finite in float32, the type every float model computes in. Labels are one integer class
per sample, each a class of the model's output (its last axis).
"""

from __future__ import annotations

import os

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph


def load_stack(path: str | os.PathLike, what: str) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{what} file {path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise UserError(f"{what} file {path}: not a .npy array ({type(err).__name__})") from None
    if not isinstance(array, np.ndarray) or array.ndim == 0 or array.shape[0] == 0:
        raise UserError(f"{what} file {path}: expected a non-empty stack of samples along axis 0")
    if array.dtype.kind not in "iuf":
        kind = _KINDS.get(array.dtype.kind, "non-numeric")
        raise UserError(f"{what} file {path}: holds {kind} values ({array.dtype}); expected real numbers "
                        "(integers or floats)")
    return array


_KINDS = {"b": "bool", "c": "complex", "M": "datetime", "m": "timedelta", "U": "str (text)", "S": "bytes (text)",
          "V": "structured (record)", "O": "object"}
FLOAT32_MAX = float(np.finfo(np.float32).max)


def sample_shape(graph: Graph) -> tuple[int, ...]:
    if len(graph.inputs) != 1:
        raise UserError(f"the model has {len(graph.inputs)} inputs; data files feed single-input models")
    return graph.shape(graph.inputs[0])


def check_stack(graph: Graph, data: np.ndarray, what: str) -> np.ndarray:
    """The stack reshaped to [N, *input shape]; samples may omit the batch dimension of 1. A model that takes
    integers (token ids) gets integers that fit its input type, in that type."""
    shape = sample_shape(graph)
    if data.shape[1:] == shape[1:] and shape[:1] == (1,):
        data = data.reshape((data.shape[0],) + shape)
    if data.shape[1:] != shape:
        raise UserError(f"{what}: samples have shape {list(data.shape[1:])}, the model input "
                        f"{graph.inputs[0]!r} needs {list(shape)} (or {list(shape[1:])} without the batch)")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise UserError(f"{what}: contains NaN or infinity")
    wanted = graph.type(graph.inputs[0]).np_dtype
    if np.issubdtype(wanted, np.integer) and wanted != np.int8:
        if not np.issubdtype(data.dtype, np.integer):
            raise UserError(f"{what}: the model input {graph.inputs[0]!r} takes integer token ids, the file holds "
                            f"{data.dtype}")
        limits = np.iinfo(wanted)
        if data.size and (data.min() < limits.min or data.max() > limits.max):
            raise UserError(f"{what}: ids outside the {wanted} range of input {graph.inputs[0]!r}")
        return data.astype(wanted)
    if data.size and np.abs(data).max() > FLOAT32_MAX:
        raise UserError(f"{what}: values reach {float(np.abs(data).max()):.3g}, beyond the float32 range the model "
                        f"computes in (|x| <= {FLOAT32_MAX:.3g})")
    return data


def model_samples(graph: Graph, data: np.ndarray, what: str) -> np.ndarray:
    """`check_stack`, with float samples as float32 (what the float reference and calibration run on)."""
    data = check_stack(graph, data, what)
    return data.astype(np.float32) if np.issubdtype(data.dtype, np.floating) else data


def random_samples(graph: Graph, count: int) -> np.ndarray:
    """Seeded stand-in samples: standard normal floats, or token ids spread over the smallest embedding table
    the input indexes."""
    rng = np.random.default_rng(0)
    name = graph.inputs[0]
    shape = (count,) + graph.shape(name)
    ttype = graph.type(name)
    if not np.issubdtype(ttype.np_dtype, np.integer) or ttype.dtype == "int8":
        return rng.standard_normal(shape).astype(np.float32)
    tables = [graph.shape(r.inputs[1])[0] for r in graph.consumers(name) if r.op == "Embedding"]
    return rng.integers(0, min(tables) if tables else 2, size=shape).astype(ttype.np_dtype)


def load_labels(path: str | os.PathLike, count: int) -> np.ndarray:
    labels = load_stack(path, "labels")
    labels = labels.reshape(labels.shape[0], -1)
    if labels.shape[1] != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"labels file {os.fspath(path)}: expected one integer class per sample")
    if labels.shape[0] != count:
        raise UserError(f"labels file {os.fspath(path)}: {labels.shape[0]} labels for {count} samples")
    return labels[:, 0]


def check_labels(labels: np.ndarray, classes: int) -> None:
    """Every label is a class of an output with `classes` scores on its last axis."""
    outside = labels[(labels < 0) | (labels >= classes)]
    if outside.size:
        raise UserError(f"labels: {int(outside[0])} is not a class of the model's output ({classes} classes: "
                        f"0..{classes - 1}); {outside.size} labels are outside")


def top1(outputs: np.ndarray) -> np.ndarray:
    """The predicted class of each sample from class scores [N, ..., classes] (the last axis is the class axis;
    the first position of the middle axes counts)."""
    return outputs.reshape(outputs.shape[0], -1, outputs.shape[-1])[:, 0, :].argmax(axis=-1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class scores [N, ..., classes] (the last axis is the class axis)."""
    return float(np.mean(top1(outputs) == labels))
