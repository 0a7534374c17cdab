"""Classify Thumb-2 (ARMv7E-M / ARMv8-M mainline) instructions for the cycle model, one basic block at a time.

A block is disassembled once with capstone (the profilers cache the result by address) and summarised as a
vector of counts (`FIELDS`): how many instructions of each timing class it holds, how many registers its load
and store multiples move, how many of its single loads can pipeline behind the previous load, and how many
32-bit words it reads and writes. Branch outcomes are not static: a block "ends in a PC write" when its last
instruction can change the program flow, and the profiler decides taken / not taken from the next block that
ran (taken when it does not start where this block ends).

Timing classes (docs/cycle-model.md gives each class its cost per core):
  alu      data processing, moves, compares, shifts, saturation, packing, SIMD add/sub, bit fields, IT, ...
  mul      MUL, SMULxy, SMULWx, SMMUL, SMULL/UMULL, SMUAD, ...
  mac      multiply-accumulate: MLA, MLS, SMLAxy, SMLAD(X), SMLSD, SMLAL*, UMLAL, UMAAL, SMMLA, USADA8, ...
  div      SDIV, UDIV
  load     single loads (LDR*, LDRD, VLDR, TBB/TBH read their table too); `load_pipelined` counts those that
           follow a single load in the same block without using its result as their address
  store    single stores (STR*, STRD, VSTR)
  load_multiple / store_multiple   LDM/POP/VLDM/VPOP and STM/PUSH/VSTM/VPUSH, with the registers moved
  branch   B, BL, BX, BLX, CBZ, CBNZ (TBB/TBH count as loads that write the PC)
  fp, fp_mac, fp_div   VFP data processing (VADD, VMUL, VCVT, VMOV, VCMP, ...), multiply-accumulate (VMLA,
           VFMA, ...), divide and square root
  other    NOP, barriers, hints, system register moves, BKPT, SVC, anything unrecognised
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FIELDS = ("instructions", "alu", "mul", "mac", "div", "load", "load_pipelined", "load_double", "store",
          "store_double", "load_multiple", "load_multiple_regs", "store_multiple", "store_multiple_regs",
          "branch", "fp", "fp_mac", "fp_div", "other", "reads", "writes")
INDEX = {name: i for i, name in enumerate(FIELDS)}

_MUL = {"mul", "muls", "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt", "smmul", "smmulr", "smull",
        "umull", "smuad", "smuadx", "smusd", "smusdx"}
_MAC = {"mla", "mls", "smlabb", "smlabt", "smlatb", "smlatt", "smlawb", "smlawt", "smlad", "smladx", "smlsd",
        "smlsdx", "smlal", "smlalbb", "smlalbt", "smlaltb", "smlaltt", "smlald", "smlaldx", "smlsld",
        "smlsldx", "umlal", "umaal", "smmla", "smmlar", "smmls", "smmlsr", "usada8"}
_DIV = {"sdiv", "udiv"}
# The DSP extension's single-cycle data processing (Cortex-M4 TRM, DDI 0439, Table 3-1: "Saturate SSAT, USAT",
# "Packing PKHBT, PKHTB", "Extend SXTB16, UXTB16, SXTAB16, ...", "Parallel add/subtract", "Saturating add QADD"
# each 1 cycle): named here so that they are alu on purpose, not by falling through. SMLAD, SMLABB and their
# kind are in _MAC (Table 3-1: "Multiply ... with accumulate ... 1").
_DSP_ALU = {"sxtb16", "sxtab16", "uxtb16", "uxtab16", "sxtab", "sxtah", "uxtab", "uxtah", "ssat", "usat",
            "ssat16", "usat16", "qadd", "qsub", "qdadd", "qdsub", "qadd16", "qsub16", "qadd8", "qsub8", "qasx",
            "qsax", "pkhbt", "pkhtb", "sadd16", "ssub16", "sadd8", "ssub8", "uadd16", "usub16", "uadd8", "usub8",
            "sasx", "ssax", "uasx", "usax", "shadd16", "shsub16", "uhadd16", "uhsub16", "shadd8", "uhadd8", "sel",
            "usad8"}
_BRANCH = {"b", "bl", "bx", "blx", "cbz", "cbnz"}
_TABLE_BRANCH = {"tbb", "tbh"}
_LOAD_MULTI = {"ldm", "ldmia", "ldmdb", "ldmda", "ldmib", "pop", "vldmia", "vldmdb", "vpop", "vldm"}
_STORE_MULTI = {"stm", "stmia", "stmdb", "stmda", "stmib", "push", "vstmia", "vstmdb", "vpush", "vstm"}
_LOAD = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrt", "ldrbt", "ldrht", "ldrsbt", "ldrsht", "ldrex",
         "ldrexb", "ldrexh", "ldrd", "vldr", "lda", "ldab", "ldah", "ldaex", "ldaexb", "ldaexh", "pld", "pli"}
_STORE = {"str", "strb", "strh", "strt", "strbt", "strht", "strex", "strexb", "strexh", "strd", "vstr", "stl",
          "stlb", "stlh", "stlex", "stlexb", "stlexh"}
_FP_MAC = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"}
_FP_DIV = {"vdiv", "vsqrt"}
_OTHER = {"nop", "hint", "dmb", "dsb", "isb", "bkpt", "svc", "wfi", "wfe", "sev", "yield", "mrs", "msr", "cpsid",
          "cpsie", "udf", "clrex"}
_DOUBLE_LOADS = {"ldrd"}
_DOUBLE_STORES = {"strd"}


@dataclass(frozen=True)
class Block:
    """A basic block's static summary: `vector` holds one count per name in FIELDS."""
    address: int
    end: int                 # address just past the last instruction
    vector: np.ndarray       # int64[len(FIELDS)]
    writes_pc: bool          # the last instruction may change the flow (branch, POP {pc}, LDR pc, ...)


