"""Tensor types of the IR.

A `TensorType` is a dtype, a fully static shape and optional `QuantParams`. Quantization parameters follow the
ONNX/TFLite convention: real = scale * (q - zero_point), per tensor (axis None, one scale) or per channel along
`axis` (one scale and zero point per channel). `bits` says how many bits the integer really uses (4 for int4
weights stored in int8 containers).

Sub-byte integers (int4, uint4, int2, uint2) have two array forms. Values read from ONNX arrive as ml_dtypes
arrays (what onnx's numpy_helper returns); their numpy dtype carries the type, so references keep exact ranges
and casts. Passes may instead hold them in int8/uint8 containers (`DTYPES`), typed explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "int4": np.dtype(np.int8),
    "uint4": np.dtype(np.uint8),
    "int2": np.dtype(np.int8),
    "uint2": np.dtype(np.uint8),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}
SUB_BYTE: dict[str, np.dtype] = {"int4": np.dtype(ml_dtypes.int4), "uint4": np.dtype(ml_dtypes.uint4),
                                 "int2": np.dtype(ml_dtypes.int2), "uint2": np.dtype(ml_dtypes.uint2)}


def dtype_name(dtype: np.dtype) -> str:
    """The IR name of a numpy dtype; an int8/uint8 container is int8/uint8 (its sub-byte type is set explicitly)."""
    for name, np_dtype in SUB_BYTE.items():
        if np_dtype == np.dtype(dtype):
            return name
    for name, np_dtype in DTYPES.items():
        if name not in SUB_BYTE and np_dtype == np.dtype(dtype):
            return name
    raise ValueError(f"dtype {dtype} has no IR equivalent")


def value_dtype(name: str) -> np.dtype:
    """The numpy dtype that holds values of IR dtype `name` exactly (ml_dtypes for sub-byte integers)."""
    return SUB_BYTE.get(name, DTYPES[name])


@dataclass(frozen=True)
class QuantParams:
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None
    bits: int = 8

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.zero_point):
            raise ValueError("scale and zero_point must have the same length")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("per-tensor quantization has exactly one scale")
        if any(not (s > 0 and np.isfinite(s)) for s in self.scale):
            raise ValueError(f"quantization scales must be finite and positive, got {self.scale}")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def describe(self) -> str:
        if self.axis is None:
            return f"q{self.bits}(s={self.scale[0]:.6g},zp={self.zero_point[0]})"
        return f"q{self.bits}(axis={self.axis},{len(self.scale)} ch)"


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[int, ...]
    quant: QuantParams | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}")
        if any((not isinstance(d, int)) or d < 0 for d in self.shape):
            raise ValueError(f"shape must be static non-negative ints, got {self.shape}")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    def describe(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        quant = f" {self.quant.describe()}" if self.quant else ""
        return f"{self.dtype}[{dims}]{quant}"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(dtype_name(array.dtype), tuple(int(d) for d in array.shape))
