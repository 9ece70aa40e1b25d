"""Checkpoint format (version 2): one `torch.save`d dict, loaded with `weights_only=True`.

    format      "encodecmae_hear"
    version     2 (version 1 files, which lack embedding_stats, are still read)
    config      ModelConfig.to_dict() -- the checkpoint rebuilds its own model
    model       EncodecMAE state dict (float32, or float16 when saved with half=True)
    tokenizer   EnCodec tokenizer state dict, or None (not needed for embeddings)
    provenance  JSON-like dict: what it was trained on, steps, targets, commit, notes
    training    dict for resuming (optimizer, step, RNG ...), or {} for release files
    embedding_stats  None, or {"mean", "std"}: (layers + 1, D) per-channel statistics of
                the encoder input and each layer on pretraining audio (embedding_stats.py)

Files are written atomically (temporary file in the same folder, then rename), so a
crash during a save leaves the previous file intact.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .config import ModelConfig

FORMAT = "encodecmae_hear"
VERSION = 2
READABLE_VERSIONS = (1, 2)
KEYS = {"format", "version", "config", "model", "tokenizer", "provenance", "training", "embedding_stats"}


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this project; the message says why."""


class OfficialFormat(CheckpointError):
    """An official EnCodecMAE file (see official.py); `load_checkpoint` converts it."""

    def __init__(self, path, content: dict):
        super().__init__(f"{path}: this is an official EnCodecMAE checkpoint, not this "
                         f"project's format; load it with load_checkpoint / load_model, or "
                         f"convert it with `python -m encodecmae_hear convert {path} OUT.pt`")
        self.content = content


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _to_half(state: dict) -> dict:
    """float16 copies of floating tensors, keeping tensors that were shared shared."""
    converted: dict[int, torch.Tensor] = {}
    out = {}
    for key, tensor in state.items():
        if tensor.is_floating_point():
            ident = id(tensor) if tensor.data_ptr() == 0 else tensor.data_ptr()
            out[key] = converted.setdefault(ident, tensor.detach().half())
        else:
            out[key] = tensor
    return out


def save_checkpoint(path, model, *, tokenizer=None, provenance: dict | None = None,
                    training: dict | None = None, half: bool = False,
                    embedding_stats: dict | None = None) -> None:
    state = model.state_dict()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "model": _to_half(state) if half else state,
        "tokenizer": tokenizer.state_dict() if tokenizer is not None else None,
        "provenance": dict(provenance or {}),
        "training": dict(training or {}),
        "embedding_stats": embedding_stats,
    }
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Loads and validates a checkpoint payload; raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects beyond tensors and plain "
            f"data (weights_only=True), which could run code ({_one_line(err, 200)})") from None
    except Exception as err:  # torch raises many kinds on damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt?): "
                              f"{_one_line(err, 200)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(payload).__name__}")
    if payload.get("format") != FORMAT:
        if "state_dict" in payload:
            raise OfficialFormat(path, payload)
        raise CheckpointError(f"{path}: not an {FORMAT} checkpoint "
                              f"(top-level keys: {sorted(map(str, payload))[:8]})")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}; this code reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    if version == 1:
        payload = {**payload, "version": VERSION, "embedding_stats": None}
    missing = KEYS - set(payload)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {sorted(missing)}")
    return payload


def model_from_payload(payload: dict, path="checkpoint"):
    from .model import EncodecMAE

    try:
        config = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad config: {err}") from None
    model = EncodecMAE(config)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored config: "
                              f"{_one_line(err)}") from None
    if payload.get("embedding_stats") is not None:
        from .embedding_stats import check_stats
        check_stats(payload["embedding_stats"], model.num_layers, config.dim, path)
    return model.float().eval()


def tokenizer_from_payload(payload: dict, path="checkpoint"):
    from .targets import build_tokenizer

    if payload.get("tokenizer") is None:
        return None
    tokenizer = build_tokenizer()
    try:
        tokenizer.load_state_dict(payload["tokenizer"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: tokenizer weights do not fit EnCodec 24 kHz: "
                              f"{_one_line(err)}") from None
    return tokenizer


def _one_line(err: Exception, limit: int = 600) -> str:
    return " ".join(str(err).split())[:limit]


def load_checkpoint(path: str | os.PathLike):
    """-> (EncodecMAE in eval mode on CPU, float32; the payload dict). Also takes official
    EnCodecMAE files (converted in memory) and checkpoint names (official.py)."""
    from .official import OfficialCheckpointError, read_official, resolve_checkpoint

    path = resolve_checkpoint(path)
    try:
        payload = read_checkpoint(path)
    except OfficialFormat as official:
        try:
            payload = read_official(path, official.content)
        except OfficialCheckpointError as err:
            raise CheckpointError(str(err)) from None
    return model_from_payload(payload, path), payload
