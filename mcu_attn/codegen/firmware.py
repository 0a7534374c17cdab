"""The Cortex-M half of a generated project (docs/firmware.md): board files from the target table.

`board_files(project, target, model)` adds, to the model sources `emit.generate` wrote, the harness `main.c`
(replacing the host one), `board.h`, `console.c` (the console UART driver the target's `console_uart` names),
`startup.c` (with the target's bring-up register operations), `bringup.c`, `Makefile`, `CMakeLists.txt` with `cmake/arm-none-eabi.cmake`, and `renode/<target>.resc/.robot`
where the target has a Renode platform. `linker_script(target, model, stack_bytes)` renders `linker.ld` once the
stack bound is known (it comes from compiling, see `mcu_attn/codegen/stack.py`). Everything is rendered from
templates under `mcu_attn/firmware_templates/{cortexm,renode}` with StrictUndefined; nothing depends on the output
path or the time, so two builds give the same bytes.
"""

from __future__ import annotations

import re

from mcu_attn.codegen.emit import Project, comment_text, environment
from mcu_attn.codegen.kernels import TEMPLATES
from mcu_attn.errors import UserError
from mcu_attn.targets.boards import WAIT_LIMIT, console
from mcu_attn.targets.table import Target

ELF = "model.elf"
LINKER_SCRIPT = "linker.ld"
BOARD_SOURCES = ("main.c", "startup.c", "bringup.c", "console.c")
RENODE_TIMEOUT_S = 120   # seconds of host time the Robot test waits for the line (the Cortex-M7 runs ~100 MIPS)


def _hex(value: int) -> str:
    return f"0x{value:08X}"


def arch_flags(target: Target) -> str:
    return " ".join(target.cflags)


def copies_tables(target: Target) -> bool:
    """Whether ma_init copies the hot tables to RAM (model.c.j2; docs/firmware.md): where the target table gives
    the flash wait states (with their citation) and they are not zero."""
    return not target.is_host and bool(target.flash_wait_states)


def board_defines(target: Target) -> str:
    """Preprocessor facts of the board for the model sources."""
    return "-DMA_TABLES_IN_SRAM=1" if copies_tables(target) else ""


def _bringup(target: Target) -> dict:
    """The start-up's register operations (targets/boards.py), as C initializers."""
    if target.bringup is None:
        return {"bringup": [], "bringup_source": ""}
    kinds = {"require": "MA_OP_REQUIRE", "modify": "MA_OP_MODIFY", "wait": "MA_OP_WAIT"}
    return {"bringup_source": comment_text(target.bringup.source),
            "bringup": [{"kind": kinds[op.kind], "address": f"0x{op.address:08X}u", "mask": f"0x{op.mask:08X}u",
                         "value": f"0x{op.value:08X}u", "what": comment_text(op.what)} for op in target.bringup.ops]}


def firmware_sources(project: Project) -> list[str]:
    """Link order: the harness and board files, then the model sources and kernels as emit listed them."""
    return list(BOARD_SOURCES) + [s for s in project.sources if s != "main.c"]


def board_files(project: Project, target: Target, model: str) -> dict[str, bytes]:
    """The Cortex-M project files for `target`, keyed by relative path (linker.ld comes later)."""
    env = environment()
    board = console(target)
    common = {"model": comment_text(model), "target": target.name, "core": target.core}
    sources = firmware_sources(project)
    headers = ["board.h"] + project.headers
    texts = {
        "board.h": env.get_template("cortexm/board.h.j2").render(
            **common, has_fpu=int(target.fpu is not None), has_dwt=int(target.has_dwt),
            has_cache=int(target.core == "cortex-m7"), macros=list(board.macros), wait_limit=WAIT_LIMIT),
        "main.c": env.get_template("cortexm/main.c.j2").render(**common, stream=project.stream is not None),
        "startup.c": env.get_template("cortexm/startup.c.j2").render(**common, **_bringup(target)),
        "Makefile": env.get_template("cortexm/Makefile.j2").render(
            **common, arch_flags=arch_flags(target), defines=board_defines(target), sources=sources,
            headers=headers),
        "CMakeLists.txt": env.get_template("cortexm/CMakeLists.txt.j2").render(
            **common, arch_flags=arch_flags(target), defines=board_defines(target), sources=sources,
            project_name=re.sub(r"[^0-9A-Za-z_]+", "_", model).strip("_") or "model"),
        "cmake/arm-none-eabi.cmake": env.get_template("cortexm/arm-none-eabi.cmake.j2").render(),
    }
    if target.renode_platform:
        if not target.renode_uart:
            raise UserError(f"target {target.name}: the target table names a Renode platform but not its console "
                            f"UART (renode_uart)")
        renode = {**common, "platform": target.renode_platform, "uart": target.renode_uart,
                  "timeout": RENODE_TIMEOUT_S}
        texts[f"renode/{target.name}.resc"] = env.get_template("renode/board.resc.j2").render(**renode)
        texts[f"renode/{target.name}.robot"] = env.get_template("renode/board.robot.j2").render(**renode)
    files = {name: text.encode() for name, text in texts.items()}
    files["console.c"] = (TEMPLATES / "cortexm" / board.source).read_bytes()
    files["bringup.c"] = (TEMPLATES / "cortexm" / "bringup.c").read_bytes()
    return {name: project.renamer.file(name, data) for name, data in files.items()}


def linker_script(target: Target, model: str, stack_bytes: int) -> bytes:
    return environment().get_template("cortexm/linker.ld.j2").render(
        model=comment_text(model), target=target.name, flash_base=_hex(target.flash_base), flash_bytes=target.flash_bytes,
        sram_base=_hex(target.sram_base), sram_bytes=target.sram_bytes, stack_bytes=stack_bytes,
        stack_note="" if stack_bytes else " /* no bound computed yet (report.json \"compiled\") */").encode()
