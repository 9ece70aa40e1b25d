"""Span masking (SPEC section 2): mask `prop` of each sequence's valid frames in spans.

Spans of `span` frames start at uniform positions in [0, L - span] and are added until
at least int(prop * L) frames are masked; any excess is then unmasked from the start of
the sequence, so every item has exactly int(prop * L) masked frames. The loop runs over
spans (about prop * L / span rounds), vectorised across the batch.
"""
from __future__ import annotations

import torch


def span_mask(lengths: torch.Tensor, max_len: int, prop: float = 0.5, span: int = 15,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """lengths (B,) valid frames per item -> mask (B, max_len), True = masked.

    Padded positions (>= length) are never masked. `generator` makes it reproducible.
    """
    device = lengths.device
    batch = lengths.shape[0]
    lengths = lengths.to(torch.long).cpu()
    target = (lengths.float() * prop).long()  # (B,)
    mask = torch.zeros(batch, max_len, dtype=torch.bool)
    positions = torch.arange(max_len)
    max_start = (lengths - span).clamp(min=0)  # (B,)
    for _ in range(4 * max_len + 8):  # far more rounds than ever needed
        need = mask.sum(1) < target
        if not need.any():
            break
        starts = (torch.rand(batch, generator=generator) * (max_start + 1)).long()  # (B,)
        in_span = (positions[None] >= starts[:, None]) & (positions[None] < starts[:, None] + span)
        in_span &= positions[None] < lengths[:, None]
        mask |= in_span & need[:, None]
    excess = mask.sum(1) - target  # (B,) >= 0
    rank = mask.long().cumsum(1)  # 1-based rank of each masked frame
    mask &= ~(rank <= excess[:, None])
    return mask.to(device)
