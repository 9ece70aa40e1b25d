"""Self-supervised objectives of the mobile encoder (SPEC section 10), for train/loop.py.

Each task is a `MobileModel` whose forward takes the loop's 24 kHz crops, resamples them
to 16 kHz, computes the log-mel, cuts slices at seeded random places and runs the
encoder and head; its state dict and config are the model's, so every checkpoint
rebuilds a plain `MobileModel`. The matching objective scores the output.

* CBoW (Audio2Vec): 2P + 1 adjacent slices of `slice_frames` mel frames; the 2P outer
  ones are encoded and the head reconstructs the centre one's log-mel. MSE.
* Skip-gram (Audio2Vec): the same slices; the centre one is encoded and the head
  reconstructs the 2P outer ones. MSE.
* TemporalGap: two slices at independent uniform places in the crop; the head predicts
  their gap divided by the largest possible one, a number in [0, 1], as a logit scored
  by binary cross-entropy against that number.

Slices lie inside the valid (unpadded) part of a crop wherever it is long enough.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from encodecmae_hear.audio import resample
from encodecmae_hear.model.config import SAMPLE_RATE as CROP_RATE
from encodecmae_hear.model.mobile import HOP, SAMPLE_RATE, MobileConfig, MobileModel

MOBILE_OBJECTIVES = ("cbow", "skipgram", "temporalgap")
DEFAULT_SLICE_FRAMES = 64  # 0.64 s of 10 ms mel frames: 16 encoder frames


def to_16k(wav: torch.Tensor, lengths: torch.Tensor | None):
    """24 kHz crops (B, N) and valid lengths -> 16 kHz (B, 2N / 3) and lengths."""
    wav16 = resample(wav, CROP_RATE, SAMPLE_RATE)
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
    return wav16, torch.div(lengths * SAMPLE_RATE, CROP_RATE, rounding_mode="floor")


def random_starts(room: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """room (B,) >= 0 -> starts (B,) uniform in [0, room], drawn on the CPU generator."""
    u = torch.rand(room.shape[0], generator=generator)
    return (u * (room.cpu() + 1)).long().clamp(max=room.cpu()).to(room.device)


def gather_slices(mel: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """mel (B, T, 64), starts (B, K) -> (B, K, length, 64)."""
    index = starts[..., None] + torch.arange(length, device=mel.device)  # (B, K, L)
    flat = index.reshape(mel.shape[0], -1)[..., None].expand(-1, -1, mel.shape[-1])
    return mel.gather(1, flat).view(*index.shape, mel.shape[-1])


class MobileTask(MobileModel):
    """The mobile model as the train loop runs it: 24 kHz crops in, a dict out."""

    compiled_parts = ("encoder", "head")
    compile_dynamic = False  # fixed slice shapes; inductor fails on symbolic pooling sizes

    def __init__(self, config: MobileConfig, slice_frames: int = DEFAULT_SLICE_FRAMES):
        super().__init__(config)
        if slice_frames < 1 or slice_frames % config.time_stride:
            raise ValueError(f"slice_frames must be a positive multiple of the time stride "
                             f"{config.time_stride}, got {slice_frames}")
        self.slice_frames = slice_frames

    @property
    def slices_needed(self) -> int:
        """Mel frames a crop must hold."""
        return (2 * self.config.context + 1) * self.slice_frames

    def mel_of_crops(self, wav: torch.Tensor, lengths: torch.Tensor | None):
        """-> log-mel (B, T, 64) at 16 kHz and valid mel frames (B,)."""
        wav16, lengths16 = to_16k(wav, lengths)
        mel = self.log_mel(wav16)
        if mel.shape[1] < self.slices_needed:
            raise ValueError(f"crops of {mel.shape[1]} mel frames are too short: this objective "
                             f"needs {self.slices_needed} ({self.slices_needed * HOP / SAMPLE_RATE:.2f} s)")
        return mel, torch.div(lengths16, HOP, rounding_mode="floor")

    def encode_slices(self, slices: torch.Tensor) -> torch.Tensor:
        """(B, K, L, 64) -> frame embeddings (B, K, L / stride, C)."""
        batch, k = slices.shape[:2]
        frames = self.encoder(slices.flatten(0, 1))
        return frames.view(batch, k, *frames.shape[1:])


class Audio2VecTask(MobileTask):
    """CBoW (config.head "cbow") or skip-gram ("skipgram") on adjacent slices."""

    def forward(self, wav, lengths=None, generator=None) -> dict:
        mel, valid = self.mel_of_crops(wav, lengths)
        room = (valid.clamp(max=mel.shape[1]) - self.slices_needed).clamp(min=0)
        first = random_starts(room, generator)  # (B,)
        count, p = 2 * self.config.context + 1, self.config.context
        starts = first[:, None] + torch.arange(count, device=mel.device) * self.slice_frames
        slices = gather_slices(mel, starts, self.slice_frames)  # (B, 2P + 1, L, 64)
        centre, outer = slices[:, p], torch.cat([slices[:, :p], slices[:, p + 1:]], dim=1)
        if self.config.head == "cbow":
            frames = self.encode_slices(outer)  # (B, 2P, L / 4, C)
            joined = frames.permute(0, 2, 1, 3).flatten(2)  # (B, L / 4, 2P C)
            return {"prediction": self.head(joined)[:, 0], "target": centre, "starts": starts}
        frames = self.encode_slices(centre[:, None])[:, 0]  # (B, L / 4, C)
        return {"prediction": self.head(frames), "target": outer, "starts": starts}


class TemporalGapTask(MobileTask):
    @property
    def slices_needed(self) -> int:
        return self.slice_frames

    def forward(self, wav, lengths=None, generator=None) -> dict:
        mel, valid = self.mel_of_crops(wav, lengths)
        room = (valid.clamp(max=mel.shape[1]) - self.slice_frames).clamp(min=0)
        starts = torch.stack([random_starts(room, generator), random_starts(room, generator)], 1)
        slices = gather_slices(mel, starts, self.slice_frames)  # (B, 2, L, 64)
        pooled = self.encode_slices(slices).mean(2)  # (B, 2, C)
        gap = (starts[:, 0] - starts[:, 1]).abs().float() / room.clamp(min=1).float()
        return {"logit": self.head(pooled[:, 0], pooled[:, 1]), "gap": gap, "starts": starts}


class _NoTeacher:
    """Targets come out of the task's own forward; nothing to move or store."""

    name: str

    def to(self, device):
        return self

    def state_dict(self) -> dict:
        return {}


