"""The EnCodecMAE objective: weighted per-stream cross-entropy, 0.9 masked / 0.1 unmasked."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mae_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
             padding: torch.Tensor, stream_weights, masked_weight: float = 0.9) -> dict:
    """logits (B, T, S, V), targets (B, T', S) -> dict of scalar tensors.

    Frame counts of input and targets can differ by a frame or two (frontends round
    differently): both are cut to the shorter. Padded frames count in neither part;
    each part is normalised by its own frame count.
    """
    frames = min(logits.shape[1], targets.shape[1])
    logits, targets = logits[:, :frames], targets[:, :frames]
    masked, valid = masked[:, :frames], ~padding[:, :frames]
    weights = torch.as_tensor(stream_weights, dtype=torch.float32, device=logits.device)

    ce = F.cross_entropy(logits.float().permute(0, 3, 1, 2), targets.long(), reduction="none")  # (B, T, S)
    correct = (logits.argmax(-1) == targets).float()  # (B, T, S)
    out = {}
    for name, part in (("masked", masked & valid), ("unmasked", ~masked & valid)):
        count = part.sum().clamp(min=1)
        part_f = part[..., None].float()
        per_stream = (ce * part_f).sum((0, 1)) / count  # (S,)
        out[f"{name}_loss"] = (per_stream * weights).sum()
        out[f"{name}_accuracy"] = ((correct * part_f).sum((0, 1)) / count).mean()
        for s in range(per_stream.shape[0]):
            out[f"{name}_loss_s{s}"] = per_stream[s].detach()
    out["loss"] = masked_weight * out["masked_loss"] + (1 - masked_weight) * out["unmasked_loss"]
    return out
