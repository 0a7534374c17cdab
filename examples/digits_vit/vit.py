"""Tiny Vision Transformer for the sklearn 8x8 digits data set.

Input ``x`` is float32 [B, 8, 8] (pixel values / 16), output ``logits`` is [B, 10].
Each image is reshaped (no transpose) into 16 tokens of 4 pixels (half an image
row), embedded with Linear(4 -> 32), prefixed with a learned cls token (sequence
length 17) and given a learned position embedding. Then come ``blocks`` pre-norm
transformer blocks (LN -> multi-head self-attention -> residual, LN -> MLP with
GELU -> residual), a final LayerNorm, and a Linear(32 -> 10) head on the cls token.

Implementation switches (all variants share the same parameter names, so a
state_dict trained with one can be loaded into another):

* ``attn_impl``: ``"explicit"`` (q @ k^T / sqrt(d), softmax, @ v),
  ``"sdpa"`` (F.scaled_dot_product_attention) or ``"mha"`` (nn.MultiheadAttention;
  this one has its own packed in-projection parameters).
* ``window``: if set, a constant additive band mask: token i may attend to j when
  |i - j| <= window // 2; the cls token (index 0) is global (sees and is seen by
  every token). Disallowed entries hold ``-inf``.
* ``causal``: j <= i only (combined with ``window`` if both are given). A causal
  cls token at index 0 would only see itself, so in causal mode the cls token is
  appended at the end (index 16) instead and the head reads that token.
* ``ln_impl``: ``"module"`` (nn.LayerNorm) or ``"decomposed"`` (mean/var/sqrt in
  plain torch ops).
* ``gelu_impl``: ``"module"`` (exact, erf) or ``"tanh"`` (tanh approximation).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

DIM, HEADS, HEAD_DIM, MLP_DIM = 32, 4, 8, 64
TOKENS, TOKEN_PIXELS, CLASSES = 16, 4, 10
SEQ_LEN = TOKENS + 1


def build_mask(seq_len, window=None, causal=False, global_tokens=1):
    """Additive float mask [seq, seq]: 0 where allowed, -inf where not (None if no restriction)."""
    if window is None and not causal:
        return None
    i = torch.arange(seq_len)[:, None]
    j = torch.arange(seq_len)[None, :]
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool)
    if window is not None:
        band = (i - j).abs() <= window // 2
        band |= (i < global_tokens) | (j < global_tokens)
        allowed &= band
    if causal:
        allowed &= j <= i
    mask = torch.zeros(seq_len, seq_len)
    return mask.masked_fill(~allowed, float("-inf"))


class DecomposedLayerNorm(nn.Module):
    """LayerNorm written in elementary ops (same parameters as nn.LayerNorm)."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def make_norm(impl, dim):
    return nn.LayerNorm(dim) if impl == "module" else DecomposedLayerNorm(dim)


class SelfAttention(nn.Module):
    def __init__(self, impl="explicit", mask=None, causal=False):
        super().__init__()
        self.impl, self.causal = impl, causal
        if mask is None and causal and impl != "sdpa":
            mask = build_mask(SEQ_LEN, causal=True)
        if mask is not None:
            self.register_buffer("mask", mask, persistent=False)
        else:
            self.mask = None
        if impl == "mha":
            self.mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        else:
            self.q, self.k, self.v, self.out = (nn.Linear(DIM, DIM) for _ in range(4))

    def forward(self, x):
        if self.impl == "mha":
            return self.mha(x, x, x, attn_mask=self.mask, need_weights=False)[0]
        b, n, _ = x.shape
        q, k, v = (p(x).reshape(b, n, HEADS, HEAD_DIM).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        if self.impl == "sdpa":
            if self.mask is not None:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
            else:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(HEAD_DIM)
            if self.mask is not None:
                scores = scores + self.mask
            y = scores.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, n, DIM))


class Block(nn.Module):
    def __init__(self, attn_impl, mask, causal, ln_impl, gelu_impl):
        super().__init__()
        self.norm1 = make_norm(ln_impl, DIM)
        self.attn = SelfAttention(attn_impl, mask, causal)
        self.norm2 = make_norm(ln_impl, DIM)
        gelu = nn.GELU() if gelu_impl == "module" else nn.GELU(approximate="tanh")
        self.mlp = nn.Sequential(nn.Linear(DIM, MLP_DIM), gelu, nn.Linear(MLP_DIM, DIM))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, attn_impl="explicit", window=None, causal=False,
                 ln_impl="module", gelu_impl="module", blocks=2):
        super().__init__()
        self.causal = causal
        mask = build_mask(SEQ_LEN, window, causal) if window is not None else None
        self.embed = nn.Linear(TOKEN_PIXELS, DIM)
        self.cls = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos = nn.Parameter(torch.randn(1, SEQ_LEN, DIM) * 0.02)
        self.blocks = nn.Sequential(*(Block(attn_impl, mask, causal, ln_impl, gelu_impl)
                                      for _ in range(blocks)))
        self.norm = make_norm(ln_impl, DIM)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        b = x.shape[0]
        t = self.embed(x.reshape(b, TOKENS, TOKEN_PIXELS))
        cls = self.cls.expand(b, -1, -1)
        t = torch.cat([t, cls] if self.causal else [cls, t], dim=1) + self.pos
        t = self.norm(self.blocks(t))
        return self.head(t[:, -1] if self.causal else t[:, 0])