class SliceReconstruction(_NoTeacher):
    """MSE between the decoded and the true log-mel slices (CBoW and skip-gram)."""

    def __init__(self, name: str):
        self.name = name

    def targets(self, wav, lengths, out, crops=None):
        return out["target"]

    def loss(self, out: dict, targets: torch.Tensor) -> dict:
        targets = targets.float()
        mse = F.mse_loss(out["prediction"].float(), targets)
        variance = targets.var().clamp(min=1e-8).detach()  # MSE of predicting the batch mean
        return {"loss": mse, "relative_mse": mse.detach() / variance}

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": "log-mel slices"}


class GapRegression(_NoTeacher):
    name = "temporalgap"

    def targets(self, wav, lengths, out, crops=None):
        return out["gap"]

    def loss(self, out: dict, targets: torch.Tensor) -> dict:
        logit = out["logit"].float()
        loss = F.binary_cross_entropy_with_logits(logit, targets)
        return {"loss": loss, "gap_mae": (torch.sigmoid(logit) - targets).abs().mean().detach()}

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": "normalised gap between two slices"}


def build_task(config: MobileConfig, slice_frames: int = DEFAULT_SLICE_FRAMES):
    """-> (task module, objective) for config.head in MOBILE_OBJECTIVES."""
    if config.head in ("cbow", "skipgram"):
        return Audio2VecTask(config, slice_frames), SliceReconstruction(config.head)
    if config.head == "temporalgap":
        return TemporalGapTask(config, slice_frames), GapRegression()
    raise ValueError(f"no self-supervised task for head {config.head!r}; choose one of {MOBILE_OBJECTIVES}")
