"""Call single C kernels with numpy arguments: on the host through ctypes, or inside Unicorn on a Cortex-M core.

The same `KernelBindings` turn an integer IR op's inputs and attributes (the calling convention of its numpy
reference in `mcu_attn/ir/ops/`) into one kernel call, whichever backend runs it:
- `HostBackend`: a shared library compiled with the host gcc (the portable `ref/` kernels), through ctypes;
- `EmulatorBackend`: a small Cortex-M ELF holding the kernels of one variant (`build_kernel_elf`: the kernels,
  one halt function, a linker script putting code at 0 and data in a 16 MB SRAM window), loaded into Unicorn
  once. A call writes the arguments into SRAM, sets r0-r3 and the stack as the AAPCS says (every argument of
  these kernels is one 32-bit word) and runs from the function to the halt address with LR pointing there.

Every output buffer is followed by guard bytes that must survive the call, so a kernel writing past its end
fails the comparison even when nothing crashes. With `profile=True` the emulator records the executed blocks of
each call (the instruction counts and timing classes of `isa.py`), which `benchmarks/kernels.py` turns into
instructions and estimated core cycles per MAC.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.codegen.kernels import KERNELS, kernel_files
from mcu_attn.ir.pattern import DENSE, AttentionPattern

GUARD_BYTES = 64
GUARD_VALUE = 0x5A
CODE_BASE, CODE_BYTES = 0x0000_0000, 0x0010_0000
SRAM_BASE, SRAM_BYTES = 0x2000_0000, 0x0100_0000
STACK_BYTES = 0x1_0000
CALL_TIMEOUT_S = 60

# the fields of the kernels' parameter structs (ma_kernels_s8.h), in order: (kind, name)
# (ma_attention_s8_params embeds the pattern descriptor, ma_attention_pattern: AttentionPattern.c_fields())
ATTENTION_FIELDS = tuple(("i32", n) for n in ("seq", "heads", "head_dim", *(f"pattern.{name}" for name, _ in
                                                                             DENSE.c_fields()),
                                              "q_zp", "k_zp", "v_zp", "out_zp", "score_mult", "score_shift",
                                              "out_mult", "out_shift", "query_tile")) + (("ptr", "exp_table"),
                                                                                         ("ptr", "mask"))
LAYERNORM_FIELDS = (("i32", "c"), ("i32", "recip_shift"), ("i32", "right_shift"), ("i64", "eps"), ("ptr", "mult"),
                    ("ptr", "bias"))
ADD_FIELDS = tuple(("i32", n) for n in ("a_zp", "b_zp", "a_mult", "a_left_shift", "b_mult", "b_left_shift",
                                        "right_shift", "out_zp"))
LINEAR_ADD_FIELDS = tuple(("i32", n) for n in ("right_shift", "r_mult", "r_left_shift", "r_zp", "y_zp"))
RMSNORM_FIELDS = (("i32", "c"), ("i32", "in_zp"), ("i32", "out_zp"), ("i64", "eps"), ("ptr", "mult"),
                  ("ptr", "shift"))
# ma_kernels_dynamic.h
EARLY_EXIT_FIELDS = tuple(("i32", n) for n in ("count", "early_zp", "mult", "shift", "out_zp", "bound")) + (
    ("ptr", "gap_table"),)
TOKEN_SELECT_FIELDS = tuple(("i32", n) for n in ("seq", "width", "heads", "head_dim", "keep", "cls", "q_zp", "k_zp",
                                                 "score_mult", "score_shift")) + (("ptr", "exp_table"),)


def pack_struct(fields: Sequence[tuple[str, str]], values: dict, pointer_bytes: int) -> bytes:
    """A C struct's bytes (natural alignment, little-endian) with `pointer_bytes`-wide pointers."""
    sizes = {"i32": 4, "i64": 8, "ptr": pointer_bytes}
    out = bytearray()
    align = 1
    for kind, name in fields:
        size = sizes[kind]
        align = max(align, size)
        out += bytes(-len(out) % size)
        value = int(values[name] or 0)
        out += value.to_bytes(size, "little", signed=kind != "ptr")
    out += bytes(-len(out) % align)
    return bytes(out)


@dataclass
class Output:
    address: int
    count: int
    dtype: np.dtype


