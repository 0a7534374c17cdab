"""The build options: one frozen value that `eval`, `build`, `simulate` and `sweep` all compile from.

`BuildOptions` is what the command line's BUILD OPTIONS say (docs/DESIGN section 1). `build` records it in
`report.json` ("options"), and `simulate` rebuilds its reference from exactly that record (`from_record`), so
the firmware and the reference it is checked against cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mcu_attn.errors import UserError

BITS = (8, 4, 32)
DEFAULT_BITS = 8  # the mission's build: int8 (a float model needs --calib; --bits 32 is the float baseline)


@dataclass(frozen=True)
class BuildOptions:
    bits: int = DEFAULT_BITS        # 8 or 4: integer weights (int8 activations); 32: the float baseline
    calib: str | None = None        # .npy stack of calibration samples (a float model needs it for 8 and 4)
    prune_heads: float = 0.0        # fraction of attention heads removed (passes/prune.py)
    prune_ffn: float = 0.0          # fraction of FFN hidden channels removed
    prune_finetune: int = 100       # Adam steps training the pruned model towards the unpruned one (finetune.py)
    attention: str | None = None    # dense | PATTERN | auto (passes/sparsify.py); None: as the model has it
    low_rank: str | None = None     # auto | R: linear layers as two low-rank factors (passes/low_rank.py)
    tolerance: float | None = None  # auto: how far outputs may move from dense's on the calibration data
    auto_metric: str | None = None  # auto: "top1" or "relative-error" (None: by the model's output, sparsify.py)
    token_prune: str | None = None  # auto | K[,after:B]: tokens kept after block B's attention (passes/token_prune.py)
    early_exit: str | None = None   # auto | THRESHOLD[,after:B]: a confident head after block B stops (early_exit.py)
    streaming: str | None = None    # auto | DELTA: ma_step() for causal models, event threshold (passes/streaming.py)
    sram_budget: int | None = None  # bytes for the planned RAM (arena + input/output buffers): picks the query tile
    query_tile: int | None = None   # query rows per attention kernel tile (None: the default, or --sram-budget's)
    check_samples: int = 16         # build --target host: samples the compiled harness is checked on
    prefix: str = "ma"              # the model files' symbol prefix (codegen/prefix.py)
    kernels: str | None = None      # kernel variant (codegen/kernels.py VARIANTS); None: the target's core decides

    def check(self) -> "BuildOptions":
        """Refuse values no step can use (one line each); returns self."""
        if self.bits not in BITS:
            raise UserError(f"--bits {self.bits}: choose 8, 4 or 32")
        for flag, ratio in (("--prune-heads", self.prune_heads), ("--prune-ffn", self.prune_ffn)):
            if not 0.0 <= ratio < 1.0:  # NaN fails this too
                raise UserError(f"{flag} {ratio:g}: give a fraction in [0, 1) of the units to remove")
        if self.prune_finetune < 0:
            raise UserError(f"--prune-finetune {self.prune_finetune}: give a number of steps, 0 or more")
        if self.tolerance is not None and not 0.0 <= self.tolerance < 1.0:
            raise UserError(f"--tolerance {self.tolerance}: give a fraction in [0, 1)")
        if self.low_rank is not None:
            from mcu_attn.passes.low_rank import parse

            parse(self.low_rank)
        if self.auto_metric not in (None, "top1", "relative-error"):
            raise UserError(f"--auto-metric {self.auto_metric}: choose top1 or relative-error")
        if self.sram_budget is not None and self.sram_budget <= 0:
            raise UserError(f"--sram-budget {self.sram_budget}: give a number of bytes above 0")
        if self.query_tile is not None and self.query_tile < 1:
            raise UserError(f"query tile {self.query_tile}: at least one query row per tile")
        from mcu_attn.codegen.prefix import check as check_prefix
        from mcu_attn.passes.early_exit import ExitChoice
        from mcu_attn.passes.streaming import StreamChoice
        from mcu_attn.passes.token_prune import PruneChoice

        for value, choice in ((self.token_prune, PruneChoice), (self.early_exit, ExitChoice),
                              (self.streaming, StreamChoice)):
            if value is not None:
                choice.parse(value)

        check_prefix(self.prefix)
        if self.kernels is not None:
            from mcu_attn.codegen.kernels import VARIANTS

            if self.kernels not in VARIANTS:
                raise UserError(f"kernel variant {self.kernels!r}: known variants are {', '.join(sorted(VARIANTS))}")
        return self

    @property
    def prunes(self) -> bool:
        return self.prune_heads > 0 or self.prune_ffn > 0

    def record(self, calib_name: str | None) -> dict:
        """The options as report.json keeps them; `calib` names the copy the build directory carries."""
        return {**dataclasses.asdict(self), "calib": calib_name if self.calib else None}

    @staticmethod
    def from_record(record: dict, calib: str | None) -> "BuildOptions":
        """The options a report.json recorded, with `calib` the path of the calibration file to use now."""
        known = {f.name for f in dataclasses.fields(BuildOptions)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise UserError(f"report.json options {', '.join(unknown)} are unknown to this mcu-attn version")
        return BuildOptions(**{**record, "calib": calib if record.get("calib") else None}).check()
