"""Write small `.tflite` models for tests with the flatbuffer builder and the `tflite` package's generated schema
functions: a list of tensors and a list of operators in, a file out (schema version 3, `TFL3` identifier).

    w = TfliteWriter()
    x = w.tensor("x", np.float32, [1, 4])
    y = w.tensor("y", np.float32, [1, 4])
    w.op("TANH", [x], [y])
    w.save(path, inputs=[x], outputs=[y])

`tensor(..., data=array)` makes a constant (stored 16-byte aligned, as TFLite asks), `quant=(scales, zero_points,
axis)` quantizes it; `op(name, ..., options={"FusedActivationFunction": 1})` fills the operator's options table
(`<Name>Options` from the schema, found from the builtin's BuiltinOptions union member).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import flatbuffers
import numpy as np
from tflite.utils import BUILTIN_OPCODE2NAME

CODES = {name: code for code, name in BUILTIN_OPCODE2NAME.items()}
TYPES = {np.dtype(np.float32): 0, np.dtype(np.int32): 2, np.dtype(np.uint8): 3, np.dtype(np.int64): 4,
         np.dtype(np.int16): 7, np.dtype(np.int8): 9, np.dtype(np.bool_): 6}
# builtin operator -> its options table in the schema (the ones these tests use)
OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions",
           "FULLY_CONNECTED": "FullyConnectedOptions", "BATCH_MATMUL": "BatchMatMulOptions",
           "SOFTMAX": "SoftmaxOptions", "CONCATENATION": "ConcatenationOptions", "MEAN": "ReducerOptions",
           "SUM": "ReducerOptions", "GATHER": "GatherOptions", "STRIDED_SLICE": "StridedSliceOptions",
           "GELU": "GeluOptions", "RESHAPE": "ReshapeOptions", "TRANSPOSE": "TransposeOptions",
           "SQUARED_DIFFERENCE": "SquaredDifferenceOptions", "CUMSUM": "CumsumOptions",
           "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions"}


def _module(name: str):
    return importlib.import_module(f"tflite.{name}")


class TfliteWriter:
    def __init__(self) -> None:
        self.tensors: list[dict] = []
        self.operators: list[dict] = []

    def tensor(self, name: str, dtype, shape, data: np.ndarray | None = None,
               quant: tuple | None = None) -> int:
        self.tensors.append({"name": name, "dtype": np.dtype(dtype), "shape": list(shape), "data": data,
                             "quant": quant})
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray, quant: tuple | None = None) -> int:
        return self.tensor(name, data.dtype, data.shape, data, quant)

    def op(self, name: str, inputs: list[int], outputs: list[int], options: dict | None = None) -> None:
        self.operators.append({"name": name, "inputs": inputs, "outputs": outputs, "options": options or {}})

    # ---- serialisation ------------------------------------------------------------------------------------------
    def save(self, path: Path, inputs: list[int], outputs: list[int]) -> Path:
        builder = flatbuffers.Builder(1024)
        buffers = [self._buffer(builder, None)]
        tensors = []
        for tensor in self.tensors:
            index = 0
            if tensor["data"] is not None:
                buffers.append(self._buffer(builder, np.ascontiguousarray(tensor["data"], tensor["dtype"])))
                index = len(buffers) - 1
            tensors.append(self._tensor(builder, tensor, index))
        names = sorted({op["name"] for op in self.operators})
        operators = [self._operator(builder, op, names.index(op["name"])) for op in self.operators]
        codes = [self._code(builder, name) for name in names]
        sub = _module("SubGraph")
        tensor_vector = self._tables(builder, "SubGraph", "Tensors", tensors)
        op_vector = self._tables(builder, "SubGraph", "Operators", operators)
        ins, outs = (builder.CreateNumpyVector(np.array(v, np.int32)) for v in (inputs, outputs))
        sub.SubGraphStart(builder)
        sub.SubGraphAddTensors(builder, tensor_vector)
        sub.SubGraphAddInputs(builder, ins)
        sub.SubGraphAddOutputs(builder, outs)
        sub.SubGraphAddOperators(builder, op_vector)
        graph = sub.SubGraphEnd(builder)
        model = _module("Model")
        code_vector = self._tables(builder, "Model", "OperatorCodes", codes)
        graphs = self._tables(builder, "Model", "Subgraphs", [graph])
        buffer_vector = self._tables(builder, "Model", "Buffers", buffers)
        description = builder.CreateString("mcu-attn test model")
        model.ModelStart(builder)
        model.ModelAddVersion(builder, 3)
        model.ModelAddOperatorCodes(builder, code_vector)
        model.ModelAddSubgraphs(builder, graphs)
        model.ModelAddDescription(builder, description)
        model.ModelAddBuffers(builder, buffer_vector)
        builder.Finish(model.ModelEnd(builder), file_identifier=b"TFL3")
        path = Path(path)
        path.write_bytes(bytes(builder.Output()))
        return path

    @staticmethod
    def _tables(builder, owner: str, field: str, offsets: list[int]) -> int:
        getattr(_module(owner), f"{owner}Start{field}Vector")(builder, len(offsets))
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    @staticmethod
    def _buffer(builder, data: np.ndarray | None) -> int:
        module = _module("Buffer")
        vector = None
        if data is not None:
            raw = data.astype(data.dtype.newbyteorder("<")).tobytes()
            builder.StartVector(1, len(raw), 16)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            vector = builder.EndVector()
        module.BufferStart(builder)
        if vector is not None:
            module.BufferAddData(builder, vector)
        return module.BufferEnd(builder)

    @staticmethod
    def _tensor(builder, tensor: dict, buffer: int) -> int:
        module = _module("Tensor")
        name = builder.CreateString(tensor["name"])
        shape = builder.CreateNumpyVector(np.array(tensor["shape"], np.int32))
        quant = None
        if tensor["quant"] is not None:
            scales, zeros, axis = tensor["quant"]
            q = _module("QuantizationParameters")
            scale_vector = builder.CreateNumpyVector(np.array(scales, np.float32).reshape(-1))
            zero_vector = builder.CreateNumpyVector(np.array(zeros, np.int64).reshape(-1))
            q.QuantizationParametersStart(builder)
            q.QuantizationParametersAddScale(builder, scale_vector)
            q.QuantizationParametersAddZeroPoint(builder, zero_vector)
            q.QuantizationParametersAddQuantizedDimension(builder, axis or 0)
            quant = q.QuantizationParametersEnd(builder)
        module.TensorStart(builder)
        module.TensorAddShape(builder, shape)
        module.TensorAddType(builder, TYPES[tensor["dtype"]])
        module.TensorAddBuffer(builder, buffer)
        module.TensorAddName(builder, name)
        if quant is not None:
            module.TensorAddQuantization(builder, quant)
        return module.TensorEnd(builder)

    @staticmethod
    def _code(builder, name: str) -> int:
        module = _module("OperatorCode")
        code = CODES[name]
        module.OperatorCodeStart(builder)
        module.OperatorCodeAddDeprecatedBuiltinCode(builder, min(code, 127))
        module.OperatorCodeAddBuiltinCode(builder, code)
        module.OperatorCodeAddVersion(builder, 1)
        return module.OperatorCodeEnd(builder)

    @staticmethod
    def _operator(builder, op: dict, code_index: int) -> int:
        module = _module("Operator")
        options = None
        kind = OPTIONS.get(op["name"])
        if kind is not None:
            table = _module(kind)
            getattr(table, f"{kind}Start")(builder)
            for field, value in op["options"].items():
                getattr(table, f"{kind}Add{field}")(builder, value)
            options = getattr(table, f"{kind}End")(builder)
        ins = builder.CreateNumpyVector(np.array(op["inputs"], np.int32))
        outs = builder.CreateNumpyVector(np.array(op["outputs"], np.int32))
        module.OperatorStart(builder)
        module.OperatorAddOpcodeIndex(builder, code_index)
        module.OperatorAddInputs(builder, ins)
        module.OperatorAddOutputs(builder, outs)
        if options is not None:
            union = _module("BuiltinOptions").BuiltinOptions
            module.OperatorAddBuiltinOptionsType(builder, getattr(union, kind))
            module.OperatorAddBuiltinOptions(builder, options)
        return module.OperatorEnd(builder)