class HostBackend:
    """Kernels in a host shared library; addresses are those of numpy buffers kept alive until `reset`."""
    pointer_bytes = ctypes.sizeof(ctypes.c_void_p)

    def __init__(self, library: str | Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self.keep: list[np.ndarray] = []

    def reset(self) -> None:
        self.keep.clear()

    def _hold(self, data: np.ndarray) -> int:
        data = np.ascontiguousarray(data)
        self.keep.append(data)
        return data.ctypes.data

    def input(self, data) -> int:
        raw = np.frombuffer(bytes(data), np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data)
        return self._hold(np.concatenate([raw.view(np.uint8).reshape(-1), np.zeros(8, np.uint8)]))

    def output(self, count: int, dtype) -> Output:
        dtype = np.dtype(dtype)
        buffer = np.full(count * dtype.itemsize + GUARD_BYTES, GUARD_VALUE, np.uint8)
        return Output(self._hold(buffer), count, dtype)

    def inout(self, data: np.ndarray) -> Output:
        """A buffer the kernel reads and writes (a state), holding `data`, with guard bytes after it."""
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        return Output(self._hold(np.concatenate([raw, np.full(GUARD_BYTES, GUARD_VALUE, np.uint8)])), raw.size,
                      np.dtype(np.uint8))

    def fill(self, out: Output, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).tobytes()
        ctypes.memmove(out.address, raw, len(raw))

    def read(self, out: Output) -> np.ndarray:
        size = out.count * out.dtype.itemsize
        raw = (ctypes.c_uint8 * (size + GUARD_BYTES)).from_address(out.address)
        data = bytes(raw)
        assert all(b == GUARD_VALUE for b in data[size:]), "kernel wrote past the end of a buffer"
        return np.frombuffer(data[:size], out.dtype).copy()

    def call(self, fn: str, *args: tuple[str, int]) -> int:
        function = getattr(self.lib, fn)
        function.restype = ctypes.c_int32
        converted = [ctypes.c_void_p(v) if kind == "ptr" else ctypes.c_int32(v) for kind, v in args]
        return int(function(*converted))


# ---- the emulator ------------------------------------------------------------------------------------------

_LINKER_SCRIPT = f"""
MEMORY {{ CODE (rx) : ORIGIN = {CODE_BASE:#x}, LENGTH = {CODE_BYTES:#x}
         SRAM (rwx) : ORIGIN = {SRAM_BASE:#x}, LENGTH = {SRAM_BYTES:#x} }}
SECTIONS {{
  .text 0x100 : {{ KEEP(*(.text.ma_bench_halt)) *(.text*) *(.rodata*) }} > CODE
  .ARM.exidx : {{ *(.ARM.exidx*) }} > CODE
  .data : {{ *(.data*) }} > SRAM
  .bss : {{ *(.bss*) *(COMMON) }} > SRAM
  /DISCARD/ : {{ *(.ARM.attributes) }}
}}
"""
_HALT_SOURCE = "void ma_bench_halt(void);\nvoid ma_bench_halt(void) { for (;;) { } }\n"


def _cache_root() -> Path:
    from mcu_attn.codegen.host_cc import cache_dir

    return cache_dir().parent / "kernel_elf"


def build_kernel_elf(variant: str, core: str, functions: Sequence[str]) -> Path:
    """An ELF with `functions` (and what they call) of kernel `variant`, compiled for `core`, cached by content."""
    sources = [p for p in kernel_files(functions, variant) if p.suffix == ".c"]
    flags = [f"-mcpu={core}", "-mthumb", "-mfloat-abi=soft", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
             "-ffunction-sections", "-fdata-sections", f"-I{KERNELS / 'include'}"]
    digest = hashlib.sha256("\0".join(flags + sorted(functions) + [_LINKER_SCRIPT, _HALT_SOURCE]).encode())
    for path in sorted(sources) + sorted((KERNELS / "include").glob("*.h")):
        digest.update(path.read_bytes())
    out = _cache_root() / digest.hexdigest()[:24] / f"kernels_{variant}_{core}.elf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        script, halt = Path(work) / "bench.ld", Path(work) / "halt.c"
        script.write_text(_LINKER_SCRIPT)
        halt.write_text(_HALT_SOURCE)
        partial = Path(work) / out.name
        command = (["arm-none-eabi-gcc", *flags, "--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections",
                    f"-Wl,-T,{script}", "-Wl,--no-warn-rwx-segments", "-o", str(partial), str(halt)]
                   + [str(s) for s in sources] + [f"-Wl,--undefined={f}" for f in functions]
                   + ["-Wl,--start-group", "-lc", "-lgcc", "-Wl,--end-group"])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}\n{result.stdout}{result.stderr}")
        partial.replace(out)
    return out


