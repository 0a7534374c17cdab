"""The pipelines: explicit, ordered lists of passes, each with the reason it runs where it does."""

from __future__ import annotations

from mcu_attn.frontend.attention_pattern import FuseAttention
from mcu_attn.frontend.pointwise_patterns import FuseGelu, FuseLayerNorm, FuseSilu
from mcu_attn.frontend.rotary_pattern import FuseRotary
from mcu_attn.passes.names import ReadableNames
from mcu_attn.passes.cleanup import CanonicalLinear, DeadCode, DropIdentities, LinearOverLeadingDims
from mcu_attn.passes.fuse import FuseLinearResidual, FuseLinearTable
from mcu_attn.passes.patchify import MergeLayoutChains, PatchifyConv
from mcu_attn.passes.qoperator import LowerQOperator
from mcu_attn.passes.prequant import AbsorbActivationQDQ, AbsorbPrequantized, KeepAnnotatedScales
from mcu_attn.passes.token_ids import EmbeddingLookup


def frontend_pipeline() -> list:
    return [
        DropIdentities(),   # exporters leave Identity/Dropout and no-op reshapes; patterns should not see them
        LowerQOperator(),   # QOperator models: integer ops -> dequantize/float op/quantize, absorbed next
        AbsorbActivationQDQ(),  # QDQ models: activation Q/DQ pairs would hide every pattern below
        EmbeddingLookup(),  # token ids -> embedding tables: the ids stay integers, the lookup is a table in flash
        PatchifyConv(),     # a patch-embedding convolution is a Linear over patches
        MergeLayoutChains(),  # ... whose transposes cancel the exporter's flatten/transpose: a view
        CanonicalLinear(),  # MatMul/Gemm by a constant (+ bias Add) is one Linear: what the kernels implement
        LinearOverLeadingDims(),  # Dense layers flattened to 2-D around the MatMul act on [1,S,K] directly
        FuseLayerNorm(),    # before attention: LayerNorm spelled with Transpose/means must not look like layout
        FuseGelu(),         # one table lookup instead of five pointwise ops
        FuseSilu(),         # x * sigmoid(x): one table lookup
        FuseRotary(),       # RoPE on head-split q/k becomes one op before the split, so attention sees q and k
        FuseAttention(),    # after Linear canonicalisation, so packed in-projections can be split per q/k/v
        DropIdentities(),   # fusion leaves view Reshapes back to back (seq-first exports)
        LinearOverLeadingDims(),  # ... and Linears behind such views
        DeadCode(),         # folding and fusion leave values nobody reads
        ReadableNames(),    # last, on the final nodes: exporter counters (val_74) become block0.attention, ...
    ]


def prequantized_pipeline() -> list:
    """Run on a copy of the frontend's graph right before quantization (the float reference keeps Q/DQ)."""
    return [
        AbsorbPrequantized(),  # the model's own weight/activation scales become annotations; QOperator -> Linear
        KeepAnnotatedScales(),  # a TFLite model's activation scales, annotated on its values, are kept too
        CanonicalLinear(),     # absorbs the bias Adds the lowered matmuls leave behind
        DeadCode(),            # scale and zero-point constants nobody reads any more
    ]


def integer_pipeline() -> list:
    """Run on the integer graph the quantizer made (its reference is what `eval` measures and firmware runs)."""
    return [
        FuseLinearTable(),     # GELU's table read in the producing linear's epilogue, not in a pass of its own
        FuseLinearResidual(),  # a residual add in the producing linear's epilogue, with one requantization
    ]
