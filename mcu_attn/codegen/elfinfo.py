"""Sizes of a linked firmware, read from its ELF section headers (pyelftools).

- flash: every allocated section with contents (.isr_vector, .text, .rodata, .ARM.exidx/.extab) plus the load
  image of .data, which the linker places in flash too: the sum of the sizes of all allocated PROGBITS sections;
- RAM: the allocated sections whose run address lies in SRAM (.data, .bss, .noinit), without the .stack
  reservation, which the report replaces by the computed stack bound.
"""

from __future__ import annotations

from pathlib import Path

STACK_SECTION = ".stack"
SHF_ALLOC = 0x2


def sections(elf_path: Path) -> list[dict]:
    """Allocated sections in address order: name, address, size, and whether the file holds their bytes."""
    from elftools.elf.elffile import ELFFile

    with open(elf_path, "rb") as stream:
        elf = ELFFile(stream)
        found = [{"name": s.name, "address": s["sh_addr"], "size": s["sh_size"],
                  "loaded": s["sh_type"] != "SHT_NOBITS"}
                 for s in elf.iter_sections() if s["sh_flags"] & SHF_ALLOC and s["sh_size"] > 0]
    return sorted(found, key=lambda s: (s["address"], s["name"]))


def symbols(elf_path: Path, names: list[str]) -> dict[str, dict]:
    """Address and size of the named symbols that exist in the ELF (Thumb bit cleared for functions)."""
    from elftools.elf.elffile import ELFFile

    wanted, found = set(names), {}
    with open(elf_path, "rb") as stream:
        table = ELFFile(stream).get_section_by_name(".symtab")
        for symbol in table.iter_symbols():
            if symbol.name in wanted and symbol["st_shndx"] != "SHN_UNDEF":
                kind = symbol["st_info"]["type"]
                address = symbol["st_value"] & ~1 if kind == "STT_FUNC" else symbol["st_value"]
                found[symbol.name] = {"address": address, "size": symbol["st_size"], "type": kind}
    return found


def memory_use(section_list: list[dict], sram_base: int, sram_bytes: int) -> dict:
    flash = sum(s["size"] for s in section_list if s["loaded"])
    in_ram = [s for s in section_list if sram_base <= s["address"] < sram_base + sram_bytes]
    ram = sum(s["size"] for s in in_ram if s["name"] != STACK_SECTION)
    return {"flash_bytes": flash, "ram_static_bytes": ram,
            "stack_reserved_bytes": sum(s["size"] for s in in_ram if s["name"] == STACK_SECTION)}