class EmulatorBackend:
    """The kernels of one ELF in one Unicorn instance; arguments are bump-allocated in SRAM per call."""
    pointer_bytes = 4

    def __init__(self, elf: Path, core: str, profile: bool = False) -> None:
        from elftools.elf.elffile import ELFFile
        from unicorn import UC_ARCH_ARM, UC_MODE_MCLASS, UC_MODE_THUMB, Uc

        from mcu_attn.sim.unicorn import cpu_model

        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(cpu_model(core))
        self.uc.mem_map(CODE_BASE, CODE_BYTES)
        self.uc.mem_map(SRAM_BASE, SRAM_BYTES)
        self.symbols: dict[str, int] = {}
        with open(elf, "rb") as stream:
            image = ELFFile(stream)
            for segment in image.iter_segments():
                if segment["p_type"] == "PT_LOAD" and segment["p_filesz"]:
                    self.uc.mem_write(segment["p_vaddr"], segment.data())
            for symbol in image.get_section_by_name(".symtab").iter_symbols():
                if symbol["st_info"]["type"] == "STT_FUNC":
                    self.symbols[symbol.name] = symbol["st_value"] & ~1
        self.heap_start = SRAM_BASE + 0x1000  # .data/.bss of the C library (none of the kernels has any)
        self.stack_top = SRAM_BASE + SRAM_BYTES
        self.heap = self.heap_start
        self.profile = profile
        self.blocks: list[tuple[int, int]] = []
        self.calls: list[list[tuple[int, int]]] = []

    def reset(self) -> None:
        self.heap = self.heap_start
        self.calls.clear()

    def _alloc(self, size: int) -> int:
        address = self.heap
        self.heap += -(-max(size, 1) // 8) * 8
        if self.heap > self.stack_top - STACK_BYTES:
            raise MemoryError("kernel arguments exceed the emulated SRAM")
        return address

    def input(self, data) -> int:
        raw = bytes(data) if isinstance(data, (bytes, bytearray)) else np.ascontiguousarray(data).tobytes()
        address = self._alloc(len(raw))
        self.uc.mem_write(address, raw)
        return address

    def output(self, count: int, dtype) -> Output:
        dtype = np.dtype(dtype)
        size = count * dtype.itemsize
        address = self._alloc(size + GUARD_BYTES)
        self.uc.mem_write(address, bytes([GUARD_VALUE]) * (size + GUARD_BYTES))
        return Output(address, count, dtype)

    def inout(self, data: np.ndarray) -> Output:
        """A buffer the kernel reads and writes (a state), holding `data`, with guard bytes after it."""
        raw = np.ascontiguousarray(data).tobytes()
        out = self.output(len(raw), np.uint8)
        self.uc.mem_write(out.address, raw)
        return out

    def fill(self, out: Output, data: np.ndarray) -> None:
        self.uc.mem_write(out.address, np.ascontiguousarray(data).tobytes())

    def read(self, out: Output) -> np.ndarray:
        size = out.count * out.dtype.itemsize
        data = bytes(self.uc.mem_read(out.address, size + GUARD_BYTES))
        assert all(b == GUARD_VALUE for b in data[size:]), "kernel wrote past the end of a buffer"
        return np.frombuffer(data[:size], out.dtype).copy()

    def call(self, fn: str, *args: tuple[str, int]) -> int:
        from unicorn import UC_HOOK_BLOCK
        from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_SP

        words = [int(v) & 0xFFFF_FFFF for _, v in args]
        stack = words[4:]
        sp = (self.stack_top - 4 * len(stack) - 64) & ~7
        if stack:
            self.uc.mem_write(sp, np.array(stack, "<u4").tobytes())
        for index, word in enumerate(words[:4]):
            self.uc.reg_write(UC_ARM_REG_R0 + index, word)
        halt = self.symbols["ma_bench_halt"]
        self.uc.reg_write(UC_ARM_REG_SP, sp)
        self.uc.reg_write(UC_ARM_REG_LR, halt | 1)
        hook = None
        if self.profile:
            trace: list[tuple[int, int]] = []
            hook = self.uc.hook_add(UC_HOOK_BLOCK, lambda uc, address, size, data: trace.append((address, size)))
        try:
            self.uc.emu_start(self.symbols[fn] | 1, halt, timeout=CALL_TIMEOUT_S * 1_000_000)
        finally:
            if hook is not None:
                self.uc.hook_del(hook)
        if self.uc.reg_read(UC_ARM_REG_PC) != halt:
            raise RuntimeError(f"{fn} did not return within {CALL_TIMEOUT_S} s")
        if self.profile:
            self.calls.append([b for b in trace if b[0] != halt])
        return int(np.int32(np.uint32(self.uc.reg_read(UC_ARM_REG_R0))))

    def call_profiles(self):
        """A `profile.Profile` of each call made with profile=True since the last `reset` (one row: the call)."""
        from mcu_attn.sim.profile import BlockCache, build_profile, summarise

        cache = BlockCache(lambda address, count: bytes(self.uc.mem_read(address, count)))
        profiles = []
        for calls in self.calls:
            trace = summarise(np.array([a for a, _ in calls], np.int64), np.array([n for _, n in calls], np.int64), [])
            blocks = [cache.by_size(int(a), int(n)) for a, n in zip(trace.block_starts, trace.block_sizes)]
            profiles.append(build_profile(trace, blocks, [], self.symbols["ma_bench_halt"]))
        return profiles


# ---- the bindings: IR op calling convention -> kernel call ----------------------------------------------------

def _i8(array) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array).astype(np.int8))