def _base_name(insn) -> str:
    """capstone's instruction name without condition/width/type suffixes ('ldr', 'vmla', 'smlad', ...)."""
    return insn.insn_name().lower()


@lru_cache(maxsize=None)
def _disassembler():
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    md.detail = True
    return md


def _register_count(insn, names) -> int:
    """Registers a load/store multiple moves, in 32-bit words (a D register is two)."""
    import capstone.arm as arm

    count = 0
    operands = insn.operands
    start = 0
    if names not in ("push", "pop", "vpush", "vpop"):
        start = 1  # the base register
    for operand in operands[start:]:
        if operand.type == arm.ARM_OP_REG:
            name = insn.reg_name(operand.reg)
            count += 2 if name.startswith("d") else 1
    return max(count, 1)


def _writes_pc(insn, name: str) -> bool:
    if name in _BRANCH or name in _TABLE_BRANCH:
        return True
    try:
        written = insn.regs_access()[1]
    except Exception:  # noqa: BLE001 - capstone raises on instructions without detail
        return False
    return any(insn.reg_name(r) == "pc" for r in written)


def _memory_base(insn):
    """(base, index) register ids of a memory operand, or (None, None)."""
    import capstone.arm as arm

    for operand in insn.operands:
        if operand.type == arm.ARM_OP_MEM:
            return operand.mem.base, operand.mem.index
    return None, None


def _destination(insn):
    import capstone.arm as arm

    operands = insn.operands
    if operands and operands[0].type == arm.ARM_OP_REG:
        return operands[0].reg
    return None


def classify(code: bytes, address: int) -> Block:
    """Summarise the instructions of one block (`code` starts at `address`)."""
    vector = np.zeros(len(FIELDS), np.int64)
    previous_load_dest = None   # destination of the previous instruction if it was a single load
    last = None                 # (instruction, base name) of the last instruction
    end = address
    for insn in _disassembler().disasm(code, address):
        name = _base_name(insn)
        last = insn, name
        end = insn.address + insn.size
        vector[INDEX["instructions"]] += 1
        single_load_dest = None
        if name in _LOAD or name in _TABLE_BRANCH:
            vector[INDEX["load"]] += 1
            words = 2 if name in _DOUBLE_LOADS or (name == "vldr" and _is_double(insn)) else 1
            vector[INDEX["reads"]] += words
            if words == 2:
                vector[INDEX["load_double"]] += 1
            base, index = _memory_base(insn)
            if previous_load_dest is not None and words == 1 and previous_load_dest not in (base, index):
                vector[INDEX["load_pipelined"]] += 1
            if words == 1 and name not in _TABLE_BRANCH:
                single_load_dest = _destination(insn)
        elif name in _STORE:
            vector[INDEX["store"]] += 1
            words = 2 if name in _DOUBLE_STORES or (name == "vstr" and _is_double(insn)) else 1
            vector[INDEX["writes"]] += words
            if words == 2:
                vector[INDEX["store_double"]] += 1
        elif name in _LOAD_MULTI:
            regs = _register_count(insn, name)
            vector[INDEX["load_multiple"]] += 1
            vector[INDEX["load_multiple_regs"]] += regs
            vector[INDEX["reads"]] += regs
        elif name in _STORE_MULTI:
            regs = _register_count(insn, name)
            vector[INDEX["store_multiple"]] += 1
            vector[INDEX["store_multiple_regs"]] += regs
            vector[INDEX["writes"]] += regs
        elif name in _BRANCH:
            vector[INDEX["branch"]] += 1
        elif name in _DIV:
            vector[INDEX["div"]] += 1
        elif name in _MAC:
            vector[INDEX["mac"]] += 1
        elif name in _MUL:
            vector[INDEX["mul"]] += 1
        elif name in _FP_MAC:
            vector[INDEX["fp_mac"]] += 1
        elif name in _FP_DIV:
            vector[INDEX["fp_div"]] += 1
        elif name.startswith("v"):
            vector[INDEX["fp"]] += 1
        elif name in _OTHER:
            vector[INDEX["other"]] += 1
        elif name in _DSP_ALU:
            vector[INDEX["alu"]] += 1
        else:
            vector[INDEX["alu"]] += 1
        previous_load_dest = single_load_dest
    return Block(address, end, vector, last is not None and _writes_pc(*last))


def _is_double(insn) -> bool:
    import capstone.arm as arm

    operands = insn.operands
    return bool(operands) and operands[0].type == arm.ARM_OP_REG and insn.reg_name(operands[0].reg).startswith("d")

