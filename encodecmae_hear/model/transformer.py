"""ResiDual Transformer (Xie et al., 2023) as used by EnCodecMAE, plus sinusoidal positions.

A layer carries two streams: x0 (post-LN, what the next layer attends over) and x1
(the un-normalised sum of every sublayer output). The stack output is
x0 + LN_final(x1). Attention projections have no bias and use a head-minor channel
layout: channel c of a projection belongs to head c mod H (SPEC section 2).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MASK_VALUE = -1e9  # added to the logits of padded keys


class SinusoidalPositions(nn.Module):
    """Adds sin/cos positions (sin on even, cos on odd channels) times a learnable scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.tensor(1.0))

    def table(self, length: int, device, dtype) -> torch.Tensor:
        position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
        div_term = torch.exp(torch.arange(0, self.dim, 2, device=device, dtype=torch.float32)
                             * (-math.log(10000.0) / self.dim))
        pe = torch.zeros(length, self.dim, device=device, dtype=torch.float32)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        return x + self.scale * self.table(x.shape[1], x.device, x.dtype)


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        inner = self.head_dim * heads  # may be < dim (Large: 12 * 85 = 1020)
        self.wq = nn.Linear(dim, inner, bias=False)
        self.wk = nn.Linear(dim, inner, bias=False)
        self.wv = nn.Linear(dim, inner, bias=False)
        self.wo = nn.Linear(inner, dim, bias=False)
        # None: F.scaled_dot_product_attention. A dtype: attention_products in that dtype
        # (precision.int8_encoder sets it for inference on CPU).
        self.products_dtype: torch.dtype | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, hd*H) -> (B, H, T, hd)
        b, t, _ = x.shape
        # Contiguous: SDPA's fused kernels (flash on CPU and CUDA) need a unit stride on the
        # last dimension, which the head-minor view lacks; without them it falls back to
        # the unfused math path (3.6x slower per attention on CPU; docs/RESULTS.md).
        return x.view(b, t, self.head_dim, self.heads).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self._split(self.wq(x)), self._split(self.wk(x)), self._split(self.wv(x))
        bias = None
        if key_padding is not None:  # (B, T) True = padded
            bias = (key_padding[:, None, None, :].to(q.dtype) * MASK_VALUE)  # (B, 1, 1, T)
        if self.products_dtype is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, hd)
        else:
            out = attention_products(q, k, v, bias, self.products_dtype)
        out = out.permute(0, 2, 3, 1).reshape(b, t, self.head_dim * self.heads)
        return self.wo(out)


def attention_products(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                       dtype: torch.dtype) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v written out as two batched matrix products in
    `dtype`, returned in q's dtype. On a CPU with bf16 units, one 4 s window's
    (1, 12, 300, 64), 2 threads: 1.5 ms in bfloat16 against 2.5 ms for the fused kernel
    in float32; a small int8 model on 20 s went from 69 to 73x real time (docs/RESULTS.md)."""
    scores = torch.matmul(q.to(dtype) * q.shape[-1] ** -0.5, k.to(dtype).transpose(-1, -2))
    if bias is not None:
        scores = scores + bias.to(dtype)
    return torch.matmul(scores.softmax(-1), v.to(dtype)).to(q.dtype)


def feed_forward(dim: int, ff_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dim))


class ResiDualLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: nn.Module):
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads)
        self.ffn = ffn
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x0, x1, key_padding):
        att = self.attention(x0, key_padding)
        x0 = self.norm1(x0 + att)
        x1 = x1 + att
        ff = self.ffn(x0)
        return self.norm2(x0 + ff), x1 + ff


class TransformerStack(nn.Module):
    """`layers` ResiDual layers; with `share_ffn` all layers use one FFN module."""

    def __init__(self, dim: int, layers: int, heads: int, ff_dim: int, share_ffn: bool):
        super().__init__()
        shared = feed_forward(dim, ff_dim) if share_ffn else None
        self.layers = nn.ModuleList(
            ResiDualLayer(dim, heads, shared if share_ffn else feed_forward(dim, ff_dim))
            for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None = None,
                return_layers: bool = False):
        """x (B, T, D) -> output x0 + LN_final(x1) (B, T, D); with `return_layers`, also
        the list of every layer's x0 stream (the last one before the final combination)."""
        x0 = x1 = x
        per_layer = []
        for layer in self.layers:
            x0, x1 = layer(x0, x1, key_padding)
            per_layer.append(x0)
        out = x0 + self.final_norm(x1)
        return (out, per_layer) if return_layers else out
