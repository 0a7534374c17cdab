"""Worst-case stack depth of a linked firmware: the deepest call chain from `Reset_Handler`.

Sources, in order of trust:
1. gcc's `-fcallgraph-info=su` files (`build/**/*.ci`, VCG text): one node per function the project compiled,
   labelled with its frame size from `-fstack-usage` ("N bytes (static)"), and one edge per call site;
2. the linked ELF, for what gcc cannot see: library functions (newlib, libgcc) get the frame their machine code
   builds (the running total of push/vpush/`sub sp` along the function, read with capstone), and every function's
   `bl` targets add the calls the compiler emitted itself (`__aeabi_*` helpers, memcpy for struct copies).

Functions are identified by address, so same-named static functions of different files stay apart. The bound is
the largest sum of frames along any path of the call graph, rounded up to 8 bytes (AAPCS stack alignment).
Not counted: exception frames (the firmware enables no interrupt; a fault ends in an endless loop) and indirect
calls (the generated code makes none; `indirect` lists any found). A cycle (recursion) makes the bound
unknowable: it is reported in `recursion` and its back edge ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = "Reset_Handler"
_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_FRAME = re.compile(r"\\n(\d+) bytes \(([a-z,]+)\)")
_IMM = re.compile(r"#(-?(?:0x[0-9a-f]+|\d+))")
_PRE_INDEX = re.compile(r"\[sp, #-(0x[0-9a-f]+|\d+)\]!")


@dataclass
class Function:
    name: str
    address: int
    size: int
    file: str | None          # the STT_FILE in force for a local symbol, None for a global one
    frame: int = 0
    frame_source: str = "elf"  # "su" (gcc -fstack-usage) or "elf" (machine code)
    qualifier: str = ""        # gcc's static / dynamic / dynamic,bounded
    calls: set[int] = field(default_factory=set)
    indirect: bool = False


@dataclass(frozen=True)
class StackBound:
    bytes: int
    chain: tuple[str, ...]
    frames: tuple[tuple[str, int, str], ...]   # (function, frame bytes, "su" or "elf") along the chain
    indirect: tuple[str, ...]
    dynamic: tuple[str, ...]
    recursion: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "root": ROOT, "chain": [{"function": name, "frame": size, "from": source}
                                                             for name, size, source in self.frames],
                "indirect_calls": list(self.indirect), "dynamic_frames": list(self.dynamic),
                "recursion": list(self.recursion),
                "method": "gcc -fstack-usage/-fcallgraph-info=su for compiled code, machine-code frames for "
                          "library code, deepest call chain from Reset_Handler"}


def _functions(elf) -> dict[int, Function]:
    from elftools.elf.sections import SymbolTableSection

    table = elf.get_section_by_name(".symtab")
    if not isinstance(table, SymbolTableSection):
        raise ValueError("the ELF has no symbol table")
    found: dict[int, Function] = {}
    current_file = None
    for symbol in table.iter_symbols():
        kind = symbol["st_info"]["type"]
        if kind == "STT_FILE":
            current_file = symbol.name
            continue
        if kind != "STT_FUNC" or symbol["st_shndx"] == "SHN_UNDEF":
            continue
        address = symbol["st_value"] & ~1
        local = symbol["st_info"]["bind"] == "STB_LOCAL"
        if address not in found or not local:  # an alias: prefer the global name
            found[address] = Function(symbol.name, address, symbol["st_size"], current_file if local else None)
    return found


def _code(elf, function: Function) -> bytes:
    for section in elf.iter_sections():
        start, size = section["sh_addr"], section["sh_size"]
        if section["sh_flags"] & 0x4 and start <= function.address < start + size:  # SHF_EXECINSTR
            offset = function.address - start
            return section.data()[offset:offset + function.size]
    return b""


def _count_registers(operands: str) -> tuple[int, int]:
    """(core registers, bytes) in a register list like {r4, r5, lr} or {d8, d9}."""
    names = [name.strip() for name in operands.strip("{} ").split(",") if name.strip()]
    size = sum(8 if name.startswith("d") else 4 for name in names)
    return len(names), size


def _scan(elf, function: Function, starts: set[int]) -> None:
    """The frame a function builds (max running total of its stack adjustments) and the functions it calls."""
    from capstone import CS_ARCH_ARM, CS_MODE_MCLASS, CS_MODE_THUMB, Cs

    disassembler = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
    depth = deepest = 0
    end = function.address + function.size
    for address, _size, mnemonic, operands in disassembler.disasm_lite(_code(elf, function), function.address):
        base = mnemonic.split(".")[0]
        if base in ("push", "vpush") or (base == "stmdb" and operands.startswith("sp!")):
            depth += _count_registers(operands.split(",", 1)[1] if base == "stmdb" else operands)[1]
        elif base in ("pop", "vpop") or (base == "ldm" and operands.startswith("sp!")):
            depth -= _count_registers(operands.split(",", 1)[1] if base == "ldm" else operands)[1]
        elif base in ("sub", "subw") and operands.startswith("sp,") and _IMM.search(operands):
            depth += int(_IMM.search(operands).group(1), 0)
        elif base in ("add", "addw") and operands.startswith("sp,") and _IMM.search(operands):
            depth -= int(_IMM.search(operands).group(1), 0)
        elif _PRE_INDEX.search(operands):
            depth += int(_PRE_INDEX.search(operands).group(1), 0)
        elif base in ("bl", "b", "blx"):
            target = _IMM.search(operands)
            if target is None:
                function.indirect = function.indirect or base == "blx"
            else:
                address_to = int(target.group(1), 0) & ~1
                outside = not function.address <= address_to < end
                if address_to in starts and (base == "bl" or outside):
                    function.calls.add(address_to)
        deepest = max(deepest, depth)
    function.frame = deepest


def _read_callgraph(files: list[Path]) -> tuple[dict[str, tuple[int, str]], set[tuple[str, str]]]:
    """Node title -> (frame bytes, qualifier) for the functions gcc compiled, and the call edges by title."""
    frames: dict[str, tuple[int, str]] = {}
    edges: set[tuple[str, str]] = set()
    for path in files:
        text = path.read_text()
        for title, label in _NODE.findall(text):
            match = _FRAME.search(label)
            if match:
                frames[title] = (int(match.group(1)), match.group(2))
        edges.update(_EDGE.findall(text))
    return frames, edges


def _resolver(functions: dict[int, Function]):
    by_global = {f.name: a for a, f in functions.items() if f.file is None}
    by_local: dict[tuple[str, str], int] = {}
    by_name: dict[str, list[int]] = {}
    for address, function in functions.items():
        by_name.setdefault(function.name, []).append(address)
        if function.file is not None:
            by_local[(PurePosixPath(function.file).name, function.name)] = address

    def resolve(title: str) -> int | None:
        if ":" in title:
            source, name = title.rsplit(":", 1)
            found = by_local.get((PurePosixPath(source).name, name))
            if found is not None:
                return found
        else:
            name = title
            if name in by_global:
                return by_global[name]
        candidates = by_name.get(name, [])
        return candidates[0] if len(candidates) == 1 else None

    return resolve


def stack_bound(elf_path: Path, callgraph_files: list[Path]) -> StackBound:
    """The deepest call chain from Reset_Handler in `elf_path`, with gcc's frames where gcc reported them."""
    from elftools.elf.elffile import ELFFile

    with open(elf_path, "rb") as stream:
        elf = ELFFile(stream)
        functions = _functions(elf)
        starts = set(functions)
        for function in functions.values():
            _scan(elf, function, starts)
    frames, edges = _read_callgraph(sorted(callgraph_files))
    resolve = _resolver(functions)
    for title, (size, qualifier) in frames.items():
        address = resolve(title)
        if address is not None:
            functions[address].frame, functions[address].frame_source = size, "su"
            functions[address].qualifier = qualifier
    for source, target in edges:
        source_address, target_address = resolve(source), resolve(target)
        if source_address is not None and target_address is not None:
            functions[source_address].calls.add(target_address)

    roots = [a for a, f in functions.items() if f.name == ROOT]
    if not roots:
        raise ValueError(f"{elf_path.name} has no {ROOT}")
    depth: dict[int, tuple[int, list[int]]] = {}
    recursion: set[str] = set()

    def visit(address: int, active: set[int]) -> tuple[int, list[int]]:
        if address in depth:
            return depth[address]
        active.add(address)
        best, best_chain = 0, []
        for callee in sorted(functions[address].calls):
            if callee in active:
                recursion.add(functions[callee].name)
                continue
            total, chain = visit(callee, active)
            if total > best:
                best, best_chain = total, chain
        active.discard(address)
        depth[address] = (functions[address].frame + best, [address] + best_chain)
        return depth[address]

    total, chain = visit(roots[0], set())
    reachable = set(depth)
    return StackBound(
        bytes=(total + 7) // 8 * 8,
        chain=tuple(functions[a].name for a in chain),
        frames=tuple((functions[a].name, functions[a].frame, functions[a].frame_source) for a in chain),
        indirect=tuple(sorted(functions[a].name for a in reachable if functions[a].indirect)),
        dynamic=tuple(sorted(functions[a].name for a in reachable if "dynamic" in functions[a].qualifier)),
        recursion=tuple(sorted(recursion)))
