"""The one door for checkpoints: the file format, where files are found, and loading.

Format (version 2): one `torch.save`d dict, loaded with `weights_only=True`.

    format      "encodecmae_hear"
    version     2 (version 1 files, which lack embedding_stats, are still read)
    config      ModelConfig.to_dict() -- the checkpoint rebuilds its own model; a
                config with "architecture": "mobile" is a MobileConfig (model/mobile.py),
                one without is EnCodecMAE's
    model       the model's state dict (float32, or float16 when saved with half=True)
    tokenizer   EnCodec tokenizer state dict, or None (not needed for embeddings)
    provenance  JSON-like dict: what it was trained on, steps, targets, commit, notes
    training    dict for resuming (optimizer, step, RNG ...), or {} for release files
    embedding_stats  None, or {"mean", "std"}: (layers + 1, D) per-channel statistics of
                the encoder input and each layer on pretraining audio
                (train/embedding_stats.py), checked against the model when it is built;
                optionally also scene whitening for one HEAR layer option
                (train/scene_whitening.py): "scene_layer" (int or str), "scene_mean"
                (E,), "scene_projection" (K, E), E a multiple of D, K <= E

Where files are found: locate.py ("" is the bundled default; a path is itself; a name is
local, bundled or published on the Hugging Face hub). Official EnCodecMAE files are
converted in memory (official/convert.py).
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from encodecmae_hear import files
from encodecmae_hear.errors import UserError, one_line
from encodecmae_hear.locate import (  # noqa: F401  (re-exported: where checkpoints are found)
    CHECKPOINT_DIR_ENV,
    DEFAULT_CHECKPOINT_ENV,
    bundled_names,
    default_checkpoint,
    locate,
    resolve_checkpoint,
)
from encodecmae_hear.model import whitening
from encodecmae_hear.model.config import ModelConfig
from encodecmae_hear.model.encodec import build_tokenizer
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.model.mobile import ARCHITECTURE as MOBILE
from encodecmae_hear.model.mobile import MobileConfig, MobileModel
from encodecmae_hear.official.convert import Converted, OfficialCheckpointError, read_official

FORMAT = "encodecmae_hear"
VERSION = 2
READABLE_VERSIONS = (1, 2)
KEYS = {"format", "version", "config", "model", "tokenizer", "provenance", "training", "embedding_stats"}

ENCODECMAE = "encodecmae"  # the architecture of configs without an "architecture" key



class CheckpointError(UserError, ValueError):
    """A file that is not a usable checkpoint of this project; the message says why."""


class OfficialFormat(CheckpointError):
    """An official EnCodecMAE file; `load_checkpoint` converts it."""

    def __init__(self, path, content: dict):
        super().__init__(f"{path}: this is an official EnCodecMAE checkpoint, not this "
                         f"project's format; load it with load_checkpoint / load_model, or "
                         f"convert it with `python -m encodecmae_hear convert {path} OUT.pt`")
        self.content = content


def make_payload(config: ModelConfig, model_state: dict, *, tokenizer: dict | None = None,
                 provenance: dict | None = None, training: dict | None = None,
                 embedding_stats: dict | None = None) -> dict:
    """The dict a checkpoint file holds; the one place that lays it out."""
    return {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "model": model_state,
            "tokenizer": tokenizer, "provenance": dict(provenance or {}),
            "training": dict(training or {}), "embedding_stats": embedding_stats}


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
    """Writes `model` (an EncodecMAE or a MobileModel) atomically; `half` stores float16 weights."""
    state = model.state_dict()
    files.torch_save(make_payload(
        model.config, _to_half(state) if half else state,
        tokenizer=tokenizer.state_dict() if tokenizer is not None else None,
        provenance=provenance, training=training, embedding_stats=embedding_stats), path)


def write_payload(payload: dict, path) -> None:
    """Writes a payload read (and changed) by `read_checkpoint`, atomically."""
    files.torch_save(payload, path)


def payload_of(converted: Converted) -> dict:
    return make_payload(converted.config, converted.state, tokenizer=converted.tokenizer,
                        provenance=converted.provenance)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Loads and validates a checkpoint payload; raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, err)) from None
    except Exception as err:  # torch raises many kinds on damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt?): "
                              f"{one_line(err, 200)}") from None
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


PICKLE_OR_ZIP = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _refusal(path: Path, err: Exception) -> str:
    """Why torch's weights_only loader refused a file, in words that do not mislead: a
    file that is not a PyTorch file at all (an ONNX model, text, ...) is said to be
    that; only a pickle that names Python objects is said to be able to run code."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(PICKLE_OR_ZIP):
        onnx = " (an ONNX model? those load with encodecmae_hear.mobile_hear.load_model)" \
            if path.suffix.lower() == ".onnx" else ""
        return (f"{path}: not a PyTorch checkpoint file: it starts with bytes {head!r}, not a "
                f"zip archive or a pickle{onnx}")
    said = one_line(err)
    detail = said[said.find("Trying to load"):].split(". ")[0][:200] if "Trying to load" in said \
        else "unsupported content"
    return (f"{path}: refused to load: it holds Python objects beyond tensors and plain data "
            f"(weights_only=True), which could run code; nothing in it was run ({detail})")


