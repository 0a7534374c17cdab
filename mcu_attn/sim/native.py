"""The profiler's native helper (`native/trace.c`): compiled once with the host C compiler, loaded with ctypes.

Profiling with a Python callback per executed block runs at about 1-2 M emulated instructions per host second.
The helper's callbacks are registered with Unicorn directly (`uc_hook_add` with C function pointers), so the
profiled run records the same streams (every executed block in order, every data read from flash with the block
it happened in) at close to Unicorn's unhooked speed, and the flash cache model replays them in C.

`available()` is False when no host C compiler can build the helper (`gcc`, or `$CC`); the profiler and the
cycle model then fall back to their Python implementations, which give identical results
(tests/test_sim_native.py) at the old speed. The library is cached by content (`codegen/host_cc.py`).
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from functools import lru_cache
from pathlib import Path

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.sim.profile import Trace

SOURCE = Path(__file__).with_name("native") / "trace.c"
_FALLBACK_NOTE = ("note: no host C compiler to build the profiler's helper ({reason}); profiling with Python "
                  "hooks, about 20x slower (install gcc, or set CC)")


@lru_cache(maxsize=None)
def library() -> ctypes.CDLL | None:
    """The loaded helper, or None (with one note on stderr) when it cannot be built here."""
    from mcu_attn.codegen.host_cc import CompileError, compile_shared

    try:
        path = compile_shared([SOURCE], flags=("-O2", "-std=c99"), name="ma_trace")
    except CompileError as err:
        print(_FALLBACK_NOTE.format(reason=str(err).splitlines()[0]), file=sys.stderr)
        return None
    lib = ctypes.CDLL(str(path))
    pointer, array = ctypes.c_void_p, np.ctypeslib.ndpointer
    lib.ma_trace_new.argtypes, lib.ma_trace_new.restype = [pointer, ctypes.c_uint32], pointer
    lib.ma_trace_free.argtypes = [pointer]
    for name in ("count", "blocks", "marks", "transitions", "reads"):
        function = getattr(lib, f"ma_trace_{name}")
        function.argtypes, function.restype = [pointer], ctypes.c_uint64
    lib.ma_trace_failed.argtypes, lib.ma_trace_failed.restype = [pointer], ctypes.c_int
    for name in ("block_start", "block_size", "mark_position", "mark_row", "row_reads", "take_order",
                 "take_read_address", "take_read_row"):
        function = getattr(lib, f"ma_trace_{name}")
        function.argtypes, function.restype = [pointer], pointer
    lib.ma_free.argtypes = [pointer]
    lib.ma_trace_transition_list.argtypes = [pointer, array(np.int32), array(np.uint32), array(np.uint32),
                                             array(np.int64)]
    lib.ma_data_misses.argtypes = [array(np.uint32), array(np.int32), ctypes.c_uint64, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, array(np.int64)]
    lib.ma_fetch_misses.argtypes = [array(np.uint32), ctypes.c_uint64, array(np.int64), array(np.int32),
                                    ctypes.c_uint64, array(np.int64), array(np.int64), ctypes.c_uint32,
                                    ctypes.c_uint32, ctypes.c_int, array(np.int64)]
    return lib


def available() -> bool:
    return library() is not None


def _unicorn_library():
    """The ctypes handle of libunicorn that the Python binding loaded (its module moved in Unicorn 2.1)."""
    try:
        from unicorn.unicorn_py3.unicorn import uclib
    except ImportError:
        from unicorn.unicorn import _uc as uclib
    return uclib


def _copy(pointer: int, count: int, dtype) -> np.ndarray:
    if not count:
        return np.zeros(0, dtype)
    buffer = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(pointer)
    return np.frombuffer(buffer, dtype).copy()


def _take(lib, pointer: int | None, count: int, dtype) -> np.ndarray:
    """A buffer the helper handed over, as an array that frees it (ma_free) when the last view of it is gone."""
    if not pointer:
        return np.zeros(0, dtype)
    buffer = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(pointer)
    weakref.finalize(buffer, lib.ma_free, pointer)
    return np.frombuffer(buffer, dtype)


class Tracer:
    """The helper's callbacks on one Unicorn instance for one run: `with Tracer(uc, (low, high), entries) as t:
    run; then t.trace()`. `entries` are the layers' entry addresses in layer order (uint32)."""

    def __init__(self, uc, flash_range: tuple[int, int], entries: np.ndarray) -> None:
        self.lib = library()
        self.uc = uc
        self.range = flash_range
        self.entries = np.ascontiguousarray(entries, np.uint32)  # the C side keeps a pointer to it
        self.handle = None
        self.hooks: list[ctypes.c_size_t] = []

    def __enter__(self) -> "Tracer":
        from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ

        uclib = _unicorn_library()
        self.handle = self.lib.ma_trace_new(self.entries.ctypes.data_as(ctypes.c_void_p), len(self.entries))
        if not self.handle or self.lib.ma_trace_failed(self.handle):
            raise UserError("profiler: out of memory")
        for kind, callback, (low, high) in ((UC_HOOK_BLOCK, self.lib.ma_trace_block, (1, 0)),
                                            (UC_HOOK_MEM_READ, self.lib.ma_trace_read, self.range)):
            hook = ctypes.c_size_t()
            status = uclib.uc_hook_add(self.uc._uch, ctypes.byref(hook), kind,
                                       ctypes.cast(callback, ctypes.c_void_p), ctypes.c_void_p(self.handle),
                                       ctypes.c_uint64(low), ctypes.c_uint64(high))
            if status:
                raise UserError(f"profiler: Unicorn refused a hook (error {status})")
            self.hooks.append(hook)
        return self

    def __exit__(self, *exc) -> None:
        uclib = _unicorn_library()
        for hook in self.hooks:
            uclib.uc_hook_del(self.uc._uch, hook)
        self.hooks = []
        if exc[0] is not None:
            self._free()

    def _free(self) -> None:
        if self.handle:
            self.lib.ma_trace_free(self.handle)
        self.handle = None

    def trace(self) -> Trace:
        """What the run recorded (the helper's memory is freed)."""
        lib, handle = self.lib, self.handle
        try:
            if lib.ma_trace_failed(handle):
                raise UserError("profiler: out of memory while recording the executed blocks")
            blocks, marks, reads = lib.ma_trace_blocks(handle), lib.ma_trace_marks(handle), lib.ma_trace_reads(handle)
            transitions = lib.ma_trace_transitions(handle)
            rows, ids = np.zeros(transitions, np.int32), np.zeros((2, transitions), np.uint32)
            times = np.zeros(transitions, np.int64)
            lib.ma_trace_transition_list(handle, rows, ids[0], ids[1], times)
            return Trace(block_starts=_copy(lib.ma_trace_block_start(handle), blocks, np.uint32).astype(np.int64),
                         block_sizes=_copy(lib.ma_trace_block_size(handle), blocks, np.uint32).astype(np.int64),
                         order=_take(lib, lib.ma_trace_take_order(handle), lib.ma_trace_count(handle), np.uint32),
                         mark_positions=_copy(lib.ma_trace_mark_position(handle), marks, np.int64),
                         mark_rows=_copy(lib.ma_trace_mark_row(handle), marks, np.int32),
                         transitions=np.column_stack([rows, ids[0], ids[1], times]).astype(np.int64),
                         read_addresses=_take(lib, lib.ma_trace_take_read_address(handle), reads, np.uint32),
                         read_rows=_take(lib, lib.ma_trace_take_read_row(handle), reads, np.int32),
                         row_reads=_copy(lib.ma_trace_row_reads(handle), len(self.entries) + 1, np.uint64
                                         ).astype(np.int64))
        finally:
            self._free()


def data_misses(profile, line_bytes: int, base: int, span: int, capacity: int, row_count: int) -> np.ndarray:
    """Per row: flash data reads of `profile` that miss an LRU of `capacity` lines (line numbers counted from
    address `base`, below `span`)."""
    out = np.zeros(row_count, np.int64)
    addresses = np.ascontiguousarray(profile.flash_addresses, np.uint32)
    status = library().ma_data_misses(addresses, np.ascontiguousarray(profile.flash_rows, np.int32),
                                      len(addresses), base, line_bytes, span, capacity, out)
    if status:
        raise UserError("cycle model: " + ("out of memory" if status == 1 else "a flash read outside flash"))
    return out


def fetch_misses(profile, first: np.ndarray, last: np.ndarray, span: int, capacity: int, prefetch: bool,
                 row_count: int) -> np.ndarray:
    """Per row: executed code lines of `profile` that miss (block id b spans flash lines first[b]..last[b])."""
    out = np.zeros(row_count, np.int64)
    order = np.ascontiguousarray(profile.code_order, np.uint32)
    if library().ma_fetch_misses(order, len(order), np.ascontiguousarray(profile.mark_positions, np.int64),
                                 np.ascontiguousarray(profile.mark_rows, np.int32), len(profile.mark_positions),
                                 np.ascontiguousarray(first, np.int64), np.ascontiguousarray(last, np.int64),
                                 span, capacity, int(prefetch), out):
        raise UserError("cycle model: out of memory")
    return out
