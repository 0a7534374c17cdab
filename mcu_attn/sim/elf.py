"""The firmware ELF an emulator runs: load image, symbols, and the harness symbols of docs/firmware.md.

Function symbols of Thumb code carry the Thumb bit (bit 0) in `st_value`; addresses here have it cleared, so
they compare equal to program counters. Every problem is a `UserError` naming the file and what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcu_attn.codegen.elfinfo import SHF_ALLOC
from mcu_attn.errors import UserError

HARNESS_SYMBOLS = ("ma_harness_input", "ma_harness_output", "ma_harness_infer", "ma_harness_idle",
                   "ma_harness_halt")


@dataclass(frozen=True)
class Region:
    """Bytes the loader places at `address` (file data), followed by zeros up to `size`."""
    address: int
    data: bytes
    size: int


@dataclass(frozen=True)
class Firmware:
    path: Path
    machine: str
    regions: tuple[Region, ...]            # PT_LOAD segments at their load (physical) addresses
    allocated: tuple[tuple[int, int], ...]  # (address, size) of every SHF_ALLOC section (NOLOAD included)
    symbols: dict[str, int]                 # name -> address (Thumb bit cleared on functions)
    sizes: dict[str, int]
    functions: frozenset[str] = frozenset()    # names of STT_FUNC symbols

    def address(self, name: str) -> int:
        if name not in self.symbols:
            raise UserError(f"{self.path}: no symbol {name!r}; simulate runs firmware built by "
                            f"`mcu-attn build --target <Cortex-M target>` (docs/firmware.md)")
        return self.symbols[name]

    def read(self, address: int, count: int) -> bytes:
        """`count` bytes of the load image from `address` (zeros past a segment's file data)."""
        for region in self.regions:
            if region.address <= address and address + count <= region.address + region.size:
                start = address - region.address
                chunk = region.data[start:start + count]
                return chunk + bytes(count - len(chunk))
        raise UserError(f"{self.path}: address {address:#x} is outside the load image")


def load_firmware(path: str | Path) -> Firmware:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (was the build made with arm-none-eabi-gcc installed?)")
    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            machine = elf["e_machine"]
            if machine != "EM_ARM" or elf.elfclass != 32:
                raise UserError(f"{path}: not a 32-bit Arm ELF ({machine}); simulate runs Cortex-M firmware")
            regions = tuple(Region(seg["p_paddr"], seg.data(), seg["p_memsz"]) for seg in elf.iter_segments()
                            if seg["p_type"] == "PT_LOAD" and seg["p_memsz"])
            allocated = tuple((sec["sh_addr"], sec["sh_size"]) for sec in elf.iter_sections()
                              if sec["sh_flags"] & SHF_ALLOC and sec["sh_size"])
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                raise UserError(f"{path}: no symbol table (stripped ELF); simulate needs the harness symbols")
            symbols, sizes, functions = {}, {}, set()
            for sym in symtab.iter_symbols():
                if not sym.name or sym["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                    continue
                value = sym["st_value"]
                if sym["st_info"]["type"] == "STT_FUNC":
                    value &= ~1
                    functions.add(sym.name)
                symbols[sym.name] = value
                sizes[sym.name] = sym["st_size"]
    except ELFError as err:
        raise UserError(f"{path}: not a readable ELF file ({err})") from None
    firmware = Firmware(path, machine, regions, allocated, symbols, sizes, frozenset(functions))
    for name in HARNESS_SYMBOLS:
        firmware.address(name)
    return firmware