def check_stats(stats: dict, num_layers: int, dim: int, path="checkpoint") -> None:
    """Embedding statistics must be finite (layers + 1, D) means and positive stds."""
    expected = (num_layers + 1, dim)
    if not isinstance(stats, dict):
        raise CheckpointError(f"{path}: embedding_stats should be a dict with 'mean' and 'std', "
                              f"got {type(stats).__name__}")
    for key in ("mean", "std"):
        value = stats.get(key)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(f"{path}: embedding_stats[{key!r}] should be a tensor of shape "
                                  f"{expected} (encoder input + {num_layers} layers, D {dim}), got {found}")
    finite = bool(torch.isfinite(stats["mean"]).all()) and bool(torch.isfinite(stats["std"]).all())
    if not finite or not bool((stats["std"] > 0).all()):
        raise CheckpointError(f"{path}: embedding_stats hold a non-finite value or a non-positive std")
    unknown = set(stats) - {"mean", "std"} - set(whitening.KEYS)
    if unknown:
        raise CheckpointError(f"{path}: embedding_stats hold unknown keys {sorted(map(str, unknown))}")
    if any(key in stats for key in whitening.KEYS):
        try:
            whitening.check(stats, num_layers, dim)
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None


def architecture_of(payload: dict) -> str:
    """"encodecmae" or "mobile": the model family a payload's config describes."""
    config = payload.get("config")
    return config.get("architecture", ENCODECMAE) if isinstance(config, dict) else ENCODECMAE


def model_from_payload(payload: dict, path="checkpoint") -> EncodecMAE | MobileModel:
    """The model a payload describes, float32, in eval mode, weights matched strictly."""
    architecture = architecture_of(payload)
    if architecture not in (ENCODECMAE, MOBILE):
        raise CheckpointError(f"{path}: unknown architecture {architecture!r}; this code builds "
                              f"{ENCODECMAE!r} and {MOBILE!r} models")
    family = (ModelConfig, EncodecMAE) if architecture == ENCODECMAE else (MobileConfig, MobileModel)
    try:
        config = family[0].from_dict(payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad config: {err}") from None
    model = family[1](config)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored config: "
                              f"{one_line(err, 600)}") from None
    if payload.get("embedding_stats") is not None:
        if architecture == MOBILE:
            raise CheckpointError(f"{path}: embedding_stats are not supported for mobile models")
        check_stats(payload["embedding_stats"], model.num_layers, config.dim, path)
    return model.float().eval()


def tokenizer_from_payload(payload: dict, path="checkpoint"):
    if payload.get("tokenizer") is None:
        return None
    tokenizer = build_tokenizer()
    try:
        tokenizer.load_state_dict(payload["tokenizer"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: tokenizer weights do not fit EnCodec 24 kHz: "
                              f"{one_line(err, 600)}") from None
    return tokenizer




def read_any(name_or_path="", revision: str | None = None) -> tuple[Path, dict]:
    """-> (resolved path, payload) for this project's files and official ones alike; a
    published model's payload records where it came from (provenance "published")."""
    located = locate(name_or_path, revision)
    path = located.path
    try:
        payload = read_checkpoint(path)
    except OfficialFormat as official:
        try:
            payload = payload_of(read_official(path, official.content,
                                               download_encodec=located.published is not None))
        except OfficialCheckpointError as err:
            raise CheckpointError(str(err)) from None
    if located.published is not None:
        payload["provenance"] = {**payload["provenance"], "published": located.published}
    return path, payload


def load_checkpoint(name_or_path="", architecture: str | None = ENCODECMAE,
                    revision: str | None = None) -> tuple:
    """-> (the model in eval mode on CPU, float32; the payload dict) for a path, a name
    (local, bundled or published: locate.py), an official file or "" (the bundled
    default). A file of another `architecture` than the one asked for is refused (None
    takes any: EncodecMAE or MobileModel). `revision` pins a published name's commit."""
    path, payload = read_any(name_or_path, revision)
    found = architecture_of(payload)
    if architecture is not None and found != architecture:
        where = "encodecmae_hear.mobile_hear" if found == MOBILE else "encodecmae_hear"
        raise CheckpointError(f"{path}: holds a model of architecture {found!r}, not "
                              f"{architecture!r}; its HEAR module is {where}")
    return model_from_payload(payload, path), payload
