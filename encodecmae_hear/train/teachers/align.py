"""Putting a teacher's frames on the model's frame grid.

A teacher runs at 16 kHz on its own time axis (CREPE and GE2E: 10 ms frames; Silero VAD:
32 ms chunks). The model's frames are the frontend's: for mel256, frame i is the Kaldi
window [318 i, 318 i + 637) of the 24 kHz crop, centred at (318 i + 318) / 24000 s
(`encodecmae_hear.model.frontend.frame_centres`). The rule:

1. the 24 kHz crop is resampled to 16 kHz with the project's one resampler
   (`encodecmae_hear.audio.resample`), which keeps time: sample n at 16 kHz is at n / 16000 s;
2. each teacher frame j gets the time of its own centre t_j in seconds (a 10 ms frame
   of a centred STFT: j / 100; a 512-sample chunk: (512 j + 256) / 16000);
3. frame i of the model gets the teacher's features linearly interpolated at its centre
   c_i, between the two teacher frames around it; before the first and after the last
   teacher centre the nearest teacher frame is taken (no extrapolation).

So T, the number of target frames, is always the frontend's, and a feature that changes
at time t changes in the targets at the model frame whose centre is nearest t (up to the
teacher's own window). CREPE skips step 3: its windows are cut centred on c_i directly.
"""
from __future__ import annotations

import torch

from encodecmae_hear.model.config import SAMPLE_RATE
from encodecmae_hear.model.frontend import frame_centres

TEACHER_RATE = 16_000  # every teacher here runs at 16 kHz


def centres_seconds(frontend: str, num_samples: int, device=None) -> torch.Tensor:
    """(T,) float64 centre times in seconds of the frames `frontend` makes of a 24 kHz
    crop of `num_samples` samples."""
    return (frame_centres(frontend, num_samples) / SAMPLE_RATE).to(device)


def interpolate_frames(features: torch.Tensor, times: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """features (B, J, D) at increasing times (J,) -> (B, T, D) at `centres` (T,), linear
    between neighbours, held constant beyond the ends (times and centres in seconds)."""
    if times.shape[0] == 1:
        return features[:, :1].expand(-1, centres.shape[0], -1)
    times, centres = times.double().to(features.device), centres.double().to(features.device)
    right = torch.searchsorted(times, centres).clamp(1, times.shape[0] - 1)  # (T,)
    left = right - 1
    span = (times[right] - times[left]).clamp(min=1e-12)
    w = ((centres - times[left]) / span).clamp(0.0, 1.0).to(features.dtype)[None, :, None]  # (1, T, 1)
    return features[:, left] * (1 - w) + features[:, right] * w
