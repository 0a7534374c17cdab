"""What `simulate` accepts in a build directory's report.json, checked before any value is used.

report.json is written by `mcu-attn build`, but it is a file anyone can edit, so each field `simulate` reads
must have the type and range a build writes; anything else is one error naming the field:
- `target`: a string (the target table decides whether it exists); `bits`: 8, 4 or 32;
- `input`, `output`: `dtype` int8 or float32, `shape` a non-empty list of positive whole numbers at most
  `MAX_TENSOR_BYTES` in all, `scale` a finite number > 0 and `zero_point` a whole number in the int8 range
  (both required for int8, absent or null for float32);
- `elf`: null or a relative path inside the directory; `model`, `calib`: null or text; `*_sha256`: null or 64
  hex digits; `macs`: null or a whole number >= 0;
- `layers`: a list of objects whose `name`, `symbol` and `op` are text or null and `macs` a whole number >= 0 or
  null; `options`: an object (its keys are checked by `BuildOptions.from_record`) whose known fields have the
  types `BuildOptions` gives them.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath, PureWindowsPath

from mcu_attn.errors import UserError
from mcu_attn.frontend.graph_checks import MAX_TENSOR_BYTES

ITEM_BYTES = {"int8": 1, "float32": 4, "int32": 4}
_OPTION_TYPES = {"bits": (int,), "calib": (str, type(None)), "attention": (str, type(None)),
                 "tolerance": (int, float, type(None)), "sram_budget": (int, type(None)),
                 "query_tile": (int, type(None)), "check_samples": (int,), "prefix": (str,)}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _whole(value, low: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)


def _text_or_null(value) -> bool:
    return value is None or isinstance(value, str)


def _tensor(entry, key: str, where: str) -> None:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: {key!r} must be an object with dtype and shape")
    dtype, shape = entry.get("dtype"), entry.get("shape")
    if dtype not in ITEM_BYTES:
        raise UserError(f"{where}: {key}.dtype {dtype!r} is not one a build writes (int8, float32, or int32 token ids)")
    if not isinstance(shape, list) or not shape or not all(_whole(d, 1) for d in shape):
        raise UserError(f"{where}: {key}.shape {shape!r} is not a list of positive whole numbers")
    if math.prod(shape) * ITEM_BYTES[dtype] > MAX_TENSOR_BYTES:
        raise UserError(f"{where}: {key}.shape {shape} is larger than any build makes")
    scale, zero_point = entry.get("scale"), entry.get("zero_point")
    if dtype == "int8" or scale is not None or zero_point is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
            raise UserError(f"{where}: {key}.scale {scale!r} is not a finite number > 0")
        if not _whole(zero_point) or not -128 <= zero_point <= 127:
            raise UserError(f"{where}: {key}.zero_point {zero_point!r} is not a whole number in -128..127")


def _relative_inside(path: str) -> bool:
    return not (PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()
                or ".." in PurePosixPath(path).parts or ".." in PureWindowsPath(path).parts)


def check_report(report, where: str) -> None:
    """Refuse a report.json (already parsed) that a build could not have written; `where` names the file."""
    if not isinstance(report, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(report).__name__}")
    if not isinstance(report.get("target"), str):
        raise UserError(f"{where}: 'target' must name a target, found {report.get('target')!r}")
    if "bits" in report and (not _whole(report["bits"]) or report["bits"] not in (8, 4, 32)):
        raise UserError(f"{where}: 'bits' {report['bits']!r} is not 8, 4 or 32")
    if report.get("target") != "host":
        for key in ("input", "output"):
            _tensor(report.get(key), key, where)
    elf = report.get("elf")
    if elf is not None and (not isinstance(elf, str) or not elf or not _relative_inside(elf)):
        raise UserError(f"{where}: 'elf' {elf!r} is not a relative path inside the build directory")
    for key in ("model", "calib"):
        if not _text_or_null(report.get(key)):
            raise UserError(f"{where}: {key!r} {report.get(key)!r} is not a file name")
        digest = report.get(f"{key}_sha256")
        if digest is not None and not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            raise UserError(f"{where}: '{key}_sha256' {digest!r} is not a sha256 (64 hex digits)")
    if report.get("macs") is not None and not _whole(report["macs"], 0):
        raise UserError(f"{where}: 'macs' {report['macs']!r} is not a whole number >= 0")
    layers = report.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise UserError(f"{where}: 'layers' must be a list of objects")
    for index, layer in enumerate(layers):
        for key in ("name", "symbol", "op"):
            if not _text_or_null(layer.get(key)):
                raise UserError(f"{where}: layers[{index}].{key} {layer.get(key)!r} is not text")
        if layer.get("macs") is not None and not _whole(layer["macs"], 0):
            raise UserError(f"{where}: layers[{index}].macs {layer['macs']!r} is not a whole number >= 0")
    options = report.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise UserError(f"{where}: 'options' must be an object (the build options)")
        for key, kinds in _OPTION_TYPES.items():
            value = options.get(key)
            if key in options and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise UserError(f"{where}: options.{key} {value!r} does not have the type the build records")
