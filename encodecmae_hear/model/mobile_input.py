"""The mobile student's input block: what its own frontend sees, carried beside what it
learnt, as the teacher's `input+concat` embedding carries its input tokens.

The student's convolutions pool frequency away (64 mel bins -> 1), and with it pitch: a
linear probe of a clip's mean log-mel finds the pitch class that no distilled student
keeps (docs/MOBILE.md, section 9). The block puts it back at no cost in parameters:

* the 64 log-mel bins, averaged over the 4 mel frames of each student frame;
* 12 pitch-class channels per student frame, by the config's `input_block_pitch`:
  "chroma" (the default), "salience", or "chroma+salience" (24 channels, in that order).

The chroma: a DFT of its own, a 64 ms periodic Hann window centred on the frame. (The
log-mel's 25 ms window gives 31 Hz bins, three semitones at 200 Hz, and misnames low
harmonic notes.) Each DFT bin from 100 Hz to 5 kHz shares its power among the pitch
classes within its own width in semitones (at least one), with triangular weights; the
log of each class's power minus the mean over the 12, so that loudness cancels.

The salience: the magnitude of a 128 ms Hann-windowed DFT evaluated at the semitone grid
(MIDI 36 upward, 4 kHz at most), summed for each candidate fundamental from MIDI 36 to
95 over the harmonics that land on that grid (1, 2, 3, 4, 6 and 8: 0, 12, 19, 24, 31 and
36 semitones up, the 3rd and 6th rounded by 0.02 of a semitone) with weights 0.8 ** i,
folded over octaves, logged and centred like the chroma. Where the chroma gives a note's
fifth (its 3rd harmonic) as much weight as the note, the salience credits the
fundamental: on the validation suite's pitch task a linear probe of its 12 clip means
alone names the pitch class of unseen instruments 100 % of the time (docs/RESULTS.md,
"The student's input block: pitch salience and the scene's spread").

Every part is standardised channel by channel with statistics of corpus audio (`input-block`
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
SALIENCE_WINDOW = 2048                        # samples at 16 kHz: 128 ms
SALIENCE_CANDIDATES = (36, 95)                # MIDI fundamentals, C2 to B6
HARMONIC_OFFSETS = (0, 12, 19, 24, 31, 36)    # semitones above the fundamental: harmonics 1, 2, 3, 4, 6, 8
HARMONIC_DECAY = 0.8
SALIENCE_MAX_HZ = 4000.0
CHROMA_BAND = (100.0, 5000.0)  # Hz
CHROMA_WINDOW = 1024           # samples at 16 kHz: 64 ms
MEL_CHANNELS = 64
PITCH_PARTS = ("chroma", "salience", "chroma+salience")  # the block's pitch-class channels


def check_pitch(pitch: str) -> None:
    if pitch not in PITCH_PARTS:
        raise ValueError(f"input_block_pitch must be one of {PITCH_PARTS}, got {pitch!r}")


def block_width(pitch: str = "chroma") -> int:
    check_pitch(pitch)
    return MEL_CHANNELS + CHROMA_BINS * len(pitch.split("+"))


def midi_hz(midi):
    """MIDI note number(s) -> Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2 ** ((midi - 69) / 12)


C4_HZ = midi_hz(60)


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


