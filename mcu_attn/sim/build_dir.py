"""A `mcu-attn build` output directory as the simulator sees it, and the numpy reference of the same graph.

`DIR/report.json` gives the target, `bits`, the input/output dtype, shape, scale and zero point, the layers
(with the `symbol` of each layer function) and the ELF's relative path. The reference is rebuilt exactly as
the build made it: the compile steps (mcu_attn.compiler) replayed from the options report.json recorded, up to
`quantize`; every step is deterministic. report.json names the model and calibration files (`model`, `calib`:
the copies in DIR/source/); `--model`/`--calib` override them when the files have moved. When report.json also carries
`model_sha256`/`calib_sha256`, the files are checked against them, and the rebuilt graph's input and output
quantization must match report.json, so a changed model or calibration file cannot pass unnoticed. Every field is
checked before it is used (report_schema.py): an edited or damaged report.json is one error naming the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.sim.profile import LayerRef
from mcu_attn.sim.report_schema import check_report

FLOAT_TOLERANCE = 1e-4  # float builds: |device - numpy| <= 1e-4 * max(1, |reference|): float32 sums in another
#                         order and fused multiply-adds on the FPU move results by a few ulp per operation


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype({"int8": np.int8, "float32": np.float32}.get(self.dtype, self.dtype))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.np_dtype.itemsize


def _spec(entry: dict, what: str, path: Path) -> TensorSpec:
    try:
        return TensorSpec(entry.get("name", what), entry["dtype"], tuple(entry["shape"]), entry.get("scale"),
                          entry.get("zero_point"))
    except (KeyError, TypeError):
        raise UserError(f"{path}: report.json has no usable {what!r} entry (dtype, shape)") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class BuildDir:
    def __init__(self, directory: str | Path, model: str | None = None, calib: str | None = None,
                 compilation=None) -> None:
        self.path = Path(directory)
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such build directory")
        report_path = self.path / "report.json"
        if not report_path.is_file():
            raise UserError(f"{self.path}: no report.json (not a directory made by `mcu-attn build`)")
        try:
            self.report = json.loads(report_path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{report_path}: not JSON ({err.msg} at line {err.lineno})") from None
        except UnicodeDecodeError:
            raise UserError(f"{report_path}: not JSON (not UTF-8 text)") from None
        check_report(self.report, str(report_path))
        from mcu_attn.targets.table import get_target

        name = self.report.get("target")
        if not isinstance(name, str):
            raise UserError(f"{report_path}: no 'target'")
        self.target = get_target(name)
        if self.target.is_host:
            raise UserError(f"{self.path}: built for the host; simulate runs Cortex-M firmware "
                            f"(build with --target stm32, stm32f407, nrf52840, ...)")
        self.bits = int(self.report.get("bits", 32))
        self.input = _spec(self.report.get("input") or {}, "input", self.path)
        self.output = _spec(self.report.get("output") or {}, "output", self.path)
        self.elf = self.path / (self.report.get("elf") or "model.elf")
        if not self.elf.is_file():
            raise UserError(f"{self.path}: no firmware ELF {self.elf.name} (the build needs arm-none-eabi-gcc)")
        self._model_override, self._calib_override = model, calib
        if compilation is not None:  # the caller compiled the build's options already (sweep): no replay
            self.compilation = compilation

    # ---- layers ---------------------------------------------------------------------------------------------
    def layers(self, symbols: dict[str, int]) -> list[LayerRef]:
        refs = []
        for layer in self.report.get("layers", []):
            symbol = layer.get("symbol")
            if not symbol:
                continue  # views and other steps without code
            if symbol not in symbols:
                raise UserError(f"{self.elf}: no symbol {symbol!r} for layer {layer.get('name')!r} of report.json")
            refs.append(LayerRef(layer.get("name", symbol), symbol, symbols[symbol], layer.get("op")))
        if not refs:
            raise UserError(f"{self.path}: report.json lists no layer symbols (layers[i].symbol); "
                            f"per-layer profiles need them")
        return refs

    def layer_macs(self) -> dict[str, int]:
        return {layer["symbol"]: int(layer.get("macs") or 0) for layer in self.report.get("layers", [])
                if layer.get("symbol")}

    # ---- the files the build used ---------------------------------------------------------------------------
    def _file(self, key: str, override: str | None, what: str) -> Path | None:
        given = override or self.report.get(key)
        if not given:
            return None
        candidates = [Path(given)] if override else [Path(given), self.path / given]
        for candidate in candidates:
            if candidate.is_file():
                expected = None if override else self.report.get(f"{key}_sha256")
                if expected and _sha256(candidate) != expected:
                    raise UserError(f"{what} {candidate} differs from the file the build used "
                                    f"(sha256 in report.json); pass the original with --{key}")
                return candidate
        raise UserError(f"{what} {given!r} (report.json {key!r}) not found from here or from {self.path}; "
                        f"pass it with --{key}")

    @cached_property
    def model_path(self) -> Path:
        path = self._file("model", self._model_override, "model")
        if path is None:
            raise UserError(f"{self.path}: report.json does not name the model; pass it with --model MODEL")
        return path

    @cached_property
    def options(self):
        """The build options report.json recorded, with the calibration file found from here."""
        from mcu_attn.options import BuildOptions

        record = self.report.get("options")
        if not isinstance(record, dict):
            raise UserError(f"{self.path}: report.json records no build options (made by an older mcu-attn); "
                            f"build it again")
        from mcu_attn.sim.dynamic import replayed

        path = self._file("calib", self._calib_override, "calibration file") if record.get("calib") else None
        return replayed(BuildOptions.from_record(record, str(path) if path else None), self.report)

    @cached_property
    def compilation(self):
        """The build's compile steps replayed from its options, up to the reference (mcu_attn.compiler)."""
        from mcu_attn.compiler import compile_model

        return compile_model(self.model_path, self.options, until="stream")

    @property
    def calib(self) -> np.ndarray | None:
        return self.compilation.calib

    @property
    def float_graph(self):
        """The float graph the build deployed (its attention choice included)."""
        return self.compilation.float_graph

    @cached_property
    def graph(self):
        """The graph the firmware was generated from: float, or quantized exactly as the build did."""
        graph = self.compilation.graph
        for spec, name in ((self.input, graph.inputs[0]), (self.output, graph.outputs[0])):
            quant = graph.type(name).quant
            if spec.scale is not None and quant is not None and (
                    not np.isclose(float(quant.scale[0]), spec.scale, rtol=1e-6, atol=0)
                    or int(quant.zero_point[0]) != spec.zero_point):
                raise UserError(f"the rebuilt reference quantizes {name!r} with scale {float(quant.scale[0]):.6g}, "
                                f"zero point {int(quant.zero_point[0])}; report.json says {spec.scale:.6g}, "
                                f"{spec.zero_point}: the model or calibration file is not the one the build used")
        return graph

    # ---- samples --------------------------------------------------------------------------------------------
    def prepare(self, data: np.ndarray) -> np.ndarray:
        """Samples as the firmware takes them: [N, *input shape] of the input dtype (quantized for int8)."""
        from mcu_attn.data import check_stack

        data = check_stack(self.float_graph, data, "data")
        if tuple(data.shape[1:]) != self.input.shape:
            raise UserError(f"data: samples have shape {list(data.shape[1:])}, the build's input needs "
                            f"{list(self.input.shape)}")
        if self.input.dtype == "int8":
            if data.dtype == np.int8:
                return data
            from mcu_attn.reference.qmath import quantize

            return quantize(data.astype(np.float32), self.input.scale, self.input.zero_point).astype(np.int8)
        return data.astype(self.input.np_dtype)

    def default_samples(self, count: int) -> tuple[np.ndarray, str]:
        if self.calib is not None:
            return self.calib[:count], "the first calibration samples"
        from mcu_attn.data import random_samples

        return random_samples(self.float_graph, count), "seeded random inputs"

    def reference(self, prepared: np.ndarray) -> np.ndarray:
        from mcu_attn.reference.interpreter import run_stack

        return run_stack(self.graph, prepared).astype(self.output.np_dtype)

    def decode(self, raw: bytes) -> np.ndarray:
        if len(raw) != self.output.nbytes:
            raise UserError(f"the firmware returned {len(raw)} output bytes, report.json's output needs "
                            f"{self.output.nbytes}")
        return np.frombuffer(raw, self.output.np_dtype).reshape(self.output.shape)

    def dequantize(self, outputs: np.ndarray) -> np.ndarray:
        if self.output.dtype == "int8":
            return (outputs.astype(np.float32) - self.output.zero_point) * np.float32(self.output.scale)
        return outputs.astype(np.float32)
