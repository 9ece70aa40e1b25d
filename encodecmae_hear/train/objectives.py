"""Training objectives: what the model predicts and how it is scored.

The train loop knows only this interface, so other objectives (Audio2Vec, TemporalGap,
distillation) reuse the loop, the data and the checkpointing:

    targets = objective.targets(wav, lengths, out, crops=batch)   # out = model(wav, lengths)
    metrics = objective.loss(out, targets)                        # metrics["loss"] is minimised

`crops` is the micro-batch as `train.data.collate` makes it: objectives read its "keys"
(each crop's file) and "starts" (each crop's offset in its file, 24 kHz samples) only
where targets come from a per-file cache (`train/teachers/cache.py`); it may be None
where there is no such cache.

* `mae_loss`: the EnCodecMAE score, weighted per-stream cross-entropy, 0.9 x masked
  + 0.1 x unmasked frames.
* `EncodecTargets` (pretraining): the 8 RVQ codes per frame of a frozen EnCodec.
* `KMeansTargets` (self-training): the id of the nearest of K centroids to a frozen
  teacher's last-layer features (before the final ResiDual combination); in
  pretraining with `--targets mel-kmeans` the "teacher" is `FrontendFeatures`, the
  log-mel frames themselves (HuBERT's first iteration, on mel instead of MFCC). More
  streams (`KMeansStream`) add the k-means ids of pretrained teachers' frame features
  (`train/teachers`: pitch, speaker, voice activity), one head stream each, computed
  on the fly or read from a teacher cache (`crop_features`).
* `teacher_kmeans`: the one k-means fit of a teacher's features on corpus crops, shared
  by self-training, mel-kmeans pretraining and every teacher stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.cluster import MiniBatchKMeans
from torch import nn

from encodecmae_hear.errors import UserError
from encodecmae_hear.model.frontend import build_frontend
from encodecmae_hear.model.mae import padding_mask
from encodecmae_hear.train.data import collate


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


class Objective(Protocol):
    name: str

    def to(self, device) -> "Objective": ...
    def targets(self, wav: torch.Tensor, lengths: torch.Tensor, out: dict,
                crops: dict | None = None) -> torch.Tensor: ...
    def loss(self, out: dict, targets: torch.Tensor) -> dict: ...
    def state_dict(self) -> dict: ...
    def provenance(self) -> dict: ...


class _MaskedCrossEntropy:
    """Shared scoring: the model's weighted per-stream cross-entropy (`mae_loss` above)."""

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
    def targets(self, wav, lengths, out, crops=None):
        features = out.get("features")
        with torch.autocast(wav.device.type, enabled=False):
            if self.share_frontend and features is not None and features.dtype == torch.float32:
                return self.tokenizer.codes_from_latents(features.transpose(1, 2))  # (B, T, 8)
            return self.tokenizer(wav.float())  # (B, T, 8)

    def state_dict(self) -> dict:
        return {}

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": self.kind}


@dataclass
class KMeansStream:
    """A target stream: ids of the nearest of `centroids` (K, D) to `teacher`'s frame
    features, where `teacher.last_layer_features(wav, lengths)` gives ((B, T, D), padding)."""

    name: str
    teacher: nn.Module
    centroids: torch.Tensor
    weight: float = 1.0

    def ids(self, wav: torch.Tensor, lengths: torch.Tensor, crops: dict | None = None) -> torch.Tensor:
        features, _ = crop_features(self.teacher, wav, lengths, crops)  # (B, T, D)
        return assign(features.float(), self.centroids)  # (B, T)


def crop_features(teacher, wav: torch.Tensor, lengths: torch.Tensor, crops: dict | None = None):
    """A feature source's (features (B, T, D), padding (B, T)) for a batch. A source that
    reads stored per-file features (`reads_crops = True`, e.g. a teacher cache) is also
    given the crops' "keys" and "starts"; any other gets the audio only."""
    if getattr(teacher, "reads_crops", False):
        return teacher.last_layer_features(wav, lengths, crops)
    return teacher.last_layer_features(wav, lengths)


