"""Token ids as model inputs: the embedding kernels against their references (ids out of range included), and a
model taking int64 ids (torch.nn.TransformerEncoder over nn.Embedding) through eval, quantization and build."""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.codegen.host_cc import compile_shared
from mcu_attn.ir.ops.embedding import embedding, qembedding
from support import FIXTURES, ROOT, run_cli

KERNELS = ROOT / "mcu_attn" / "firmware_templates" / "kernels"
MODEL = FIXTURES / "hf" / "torch_encoder_legacy17_sdpa.onnx"
GUARD = 16  # sentinel bytes after the output that must survive the call
P = ctypes.c_void_p
I32 = ctypes.c_int32


@pytest.fixture(scope="module")
def lib():
    library = ctypes.CDLL(str(compile_shared([KERNELS / "ref" / "embedding.c"], [KERNELS / "include"],
                                             ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"], name="embedding")))
    library.ma_embedding.argtypes = [P, I32, P, I32, I32, P]
    library.ma_embedding_s4.argtypes = [P, I32, P, I32, I32, P, P]
    return library


def _ptr(array: np.ndarray) -> P:
    return array.ctypes.data_as(P)


def _ids(rng: np.random.Generator, vocab: int, count: int) -> np.ndarray:
    """Ids in range, negative ones ONNX counts from the end, and far outside the table on both sides."""
    special = np.array([0, vocab - 1, -1, -vocab, vocab, -vocab - 1, 2 ** 31 - 1, -2 ** 31], np.int64)
    return np.concatenate([special, rng.integers(-2 * vocab, 2 * vocab, count)]).astype(np.int32)


@pytest.mark.parametrize("dtype", [np.int8, np.float32])
def test_embedding_kernel_matches_reference(lib, dtype) -> None:
    rng = np.random.default_rng(1)
    for vocab, dim in ((1, 3), (7, 5), (96, 32)):
        table = (rng.standard_normal((vocab, dim)) * 50).astype(dtype)
        ids = _ids(rng, vocab, 40)
        out = np.full(ids.size * dim * table.itemsize + GUARD, 0x5A, np.uint8)
        lib.ma_embedding(_ptr(ids), ids.size, _ptr(table), vocab, dim * table.itemsize, _ptr(out))
        expected = embedding(ids, table) if dtype == np.float32 else qembedding(ids, table, bits=8)
        assert np.array_equal(out[:-GUARD].view(dtype).reshape(ids.size, dim), expected)
        assert np.all(out[-GUARD:] == 0x5A)


def test_int4_embedding_kernel_matches_reference(lib) -> None:
    rng = np.random.default_rng(2)
    for vocab, dim in ((3, 1), (9, 7), (96, 32)):
        codes = rng.integers(-8, 8, (vocab, dim)).astype(np.int8)
        lut = rng.integers(-128, 128, 16).astype(np.int8)
        ids = _ids(rng, vocab, 40)
        packed = np.ascontiguousarray(pack_int4(codes))
        out = np.full(ids.size * dim + GUARD, 0x5A, np.int8)
        lib.ma_embedding_s4(_ptr(ids), ids.size, _ptr(packed), vocab, dim, _ptr(lut), _ptr(out))
        assert np.array_equal(out[:-GUARD].reshape(ids.size, dim), qembedding(ids, codes, bits=4, lut=tuple(lut)))
        assert np.all(out[-GUARD:] == 0x5A)


def test_ids_outside_the_table_read_its_first_or_last_row() -> None:
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows = embedding(np.array([-5, -4, -1, 0, 3, 4, 99]), table)[:, 0]
    assert rows.tolist() == [0.0, 0.0, 9.0, 0.0, 9.0, 9.0, 9.0]


def test_token_id_model_evaluates_quantizes_and_builds(tmp_path) -> None:
    """int64 ids in a .npy file: the float reference equals onnxruntime, int8 eval runs, and the host build
    takes int32 ids and is bit-exact with the integer reference."""
    import onnxruntime as ort

    ids = np.random.default_rng(0).integers(0, 96, (24, 1, 32)).astype(np.int64)
    np.save(tmp_path / "ids.npy", ids)
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = np.stack([session.run(None, {"ids": x})[0] for x in ids])
    result = run_cli("eval", MODEL, "--data", tmp_path / "ids.npy", "--float", "--outputs", tmp_path / "f.npy")
    assert result.returncode == 0, result.stderr
    # float32 reference vs onnxruntime: different summation orders over <= 64 terms, outputs O(1)
    assert np.abs(np.load(tmp_path / "f.npy") - expected).max() < 1e-4
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "b", "--bits", "8", "--calib",
                     tmp_path / "ids.npy")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["input"]["dtype"] == "int32" and report["host_check"]["bit_exact"]
    assert "ma_embedding" in report["kernels"]
    assert "int32_t" in (tmp_path / "b" / "model.h").read_text()


def test_float_ids_are_refused_in_one_line(tmp_path) -> None:
    np.save(tmp_path / "ids.npy", np.zeros((2, 1, 32), np.float32))
    result = run_cli("eval", MODEL, "--data", tmp_path / "ids.npy", "--float")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "token ids" in result.stderr
