"""Parameter counts, and the rule that gives the paper's figures.

The paper's sizes (Small 43M, Base 86M, Large 261M) count the encoder's Transformer
layers with a separate FFN per layer: per layer, attention 4 * D * (H * (D // H))
without biases, FFN D -> ff -> D with biases, two LayerNorms; plus the final norm.
That rule gives Small 43.29M and Base 86.58M. The released models share one FFN per
stack, so they store far fewer parameters (`count_parameters`).
"""
from __future__ import annotations

from torch import nn

from encodecmae_hear.model.config import ModelConfig


def encoder_paper_count(config: ModelConfig) -> int:
    d, ff = config.dim, config.ff_dim
    inner = (d // config.encoder_heads) * config.encoder_heads
    attention = 3 * d * inner + inner * d
    ffn = d * ff + ff + ff * d + d
    norms = 2 * 2 * d
    return config.encoder_layers * (attention + ffn + norms) + 2 * d


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Unique parameters (a shared FFN counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def breakdown(model) -> dict[str, int]:
    """Stored parameters per part of an EncodecMAE."""
    parts = {
        "frontend": model.frontend,
        "input_proj": model.input_proj,
        "encoder": model.encoder,
        "encoder_proj": model.encoder_proj,
        "decoder": model.decoder,
        "head": model.head,
    }
    counts = {name: count_parameters(part) for name, part in parts.items()}
    counts["positions"] = model.encoder_positions.scale.numel() + model.decoder_positions.scale.numel()
    counts["total"] = count_parameters(model)
    counts["trainable"] = count_parameters(model, trainable_only=True)
    return counts
