"""Training objectives: what the model predicts and how it is scored.

The train loop knows only this interface, so other objectives (Audio2Vec, TemporalGap,
distillation) reuse the loop, the data and the checkpointing:

    targets = objective.targets(wav, lengths, out)   # out = model(wav, lengths)
    metrics = objective.loss(out, targets)           # metrics["loss"] is minimised

* `EncodecTargets` (pretraining): the 8 RVQ codes per frame of a frozen EnCodec.
* `KMeansTargets` (self-training): the id of the nearest of K centroids to a frozen
  teacher's last-layer features (before the final ResiDual combination); in
  pretraining with `--targets mel-kmeans` the "teacher" is `FrontendFeatures`, the
  log-mel frames themselves (HuBERT's first iteration, on mel instead of MFCC).
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .loss import mae_loss


class Objective(Protocol):
    name: str

    def to(self, device) -> "Objective": ...
    def targets(self, wav: torch.Tensor, lengths: torch.Tensor, out: dict) -> torch.Tensor: ...
    def loss(self, out: dict, targets: torch.Tensor) -> dict: ...
    def state_dict(self) -> dict: ...
    def provenance(self) -> dict: ...


class _MaskedCrossEntropy:
    """Shared scoring: the model's weighted per-stream cross-entropy (loss.mae_loss)."""

    stream_weights: tuple
    masked_weight: float

    def loss(self, out: dict, targets: torch.Tensor) -> dict:
        return mae_loss(out["logits"], targets, out["masked"], out["padding"],
                        self.stream_weights, self.masked_weight)


class EncodecTargets(_MaskedCrossEntropy):
    """Targets = EnCodec RVQ codes (B, T, 8) of the crop, from a frozen tokenizer.

    When the model's frontend is this tokenizer's EnCodec encoder and its features are
    float32, the codes are computed from those latents (`out["features"]`) instead of
    running the encoder twice.
    """

    name = "encodec"

    def __init__(self, tokenizer, model_config, kind: str, share_frontend: bool = False):
        self.tokenizer = tokenizer
        self.kind = kind  # "encodec-official" or "encodec-untrained-kmeans"
        self.share_frontend = share_frontend
        self.stream_weights = model_config.stream_weights
        self.masked_weight = model_config.masked_loss_weight

    def to(self, device):
        self.tokenizer.to(device)
        return self

    @torch.no_grad()
    def targets(self, wav, lengths, out):
        features = out.get("features")
        with torch.autocast(wav.device.type, enabled=False):
            if self.share_frontend and features is not None and features.dtype == torch.float32:
                return self.tokenizer.codes_from_latents(features.transpose(1, 2))  # (B, T, 8)
            return self.tokenizer(wav.float())  # (B, T, 8)

    def state_dict(self) -> dict:
        return {}

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": self.kind}


class KMeansTargets(_MaskedCrossEntropy):
    """Targets = nearest-centroid ids (B, T, 1) of the teacher's last-layer features."""

    name = "kmeans"

    def __init__(self, teacher: nn.Module, centroids: torch.Tensor, masked_weight: float = 0.9,
                 settings: dict | None = None):
        self.teacher = teacher.eval().requires_grad_(False)
        self.centroids = centroids.float()  # (K, D)
        self.stream_weights = (1.0,)
        self.masked_weight = masked_weight
        self.settings = dict(settings or {})

    def to(self, device):
        self.teacher.to(device)
        self.centroids = self.centroids.to(device)
        return self

    @torch.no_grad()
    def targets(self, wav, lengths, out):
        features, _ = self.teacher.last_layer_features(wav, lengths)  # (B, T, D)
        return assign(features.float(), self.centroids)[..., None]  # (B, T, 1)

    def state_dict(self) -> dict:
        return {"centroids": self.centroids.cpu()}

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": "kmeans-teacher-features",
                "kmeans": self.settings}


class FrontendFeatures(nn.Module):
    """A teacher without learned features: the frontend's frames (B, T, F) and their
    padding mask, from a private EncodecMAE of the given config (only its frontend and
    padding rule are used; its other weights stay untouched)."""

    def __init__(self, config):
        super().__init__()
        from .model import EncodecMAE
        self.mae = EncodecMAE(config)

    @torch.no_grad()
    def last_layer_features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        features = self.mae.frontend(wav)
        padding = self.mae.padding_mask(lengths, features.shape[1], wav.shape[0], wav.device)
        return features.float(), padding


def assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """features (..., D), centroids (K, D) -> ids (...) of the nearest centroid (L2)."""
    flat = features.reshape(-1, features.shape[-1])
    scores = flat @ centroids.T * -2 + (centroids * centroids).sum(1)  # ||x-c||^2 - ||x||^2
    return scores.argmin(1).view(features.shape[:-1])
