"""Corpus audio files: any readable file in, mono 24 kHz Ogg Opus out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from encodecmae_hear import files
from encodecmae_hear.audio import resample
from encodecmae_hear.model.config import SAMPLE_RATE


def read_audio(path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio, sr


def to_mono_24k(audio: np.ndarray, sr: int) -> np.ndarray:
    """(n,) or (n, c) at sr -> (m,) float32 mono at 24 kHz, peak at most 0.99."""
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    if mono.size == 0:
        return mono.astype(np.float32)
    mono = resample(mono, sr, SAMPLE_RATE)
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    return (mono * (0.99 / peak) if peak > 0.99 else mono).astype(np.float32)


def write_opus(path: Path, audio: np.ndarray, compression_level: float | None = None) -> None:
    """Atomic write of mono 24 kHz Ogg Opus (compression_level 0..1: higher = smaller)."""
    with files.atomic_open(path) as f:
        sf.write(f, audio, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=compression_level)