def chroma_basis(sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> the windowed DFT basis (2K, 1, CHROMA_WINDOW), cosines then minus sines, at the K
    DFT bins inside CHROMA_BAND, and their rows of chroma_matrix (K, 12)."""
    weights = chroma_matrix(CHROMA_WINDOW, sample_rate)
    used = weights.sum(1) > 0  # the DFT is computed for the band's bins only
    bins = torch.arange(CHROMA_WINDOW // 2 + 1, dtype=torch.float64)[used]
    angle = 2 * math.pi * torch.outer(bins, torch.arange(CHROMA_WINDOW, dtype=torch.float64)) / CHROMA_WINDOW
    window = torch.hann_window(CHROMA_WINDOW, periodic=True, dtype=torch.float64)
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
    return basis.float()[:, None], weights[used]


def salience_basis(sample_rate: int) -> tuple[torch.Tensor, int]:
    """-> the windowed DFT basis (2M, 1, SALIENCE_WINDOW), cosines then sines, at the
    semitone grid's M frequencies from the lowest candidate up to SALIENCE_MAX_HZ, and
    the number of grid points the harmonic sums read (frequencies above the limit count 0)."""
    low, high = SALIENCE_CANDIDATES
    grid = torch.arange(low, high + max(HARMONIC_OFFSETS) + 1, dtype=torch.float64)
    freqs = midi_hz(grid)
    freqs = freqs[freqs <= SALIENCE_MAX_HZ]
    t = torch.arange(SALIENCE_WINDOW, dtype=torch.float64) - SALIENCE_WINDOW / 2
    angle = 2 * math.pi * torch.outer(freqs, t) / sample_rate
    window = torch.hann_window(SALIENCE_WINDOW, periodic=True, dtype=torch.float64)
    basis = torch.cat([torch.cos(angle), torch.sin(angle)]) * window
    return basis.float()[:, None], len(grid)


def salience_matrix(grid_points: int, measured: int) -> torch.Tensor:
    """(measured, 12): how much the magnitude at each measured grid point adds to each
    pitch class's salience (harmonic weights summed over the candidates it is a harmonic of)."""
    low, high = SALIENCE_CANDIDATES
    weights = torch.zeros(grid_points, CHROMA_BINS, dtype=torch.float64)
    for candidate in range(high - low + 1):
        for i, offset in enumerate(HARMONIC_OFFSETS):
            weights[candidate + offset, (low + candidate) % CHROMA_BINS] += HARMONIC_DECAY ** i
    return weights[:measured].float()


def log_centred(power: torch.Tensor) -> torch.Tensor:
    """(B, frames, 12) non-negative -> log, minus the mean over the 12 (loudness cancels)."""
    log_power = torch.log(power + 1e-6)
    return log_power - log_power.mean(-1, keepdim=True)


class InputBlock(nn.Module):
    """16 kHz waveform (B, hop x frames) and its log-mel (B, group x frames, 64) -> the
    weighted, standardised block (B, frames, block_width(pitch)): 76, or 88 with both
    pitch parts."""

    def __init__(self, sample_rate: int, hop: int, group: int, weight: float, pitch: str = "chroma"):
        super().__init__()
        self.hop, self.group, self.weight = int(hop), int(group), float(weight)
        self.width = block_width(pitch)
        self.parts = tuple(pitch.split("+"))
        if "chroma" in self.parts:
            basis, chroma = chroma_basis(sample_rate)
            self.register_buffer("basis", basis, persistent=False)
            self.register_buffer("chroma", chroma, persistent=False)
        if "salience" in self.parts:
            pitch_basis, grid_points = salience_basis(sample_rate)
            self.register_buffer("pitch_basis", pitch_basis, persistent=False)
            self.register_buffer("salience", salience_matrix(grid_points, pitch_basis.shape[0] // 2),
                                 persistent=False)
        # measured on corpus audio by `input-block`; identity until then
        self.register_buffer("mean", torch.zeros(self.width))
        self.register_buffer("std", torch.ones(self.width))

    def _spectrum(self, wav: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> real and imaginary parts (B, frames, K): window j centred on sample hop (j + 1/2)."""
        side = (basis.shape[-1] - self.hop) // 2
        spec = F.conv1d(F.pad(wav.float(), (side, side))[:, None], basis, stride=self.hop)
        real, imag = spec.transpose(1, 2).chunk(2, dim=-1)
        return real, imag

    def chroma_frames(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, hop x frames) -> (B, frames, 12): the log chroma, centred."""
        real, imag = self._spectrum(wav, self.basis)
        return log_centred((real * real + imag * imag) @ self.chroma)

    def pitch_frames(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, hop x frames) -> (B, frames, 12): the log pitch-class salience, centred."""
        real, imag = self._spectrum(wav, self.pitch_basis)
        return log_centred(torch.sqrt(real * real + imag * imag + 1e-12) @ self.salience)

    def features(self, wav: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        """-> the unstandardised block (B, frames, width): pooled log-mel, then the pitch
        parts in the order they are named."""
        batch, steps, bins = log_mel.shape
        parts = [log_mel.view(batch, steps // self.group, self.group, bins).mean(2)]
        parts += [self.chroma_frames(wav) if part == "chroma" else self.pitch_frames(wav) for part in self.parts]
        return torch.cat(parts, -1)

    def spectral_costs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(DFT basis, pitch-class matrix) of each pitch part: what it computes per frame."""
        return [(self.basis, self.chroma) if part == "chroma" else (self.pitch_basis, self.salience)
                for part in self.parts]

    def forward(self, wav: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        return (self.features(wav, log_mel) - self.mean) / self.std * self.weight

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 1e-3) -> None:
        if mean.shape != (self.width,) or std.shape != (self.width,):
            raise ValueError(f"input block statistics must be ({self.width},) each, got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("input block statistics are not finite")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=floor))


def check_weight(weight: float) -> None:
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"input_block must be a finite weight >= 0, got {weight}")
