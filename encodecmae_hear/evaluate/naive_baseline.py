"""HEAR module: `hearbaseline.naive` (log-mel + random projection) on 48 kHz task folders.

The HEAR 2021 naive baseline declares 44.1 kHz, a rate our task builders do not write,
and calls `librosa.filters.mel` positionally, which librosa >= 0.10 refuses. This module
keeps the baseline's computation unchanged: it declares 48 kHz, resamples each batch to
44.1 kHz and hands it to the baseline's own functions. Timestamps are in milliseconds,
so they need no conversion.

    python -m encodecmae_hear hear --module encodecmae_hear.evaluate.naive_baseline ...
"""
from __future__ import annotations

from types import SimpleNamespace

from torch import Tensor, nn

from encodecmae_hear.audio import resample

SAMPLE_RATE = 48000


class NaiveBaseline48k(nn.Module):
    sample_rate = SAMPLE_RATE

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.scene_embedding_size = inner.scene_embedding_size
        self.timestamp_embedding_size = inner.timestamp_embedding_size

    def to_inner_rate(self, audio: Tensor) -> Tensor:
        return resample(audio, SAMPLE_RATE, self.inner.sample_rate)


def _naive():
    import hearbaseline.naive as naive  # the HEAR tools are an optional extra: imported on use
    return naive


def load_model(model_file_path: str = "") -> NaiveBaseline48k:
    import librosa  # the naive baseline's own dependency, an optional extra
    naive = _naive()
    keyword_mel = SimpleNamespace(filters=SimpleNamespace(
        mel=lambda sr, **kwargs: librosa.filters.mel(sr=sr, **kwargs)))
    original, naive.librosa = naive.librosa, keyword_mel
    try:
        inner = naive.load_model(model_file_path)
    finally:
        naive.librosa = original
    return NaiveBaseline48k(inner)


def _check(audio: Tensor, model: NaiveBaseline48k) -> None:
    if not isinstance(model, NaiveBaseline48k):
        raise TypeError(f"expected the model from {__name__}.load_model, got {type(model).__name__}")
    if not isinstance(audio, Tensor) or audio.ndim != 2 or not audio.is_floating_point():
        raise ValueError("expected float audio of shape (n_sounds, n_samples) at 48000 Hz")


def get_timestamp_embeddings(audio: Tensor, model: NaiveBaseline48k) -> tuple[Tensor, Tensor]:
    _check(audio, model)
    return _naive().get_timestamp_embeddings(model.to_inner_rate(audio), model.inner)


def get_scene_embeddings(audio: Tensor, model: NaiveBaseline48k) -> Tensor:
    _check(audio, model)
    return _naive().get_scene_embeddings(model.to_inner_rate(audio), model.inner)
