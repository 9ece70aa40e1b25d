"""Audio in: HEAR input checks, the one resampler, and streaming 4 s windows at 24 kHz.

`resample` is torchaudio's sinc resampler with its kernels cached per rate pair; every
part of the project that changes a sample rate calls it. `Chunker` cuts a sound into the model's 4 s windows at 24 kHz, resampling each window
from a slice of the input with enough context on both sides that the result equals
resampling the whole sound at once (torchaudio's sinc resampler), while memory stays
bounded by one window whatever the length of the sound.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio

from encodecmae_hear.model.config import CHUNK_SAMPLES, FRAME_RATE, HOP_LENGTH, SAMPLE_RATE

HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
MAX_ABS_AMPLITUDE = 2.0  # beyond this the input is not [-1, 1] audio (e.g. int16 scale)


def check_audio(audio, sample_rate: int) -> torch.Tensor:
    """Validates a HEAR batch (n_sounds, n_samples) and returns it as float32."""
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"audio must be a torch.Tensor of shape (n_sounds, n_samples), "
                         f"got {type(audio).__name__}")
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape (n_sounds, n_samples), got shape "
                         f"{tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be floating point in [-1, 1] (float32), got {audio.dtype}; "
                         f"for int16 samples use audio.float() / 32768")
    n_sounds, n_samples = audio.shape
    if n_sounds == 0 or n_samples == 0:
        raise ValueError(f"audio is empty: shape {tuple(audio.shape)}")
    min_samples = math.ceil(HOP_LENGTH * sample_rate / SAMPLE_RATE)
    if n_samples < min_samples:
        raise ValueError(f"audio is shorter than one frame: {n_samples} samples at "
                         f"{sample_rate} Hz; need at least {min_samples} "
                         f"({1000 / 75:.1f} ms)")
    audio = audio.float()
    low, high = torch.aminmax(audio)  # NaN propagates; no full-size temporaries
    if not (torch.isfinite(low) and torch.isfinite(high)):
        bad = int((~torch.isfinite(audio)).sum())
        raise ValueError(f"audio contains {bad} NaN or infinite values")
    peak = max(-float(low), float(high))
    if peak > MAX_ABS_AMPLITUDE:
        raise ValueError(f"audio must be in [-1, 1]; its peak is {peak:.4g}. Is it integer-"
                         f"scaled? (int16 audio: divide by 32768)")
    return audio


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Frames (75/s) the HEAR API returns for `num_samples` at `sample_rate`: every frame
    whose centre lies inside the audio, round(num_samples * 75 / sample_rate) rounding
    halves up. Frame i covers [320 i, 320 (i + 1)) at 24 kHz and is stamped with its
    centre; HEAR refuses timestamps past the end of the audio, so a last partial frame
    whose centre would lie outside is not returned (its < 6.7 ms of audio is still
    seen by the frames before it)."""
    return (2 * num_samples * round(FRAME_RATE) + sample_rate) // (2 * sample_rate)


_RESAMPLERS: dict[tuple[int, int, str], torchaudio.transforms.Resample] = {}


def resampler(orig: int, new: int, device="cpu") -> torchaudio.transforms.Resample:
    """torchaudio's Resample for orig -> new Hz on `device`, built once per process."""
    key = (int(orig), int(new), str(torch.device(device)))
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(int(orig), int(new)).to(device)
    return _RESAMPLERS[key]


def resample(wave, orig: int, new: int):
    """wave (..., n) at `orig` Hz -> float32 at `new` Hz; a numpy array in gives one out."""
    as_numpy = isinstance(wave, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)) if as_numpy else wave.float()
    if orig != new:
        tensor = resampler(orig, new, tensor.device)(tensor)
    return tensor.numpy() if as_numpy else tensor


def resampled_length(num_samples: int, sample_rate: int) -> int:
    g = math.gcd(sample_rate, SAMPLE_RATE)
    return math.ceil(num_samples * (SAMPLE_RATE // g) / (sample_rate // g))


class Chunker:
    """Turns one sound at `sample_rate` into 4 s chunks at 24 kHz (the last zero-padded)."""

    def __init__(self, sample_rate: int):
        if sample_rate not in HEAR_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of the HEAR rates {HEAR_SAMPLE_RATES}, "
                             f"got {sample_rate}")
        self.sample_rate = sample_rate
        g = math.gcd(sample_rate, SAMPLE_RATE)
        self.orig, self.new = sample_rate // g, SAMPLE_RATE // g
        # Context on each side, whole resampler periods, wider than the sinc kernel.
        self.margin = (resampler(sample_rate, SAMPLE_RATE).width // self.orig + 2) * self.orig

    def chunks(self, sound: torch.Tensor) -> Iterator[tuple[torch.Tensor, int]]:
        """sound (n_samples,) -> yields (chunk (96000,), valid samples in the chunk)."""
        n_in = sound.shape[0]
        n_out = resampled_length(n_in, self.sample_rate)
        for out_start in range(0, n_out, CHUNK_SAMPLES):
            out_end = min(out_start + CHUNK_SAMPLES, n_out)
            in_start = out_start * self.orig // self.new  # exact: 96000 is a multiple of `new`
            in_end = math.ceil(out_end * self.orig / self.new)
            lo, hi = max(0, in_start - self.margin), min(n_in, in_end + self.margin)
            piece = resample(sound[lo:hi], self.sample_rate, SAMPLE_RATE)
            offset = (in_start - lo) * self.new // self.orig
            chunk = piece[offset: offset + out_end - out_start]
            valid = chunk.shape[0]
            if valid < CHUNK_SAMPLES:
                chunk = torch.nn.functional.pad(chunk, (0, CHUNK_SAMPLES - valid))
            yield chunk, valid


def load_audio(path, sample_rate: int) -> torch.Tensor:
    """An audio file (a path or an open binary file) that soundfile reads (any rate, any
    channel count) -> mono float32 (n_samples,) at `sample_rate`: the channels are
    averaged, then `resample`d from the file's rate. soundfile's errors (unreadable,
    unknown format) name the file."""
    with sf.SoundFile(path if hasattr(path, "read") else str(path)) as f:
        rate = f.samplerate
        data = f.read(dtype="float32", always_2d=True)  # (n_samples, channels)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, sample_rate)
