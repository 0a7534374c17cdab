"""Embedding lookups by run-time token ids: `Embedding` (float) and `QEmbedding` (int8 or int4 table).

The frontend turns ONNX `Gather(table, ids)` on a constant table and run-time integer ids into
`Embedding(ids, table)` (passes/token_ids.py); position and token-type embeddings, gathered by constant
indices, fold into constants and are added afterwards. Ids follow ONNX Gather for -vocab <= id < 0 (counted from
the end); any other id outside [0, vocab) is clamped to the nearest row (ONNX leaves it undefined), so the
firmware never reads outside the table whatever ids it is given (kernels/ref/embedding.c).

Quantized, the table is stored at the output's (scale, zero point), so the lookup is a copy of int8 rows
(bits 8). With `--bits 4` the table holds 4-bit codes of its own asymmetric range (two per byte in flash), and a
16-entry table `lut` (indexed by the code's nibble, code & 0xF) maps each code to the int8 output:
lut[c & 0xF] = sat8(round(s4 (c - zp4) / s_y) + y_zp).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, emits, label
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.reference.qmath import as_int64, choose_qparams, dequantize, quantize, saturate

INT4_CODES = np.arange(16) - 16 * (np.arange(16) >= 8)  # the code of each nibble 0..15: 0..7, then -8..-1


def token_rows(ids, vocab: int) -> np.ndarray:
    """The table row each id reads: negative ids count from the end, the rest is clamped to [0, vocab)."""
    rows = as_int64(ids)
    rows = np.where((rows < 0) & (rows >= -vocab), rows + vocab, rows)
    return np.clip(rows, 0, vocab - 1)


@op("Embedding", kind="lookup", const_inputs=(1,), params=(1,), onnx=())
def embedding(ids, table):
    """y[..., :] = table[row(id)] for every id (see `token_rows`); y has shape ids.shape + table.shape[1:]."""
    if not np.issubdtype(np.asarray(ids).dtype, np.integer):
        raise ValueError("Embedding ids must be integers")
    return table[token_rows(ids, table.shape[0])]


@op("QEmbedding", kind="integer", const_inputs=(1,), onnx=())
def qembedding(ids, table, *, bits=8, lut=()):
    """int8 rows of `table` (bits 8), or lut[code & 0xF] of its 4-bit codes (bits 4)."""
    rows = np.asarray(table)[token_rows(ids, np.shape(table)[0])]
    if bits == 8:
        return rows.astype(np.int8)
    if bits != 4 or len(lut) != 16:
        raise ValueError("QEmbedding takes bits 8, or bits 4 with a 16-entry lut")
    return np.asarray(lut, np.int64)[as_int64(rows) & 0xF].astype(np.int8)


@quantizes("Embedding")
def _quantize_embedding(cv, node: Node) -> None:
    ids, out = node.inputs[0], node.outputs[0]
    table = cv.src.const(node.inputs[1]).astype(np.float64)
    s_y, y_zp = cv.param(out)
    bits = 4 if cv.report.weight_bits == 4 else 8
    if bits == 8:
        codes, attrs = quantize(table, s_y, y_zp), {"bits": 8}
    else:
        s4, zp4 = choose_qparams(float(table.min()), float(table.max()), bits=4)
        codes = quantize(table, s4, zp4, bits=4)
        lut = saturate(np.rint(dequantize(INT4_CODES, s4, zp4) / s_y) + y_zp)
        attrs = {"bits": 4, "lut": tuple(int(v) for v in lut)}
    name = cv.dst.add_const(f"{node.name}_table", codes.astype(np.int8))
    cv.layer_bits[node.name] = bits
    cv.emit("QEmbedding", [ids, name], out, attrs, node.name)


def _ids(ctx, node: Node) -> tuple[str, int]:
    ids = node.inputs[0]
    if ctx.graph.type(ids).dtype != "int32":
        raise UserError(f"{label(node)}: token ids are {ctx.graph.type(ids).dtype}; the C kernel takes int32")
    return ctx.ptr(ids), ctx.graph.type(ids).size


@emits("Embedding")
def _emit_embedding(ctx, node: Node) -> list[Call]:
    ids, count = _ids(ctx, node)
    table = ctx.graph.const(node.inputs[1])
    if table.dtype != np.float32:
        raise UserError(f"{label(node)}: the float kernel takes a float32 table")
    vocab = table.shape[0]
    row_bytes = table[:1].nbytes
    rows = ctx.weight(node.inputs[1], "rows", lambda: np.ascontiguousarray(table.reshape(vocab, -1)), "float")
    return [Call("ma_embedding", (ids, str(count), rows, str(vocab), str(row_bytes),
                                  ctx.raw(node.outputs[0], write=True)))]


@emits("QEmbedding")
def _emit_qembedding(ctx, node: Node) -> list[Call]:
    ids, count = _ids(ctx, node)
    table = ctx.graph.const(node.inputs[1])
    vocab, dim = table.shape[0], int(np.prod(table.shape[1:], dtype=np.int64))
    if int(node.attr("bits", 8)) == 8:
        rows = ctx.weight(node.inputs[1], "rows", lambda: np.ascontiguousarray(table.reshape(vocab, dim)),
                          "int8_t")
        return [Call("ma_embedding", (ids, str(count), rows, str(vocab), str(dim),
                                      ctx.raw(node.outputs[0], write=True)))]
    packed = ctx.weight(node.inputs[1], "rows_s4", lambda: pack_int4(table.reshape(vocab, dim)), "uint8_t")
    lut = ctx.table(f"{node.name}_lut", node.attr("lut"), "int8_t")
    return [Call("ma_embedding_s4", (ids, str(count), packed, str(vocab), str(dim), lut,
                                     ctx.ptr(node.outputs[0], write=True)))]