def _i32(array) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array, np.int64).astype(np.int32))


def attention_scratch_bytes(query_tile: int, head_dim: int) -> int:
    """ma_attention_s8_scratch: query_tile * (8 head_dim + 8)."""
    return query_tile * (8 * head_dim + 8)


class KernelBindings:
    """`run(op, inputs, attrs)` calls the C kernel of an integer IR op like its numpy reference is called."""

    def __init__(self, backend, query_tiles: Sequence[int] | None = None) -> None:
        self.backend = backend
        self.query_tiles = query_tiles  # None: 1, 3 and the whole sequence

    def run(self, name: str, inputs: tuple, attrs: dict) -> np.ndarray:
        self.backend.reset()
        return getattr(self, name)(*inputs, **attrs)

    def _struct(self, fields, values: dict) -> int:
        return self.backend.input(pack_struct(fields, values, self.backend.pointer_bytes))

    def _linear(self, name: str, x, w, bias, multiplier, bits, tail) -> np.ndarray:
        """ma_<name>_s8/_s4(x, rows, k, n, w, bias, mult, *tail(y)); the output [..., n]."""
        b = self.backend
        k, n = w.shape
        rows = int(np.prod(x.shape[:-1], dtype=np.int64))
        weights = pack_int4(np.asarray(w, np.int64).T) if bits == 4 else _i8(np.asarray(w).T)
        args = [("ptr", b.input(_i8(x))), ("i32", rows), ("i32", k), ("i32", n), ("ptr", b.input(weights)),
                ("ptr", b.input(_i32(bias))), ("ptr", b.input(_i32(np.broadcast_to(multiplier, (n,)))))]
        y = b.output(rows * n, np.int8)
        b.call(f"ma_{name}_s{bits}", *args, *tail(y))
        return b.read(y).reshape(*x.shape[:-1], n)

    def QLinear(self, x, w, bias, *, multiplier, shift, y_zp, bits):
        b = self.backend
        n = w.shape[1]
        return self._linear("linear", x, w, bias, multiplier, bits, lambda y: [
            ("ptr", b.input(_i32(np.broadcast_to(shift, (n,))))), ("i32", y_zp), ("ptr", y.address)])

    def QLinearTable(self, x, w, bias, *, multiplier, shift, y_zp, bits, table):
        b = self.backend
        n = w.shape[1]
        return self._linear("linear_table", x, w, bias, multiplier, bits, lambda y: [
            ("ptr", b.input(_i32(np.broadcast_to(shift, (n,))))), ("i32", y_zp), ("ptr", b.input(_i8(table))),
            ("ptr", y.address)])

    def QLinearAdd(self, x, w, bias, r, *, multiplier, right_shift, r_multiplier, r_left_shift, r_zp, y_zp, bits,
                   in_place: bool = False):
        """in_place: y is written over r (the memory planner's choice when nothing else reads r)."""
        b = self.backend
        params = self._struct(LINEAR_ADD_FIELDS, dict(right_shift=right_shift, r_mult=r_multiplier,
                                                       r_left_shift=r_left_shift, r_zp=r_zp, y_zp=y_zp))

        def tail(y: Output) -> list:
            if in_place:
                b.fill(y, _i8(r))
            return [("ptr", params), ("ptr", y.address if in_place else b.input(_i8(r))), ("ptr", y.address)]

        return self._linear("linear_add", x, w, bias, multiplier, bits, tail)

    def QAttention(self, q, k, v, mask=None, *, heads, head_dim, pattern=DENSE, q_zp, k_zp, v_zp, out_zp,
                   score_multiplier, score_shift, exp_table, out_multiplier, out_shift):
        """Runs every query tile of `query_tiles`: all must agree (the tile changes the schedule and the
        scratch, never the result). k and v of another length than q (projected keys) run ma_attention_kv_s8."""
        b = self.backend
        seq, keys = q.shape[-2], k.shape[-2]
        results = []
        for tile in sorted(set(self.query_tiles or (1, 3, seq))):
            b.reset()
            table = b.input(np.asarray(exp_table, np.int64).astype(np.uint16))
            mask_address = 0 if mask is None else b.input((np.asarray(mask) != 0).astype(np.uint8))
            values = dict(seq=seq, heads=heads, head_dim=head_dim, q_zp=q_zp, k_zp=k_zp, v_zp=v_zp, out_zp=out_zp,
                          score_mult=score_multiplier, score_shift=score_shift, out_mult=out_multiplier,
                          out_shift=out_shift, query_tile=tile, exp_table=table, mask=mask_address)
            values.update((f"pattern.{name}", value) for name, value in pattern.c_fields())
            params = self._struct(ATTENTION_FIELDS, values)
            scratch_bytes = b.call("ma_attention_s8_scratch" if keys == seq else "ma_attention_kv_s8_scratch",
                                   ("ptr", params))
            assert scratch_bytes == attention_scratch_bytes(tile, head_dim)  # O(tile x head_dim): no score row
            scratch, out = b.output(scratch_bytes, np.uint8), b.output(q.size, np.int8)
            kv_seq = [] if keys == seq else [("i32", keys)]
            b.call("ma_attention_s8" if keys == seq else "ma_attention_kv_s8", ("ptr", b.input(_i8(q))),
                   ("ptr", b.input(_i8(k))), ("ptr", b.input(_i8(v))), ("ptr", params), *kv_seq,
                   ("ptr", scratch.address), ("ptr", out.address))
            b.read(scratch)
            results.append(b.read(out).reshape(q.shape))
        assert all(np.array_equal(r, results[0]) for r in results), "the query tile changed the result"
        return results[0]

    def QLayerNorm(self, x, bias, *, multiplier, recip_shift, right_shift, eps):
        b = self.backend
        c = x.shape[-1]
        params = self._struct(LAYERNORM_FIELDS, dict(c=c, recip_shift=recip_shift, right_shift=right_shift, eps=eps,
                                                     mult=b.input(_i32(multiplier)),
                                                     bias=b.input(np.ascontiguousarray(np.asarray(bias, np.int64)))))
        y = b.output(x.size, np.int8)
        b.call("ma_layernorm_s8", ("ptr", b.input(_i8(x))), ("i32", x.size // c), ("ptr", params),
               ("ptr", y.address))
        return b.read(y).reshape(x.shape)

    def QTable(self, x, *, table):
        b = self.backend
        y = b.output(x.size, np.int8)
        b.call("ma_table_s8", ("ptr", b.input(_i8(x))), ("i32", x.size), ("ptr", b.input(_i8(table))),
               ("ptr", y.address))
        return b.read(y).reshape(x.shape)

    def QAdd(self, a, b_in, **attrs):
        b = self.backend
        names = {n: n.replace("mult", "multiplier") for _, n in ADD_FIELDS}
        params = self._struct(ADD_FIELDS, {n: attrs[key] for n, key in names.items()})
        y = b.output(a.size, np.int8)
        b.call("ma_add_s8", ("ptr", b.input(_i8(a))), ("ptr", b.input(_i8(b_in))), ("i32", a.size),
               ("i32", b_in.size), ("ptr", params), ("ptr", y.address))
        return b.read(y).reshape(a.shape)

    def QRequant(self, x, *, in_zp, multiplier, shift, out_zp):
        b = self.backend
        y = b.output(x.size, np.int8)
        b.call("ma_requant_s8", ("ptr", b.input(_i8(x))), ("i32", x.size), ("i32", in_zp), ("i32", multiplier),
               ("i32", shift), ("i32", out_zp), ("ptr", y.address))
        return b.read(y).reshape(x.shape)

    def QRMSNorm(self, x, *, multiplier, shift, eps, in_zp, out_zp):
        b = self.backend
        c = x.shape[-1]
        params = self._struct(RMSNORM_FIELDS, dict(c=c, in_zp=in_zp, out_zp=out_zp, eps=eps,
                                                   mult=b.input(_i32(multiplier)), shift=b.input(_i32(shift))))
        y = b.output(x.size, np.int8)
        b.call("ma_rmsnorm_s8", ("ptr", b.input(_i8(x))), ("i32", x.size // c), ("ptr", params), ("ptr", y.address))
        return b.read(y).reshape(x.shape)

    def QRotary(self, x, cos_q, sin_q, *, heads, x_zp, multiplier, shift, y_zp):
        b = self.backend
        width = x.shape[-1]
        y = b.output(x.size, np.int8)
        tables = [b.input(np.ascontiguousarray(np.asarray(t, np.int64).astype(np.int16))) for t in (cos_q, sin_q)]
        b.call("ma_rotary_s8", ("ptr", b.input(_i8(x))), ("i32", x.size // width), ("i32", heads),
               ("i32", width // heads), ("ptr", tables[0]), ("ptr", tables[1]), ("i32", x_zp), ("i32", multiplier),
               ("i32", shift), ("i32", y_zp), ("ptr", y.address))
        return b.read(y).reshape(x.shape)

    def QMul(self, a, b_in, *, a_zp, b_zp, multiplier, shift, y_zp):
        b = self.backend
        y = b.output(a.size, np.int8)
        b.call("ma_mul_s8", ("ptr", b.input(_i8(a))), ("ptr", b.input(_i8(b_in))), ("i32", a.size),
               ("i32", b_in.size), ("i32", a_zp), ("i32", b_zp), ("i32", multiplier), ("i32", shift), ("i32", y_zp),
               ("ptr", y.address))
        return b.read(y).reshape(a.shape)

    def QEarlyExit(self, full, early, *, gap_table, bound, early_zp, multiplier, shift, out_zp):
        """The kernel writes the output only when the head is confident (it returns 1): `full` otherwise."""
        b = self.backend
        params = self._struct(EARLY_EXIT_FIELDS, dict(
            count=early.size, early_zp=early_zp, mult=multiplier, shift=shift, out_zp=out_zp, bound=bound,
            gap_table=b.input(np.asarray(gap_table, np.int64).astype(np.uint16))))
        y = b.output(early.size, np.int8)
        taken = b.call("ma_early_exit_s8", ("ptr", b.input(_i8(early))), ("ptr", params), ("ptr", y.address))
        written = b.read(y).reshape(full.shape)
        untouched = bool((written.view(np.uint8) == GUARD_VALUE).all())
        assert taken in (0, 1) and (taken or untouched), "ma_early_exit_s8 wrote an output it did not take"
        return written if taken else np.asarray(full, np.int8)

    def QTokenSelect(self, x, q, k, *, heads, head_dim, keep, cls, q_zp, k_zp, score_multiplier, score_shift,
                     exp_table):
        b = self.backend
        seq, width = x.shape[-2], x.shape[-1]
        params = self._struct(TOKEN_SELECT_FIELDS, dict(
            seq=seq, width=width, heads=heads, head_dim=head_dim, keep=keep, cls=cls, q_zp=q_zp, k_zp=k_zp,
            score_mult=score_multiplier, score_shift=score_shift,
            exp_table=b.input(np.asarray(exp_table, np.int64).astype(np.uint16))))
        scratch_bytes = b.call("ma_token_select_s8_scratch", ("ptr", params))
        assert scratch_bytes == (9 * seq + 7) // 8 * 8
        scratch, y = b.output(scratch_bytes, np.uint8), b.output((keep + 1) * width, np.int8)
        b.call("ma_token_select_s8", ("ptr", b.input(_i8(x))), ("ptr", b.input(_i8(q))), ("ptr", b.input(_i8(k))),
               ("ptr", params), ("ptr", scratch.address), ("ptr", y.address))
        b.read(scratch)
        return b.read(y).reshape(*x.shape[:-2], keep + 1, width)


    def QAttentionStep(self, q, k, v, keys, values, filled, *, heads, head_dim, window, q_zp, k_zp, v_zp, out_zp,
                       score_multiplier, score_shift, exp_table, out_multiplier, out_shift):
        """The reference's state (the last `filled` of window - 1 rows) as the kernel's ring: those rows in slots
        0.., the next slot after them; after the call the ring must hold them and the new k and v."""
        b = self.backend
        width, count = heads * head_dim, int(filled)
        kept_k, kept_v = np.asarray(keys)[window - 1 - count:], np.asarray(values)[window - 1 - count:]
        ring = np.zeros(8 + 2 * window * width, np.uint8)
        ring[:8] = np.array([count % window, count], np.int32).view(np.uint8)
        slots = ring[8:].view(np.int8).reshape(2, window, width)
        slots[0, :count], slots[1, :count] = kept_k, kept_v
        table = b.input(np.asarray(exp_table, np.int64).astype(np.uint16))
        values = dict(seq=window, heads=heads, head_dim=head_dim, q_zp=q_zp, k_zp=k_zp, v_zp=v_zp, out_zp=out_zp,
                      score_mult=score_multiplier, score_shift=score_shift, out_mult=out_multiplier,
                      out_shift=out_shift, query_tile=1, exp_table=table, mask=0)
        values.update((f"pattern.{name}", value)
                      for name, value in AttentionPattern(window=window, causal=True).c_fields())
        params = self._struct(ATTENTION_FIELDS, values)
        assert b.call("ma_attention_step_s8_scratch", ("ptr", params)) == 8 * head_dim
        state, scratch, y = b.inout(ring), b.output(8 * head_dim, np.uint8), b.output(width, np.int8)
        b.call("ma_attention_step_s8", ("ptr", b.input(_i8(q))), ("ptr", b.input(_i8(k))), ("ptr", b.input(_i8(v))),
               ("ptr", params), ("ptr", state.address), ("ptr", scratch.address), ("ptr", y.address))
        after = b.read(state)
        b.read(scratch)
        slots[0, count % window], slots[1, count % window] = np.reshape(k, width), np.reshape(v, width)
        ring[:8] = np.array([(count + 1) % window, min(count + 1, window)], np.int32).view(np.uint8)
        assert np.array_equal(after, ring), "ma_attention_step_s8 left another ring than one step further"
        return b.read(y).reshape(np.shape(q))


S8_FUNCTIONS = ("ma_linear_s8", "ma_linear_s4", "ma_linear_table_s8", "ma_linear_table_s4", "ma_linear_add_s8",
                "ma_linear_add_s4", "ma_attention_s8", "ma_attention_s8_scratch", "ma_attention_kv_s8",
                "ma_attention_kv_s8_scratch",
                "ma_layernorm_s8",
                "ma_table_s8", "ma_add_s8", "ma_requant_s8", "ma_rmsnorm_s8", "ma_rotary_s8", "ma_mul_s8",
                "ma_early_exit_s8", "ma_token_select_s8", "ma_token_select_s8_scratch", "ma_attention_step_s8",
                "ma_attention_step_s8_scratch", "ma_event_s8")
