"""Tensor types of the IR.

A `TensorType` is a dtype, a fully static shape and optional `QuantParams`. Quantization parameters follow the
ONNX/TFLite convention: real = scale * (q - zero_point), per tensor (axis None, one scale) or per channel along
`axis` (one scale and zero point per channel). `bits` says how many bits the integer really uses (4 for int4
weights stored in int8 containers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "int4": np.dtype(np.int8),
    "uint4": np.dtype(np.uint8),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}


def dtype_name(dtype: np.dtype) -> str:
    """The IR name of a numpy dtype (int4 is never inferred from numpy: it is set explicitly)."""
    for name, np_dtype in DTYPES.items():
        if name not in ("int4", "uint4") and np_dtype == np.dtype(dtype):
            return name
    raise ValueError(f"dtype {dtype} has no IR equivalent")


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