class KMeansTargets(_MaskedCrossEntropy):
    """Targets = nearest-centroid ids (B, T, S): stream 0 of the teacher's features (the
    frozen model's last layer, or the frontend's frames), then one per stream in `more`,
    each scored with its weight (the first with `weight`)."""

    name = "kmeans"

    def __init__(self, teacher: nn.Module, centroids: torch.Tensor, masked_weight: float = 0.9,
                 settings: dict | None = None, more: tuple[KMeansStream, ...] = (), weight: float = 1.0):
        self.streams = [KMeansStream("main", teacher.eval().requires_grad_(False), centroids.float(), weight)]
        self.streams += [KMeansStream(s.name, s.teacher.eval().requires_grad_(False), s.centroids.float(),
                                      s.weight) for s in more]
        self.stream_weights = tuple(s.weight for s in self.streams)
        self.masked_weight = masked_weight
        self.settings = dict(settings or {})

    @property
    def teacher(self) -> nn.Module:
        return self.streams[0].teacher

    @property
    def centroids(self) -> torch.Tensor:
        return self.streams[0].centroids

    def to(self, device):
        for stream in self.streams:
            stream.teacher.to(device)
            stream.centroids = stream.centroids.to(device)
        return self

    @torch.no_grad()
    def targets(self, wav, lengths, out, crops=None):
        return torch.stack([stream.ids(wav, lengths, crops) for stream in self.streams], -1)  # (B, T, S)

    def state_dict(self) -> dict:
        state = {"centroids": self.centroids.cpu()}
        if len(self.streams) > 1:
            state["teacher_centroids"] = {s.name: s.centroids.cpu() for s in self.streams[1:]}
        return state

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": "kmeans-teacher-features",
                "kmeans": self.settings}


class FrontendFeatures(nn.Module):
    """A teacher without learned features: the frontend's frames (B, T, F) and the
    model's padding mask over them."""

    def __init__(self, config):
        super().__init__()
        self.frontend = build_frontend(config.frontend)

    @property
    def out_dim(self) -> int:
        return self.frontend.out_dim

    @torch.no_grad()
    def last_layer_features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        features = self.frontend(wav)
        padding = padding_mask(lengths, features.shape[1], wav.shape[0], wav.device)
        return features.float(), padding


def assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """features (..., D), centroids (K, D) -> ids (...) of the nearest centroid (L2)."""
    flat = features.reshape(-1, features.shape[-1])
    scores = flat @ centroids.T * -2 + (centroids * centroids).sum(1)  # ||x-c||^2 - ||x||^2
    return scores.argmin(1).view(features.shape[:-1])


@torch.no_grad()
def teacher_features(teacher, crops, device, batch: int = 16) -> torch.Tensor:
    """crops [train.data.Crop] -> (frames, D) last-layer features of the valid frames."""
    teacher.to(device).eval()
    out = []
    for start in range(0, len(crops), batch):
        part = collate(crops[start:start + batch])
        wav, lengths = part["wav"].to(device), part["lengths"].to(device)
        features, padding = crop_features(teacher, wav, lengths, part)  # (B, T, D), (B, T)
        out.append(features[~padding].float().cpu())
    return torch.cat(out)


def fit_kmeans(features: torch.Tensor, clusters: int, seed: int, batch: int, iters: int) -> torch.Tensor:
    """features (N, D) -> centroids (clusters, D) float32."""
    if features.shape[0] < clusters:
        raise UserError(f"k-means needs at least {clusters} frames, got {features.shape[0]}: "
                         f"raise --kmeans-clips or lower --clusters")
    kmeans = MiniBatchKMeans(n_clusters=clusters, batch_size=batch, max_iter=iters, n_init=3,
                             random_state=seed).fit(features.numpy())
    return torch.from_numpy(kmeans.cluster_centers_).float()


def teacher_kmeans(teacher, dim: int, source, clusters: int, clips: int, max_frames: int | None,
                   seed: int, batch: int, iters: int, proc, log) -> tuple[torch.Tensor, int]:
    """Centroids (clusters, dim) of the teacher's features on `clips` corpus crops, fitted on
    rank 0 (at most `max_frames` random frames; None: all of them) and broadcast to every
    rank; and the number of frames fitted on."""
    centroids, n_frames = torch.zeros(clusters, dim), 0
    if proc.main:
        crops = source.sample(clips, seed)
        if not crops:
            raise UserError("no readable audio in the corpus to fit k-means on")
        log(f"teacher features of {len(crops)} crops ...")
        features = teacher_features(teacher, crops, proc.device)
        if max_frames is not None:
            pick = np.random.default_rng(seed).permutation(features.shape[0])[:max_frames]
            features = features[torch.from_numpy(pick)]
        n_frames = features.shape[0]
        if n_frames < clusters:
            more = ("raise --kmeans-frames" if n_frames == max_frames else
                    "raise --kmeans-clips" if len(crops) == clips else "add audio")
            raise UserError(f"k-means of {clusters} clusters needs at least {clusters} frames; "
                            f"{len(crops)} crops of the corpus gave {n_frames}: {more}, or "
                            f"lower --clusters")
        log(f"k-means: {clusters} clusters on {n_frames} frames ...")
        centroids = fit_kmeans(features, clusters, seed, batch, iters)
    if proc.world > 1:
        moved = centroids.to(proc.device)
        dist.broadcast(moved, src=0)
        centroids = moved.cpu()
    return centroids, n_frames
