"""The mobile student's input block: what its own frontend sees, carried beside what it
learnt, as the teacher's `input+concat` embedding carries its input tokens.

The student's convolutions pool frequency away (64 mel bins -> 1), and with it pitch: a
linear probe of a clip's mean log-mel finds the pitch class that no distilled student
keeps (docs/MOBILE.md, section 9). The block puts it back at no cost in parameters:

* the 64 log-mel bins, averaged over the 4 mel frames of each student frame;
* a 12-bin chroma, one per student frame, from a DFT of its own: a 64 ms periodic Hann
  window centred on the frame. (The log-mel's 25 ms window gives 31 Hz bins, three
  semitones at 200 Hz, and misnames low harmonic notes.) Each DFT bin from 100 Hz to
  5 kHz shares its power among the pitch classes within its own width in semitones (at
  least one), with triangular weights; the log of each class's power minus the mean over
  the 12, so that loudness cancels.

Both are standardised channel by channel with statistics of corpus audio (`input-block`
measures them; they live in the checkpoint) and multiplied by the config's
`input_block` weight, which sets their share of the HEAR embedding beside the learnt
channels. Weight 0 (the default) means no block: the model and its checkpoint are those
of a plain student.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CHROMA_BINS = 12
CHROMA_BAND = (100.0, 5000.0)  # Hz
CHROMA_WINDOW = 1024           # samples at 16 kHz: 64 ms
C4_HZ = 440.0 * 2 ** (-9 / 12)
MEL_CHANNELS = 64
WIDTH = MEL_CHANNELS + CHROMA_BINS


def chroma_matrix(n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_fft // 2 + 1, 12): the share of each DFT bin's power given to each pitch class
    (0 = C); rows sum to 1 inside CHROMA_BAND and are 0 outside it."""
    bins = n_fft // 2 + 1
    spacing = sample_rate / n_fft
    freqs = torch.arange(bins, dtype=torch.float64) * spacing
    weights = torch.zeros(bins, CHROMA_BINS, dtype=torch.float64)
    inside = (freqs >= CHROMA_BAND[0]) & (freqs <= CHROMA_BAND[1])
    f = freqs[inside]
    semitones = 12 * torch.log2(f / C4_HZ)  # (K,) pitch of each bin, C4 = 0
    half_width = (6 * torch.log2((f + spacing / 2) / (f - spacing / 2))).clamp(min=1.0)
    classes = torch.arange(CHROMA_BINS, dtype=torch.float64)
    distance = torch.remainder(semitones[:, None] - classes + 6, 12) - 6  # (K, 12) in [-6, 6)
    tri = (1 - distance.abs() / half_width[:, None]).clamp(min=0)
    weights[inside] = tri / tri.sum(1, keepdim=True)
    return weights.float()


class InputBlock(nn.Module):
    """16 kHz waveform (B, hop x frames) and its log-mel (B, group x frames, 64) -> the
    weighted, standardised block (B, frames, 76)."""

    def __init__(self, sample_rate: int, hop: int, group: int, weight: float):
        super().__init__()
        self.hop, self.group, self.weight = int(hop), int(group), float(weight)
        weights = chroma_matrix(CHROMA_WINDOW, sample_rate)
        used = weights.sum(1) > 0  # the DFT is computed for the band's bins only
        bins = torch.arange(CHROMA_WINDOW // 2 + 1, dtype=torch.float64)[used]
        angle = 2 * math.pi * torch.outer(bins, torch.arange(CHROMA_WINDOW, dtype=torch.float64)) / CHROMA_WINDOW
        window = torch.hann_window(CHROMA_WINDOW, periodic=True, dtype=torch.float64)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2K, 1024)
        self.register_buffer("basis", basis.float()[:, None], persistent=False)
        self.register_buffer("chroma", weights[used], persistent=False)  # (K, 12)
        # measured on corpus audio by `input-block`; identity until then
        self.register_buffer("mean", torch.zeros(WIDTH))
        self.register_buffer("std", torch.ones(WIDTH))

    def chroma_frames(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, hop x frames) -> (B, frames, 12): window j centred on sample hop (j + 1/2)."""
        side = (CHROMA_WINDOW - self.hop) // 2
        spec = F.conv1d(F.pad(wav.float(), (side, side))[:, None], self.basis, stride=self.hop)
        real, imag = spec.chunk(2, dim=1)  # (B, K, frames) each
        log_chroma = torch.log((real * real + imag * imag).transpose(1, 2) @ self.chroma + 1e-6)
        return log_chroma - log_chroma.mean(-1, keepdim=True)

    def features(self, wav: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        """-> the unstandardised block (B, frames, 76): pooled log-mel, then chroma."""
        batch, steps, bins = log_mel.shape
        mel = log_mel.view(batch, steps // self.group, self.group, bins).mean(2)
        return torch.cat([mel, self.chroma_frames(wav)], -1)

    def forward(self, wav: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        return (self.features(wav, log_mel) - self.mean) / self.std * self.weight

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 1e-3) -> None:
        if mean.shape != (WIDTH,) or std.shape != (WIDTH,):
            raise ValueError(f"input block statistics must be ({WIDTH},) each, got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("input block statistics are not finite")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=floor))


def check_weight(weight: float) -> None:
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"input_block must be a finite weight >= 0, got {weight}")
