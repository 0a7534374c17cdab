"""C spelling of names, numbers and arrays: deterministic text, so the same model always gives the same files."""

from __future__ import annotations

import re

import numpy as np

from mcu_attn.errors import UserError

# IR dtype -> C element type of an activation or constant array (int4 weights are packed into uint8_t)
CTYPES = {"float32": "float", "int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t",
          "int32": "int32_t", "uint32": "uint32_t", "int64": "int64_t", "int4": "uint8_t"}
PER_LINE = {"float": 8, "int8_t": 16, "uint8_t": 16, "int16_t": 12, "uint16_t": 12, "int32_t": 8,
            "uint32_t": 8, "int64_t": 6}


def c_float(value: float) -> str:
    """The shortest decimal that reads back as the same float32 (numpy's repr), as a C float literal."""
    as_f32 = np.float32(value)
    if not np.isfinite(as_f32):
        raise UserError(f"the model has a non-finite constant ({value}); the C code cannot hold it")
    text = repr(float(as_f32)) if as_f32 == 0 else str(as_f32)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_int(value: int, ctype: str = "int32_t") -> str:
    """An integer literal; INT32_MIN/INT64_MIN are spelled as expressions (a literal would overflow)."""
    value = int(value)
    if ctype == "int64_t":
        return f"INT64_C({value})" if value != -(2 ** 63) else "INT64_MIN"
    if value == -(2 ** 31):
        return "(-2147483647 - 1)"
    if ctype.startswith("uint") and value >= 2 ** 31:
        return f"{value}u"
    return str(value)


def c_values(values: np.ndarray, ctype: str) -> list[str]:
    flat = np.asarray(values).reshape(-1)
    if ctype == "float":
        return [c_float(v) for v in flat.astype(np.float32)]
    return [c_int(v, ctype) for v in flat.tolist()]


def c_initializer(values: np.ndarray, ctype: str, indent: str = "    ") -> str:
    """The body of a brace initializer, a fixed number of values per line."""
    items = c_values(values, ctype)
    if not items:
        return indent + "0"
    per_line = PER_LINE.get(ctype, 8)
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join(indent + line for line in lines)


class Names:
    """Unique C identifiers derived from IR value names (stable: the same request gives the same name)."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._given: dict[tuple[str, str], str] = {}

    def get(self, prefix: str, hint: str) -> str:
        key = (prefix, hint)
        if key not in self._given:
            stem = re.sub(r"[^0-9A-Za-z]+", "_", hint).strip("_")[:64] or "t"
            name = f"{prefix}{stem}"
            counter = 1
            while name in self._taken:
                counter += 1
                name = f"{prefix}{stem}_{counter}"
            self._taken.add(name)
            self._given[key] = name
        return self._given[key]


def pack_int4(weight_nk: np.ndarray) -> np.ndarray:
    """int4 values [N, K] -> uint8 [N, ceil(K/2)]: two per byte along k, low nibble = even k, odd k padded 0."""
    w = np.asarray(weight_nk, np.int64)
    if w.size and (w.min() < -8 or w.max() > 7):
        raise ValueError("int4 weights must lie in [-8, 7]")
    n, k = w.shape
    padded = np.zeros((n, k + (k % 2)), np.int64)
    padded[:, :k] = w
    nibbles = padded & 0xF
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)
