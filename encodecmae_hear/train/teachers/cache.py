"""The teacher cache: each teacher's frame features of every file of a corpus, computed
once by `cache-teachers` (cache_build.py) and read by `pretrain --teacher-cache`.

A cache folder holds

    cache.json              the header: format, frontend, frame rule, dtype, the data it
                            was made from, and per teacher its provenance record (name,
                            package, version, licence, weight file, sha256) and counts
    <teacher>/<piece>.npy   (frames, D) float16: the frames of the piece's files, one file
                            after another
    <teacher>/<piece>.json  the piece's index: "keys" (every file of the piece, in order),
                            "files" {key: [first row, frames, samples at 24 kHz]} and
                            "failed" (files that did not decode)

A piece is at most --files-per-piece consecutive files of one tar shard (named after the
shard) or of a manifest. Every file is written to a temporary name and renamed, the .npy
before the .json, so a piece whose index is there is finished, and an interrupted run
redoes only the piece it was in. A file's key is the loader's (`train.data`): its path
in a manifest, "shard.tar:member" in tar shards.

The frame rule: a teacher's `frame_features` of the whole file (mono, 24 kHz, decoded
as the training loader decodes it), so the frames are the frontend's frames of the file
(`model.frontend.frame_centres`). A training crop that starts at 24 kHz sample s of a
file reads, at each of its own frame centres c, the file's features linearly
interpolated at time (s + c) / 24000 s (`align.interpolate_frames`, holding the first
and last frame beyond the ends). Where s is a multiple of the hop the crop's frames are
file frames; elsewhere they are blends of the two around them. They equal the features
a teacher computes on the crop itself up to the context each saw: the cache saw the
whole file, the crop only its 4 s (CREPE's 64 ms windows differ only within 32 ms of the
crop's edges; GE2E's running embedding and volume normalisation and Silero's LSTM state
start at the file's start, not the crop's).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encodecmae_hear import files
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import SAMPLE_RATE
from encodecmae_hear.model.frontend import frame_centres
from encodecmae_hear.model.mae import padding_mask
from encodecmae_hear.train.teachers.align import centres_seconds, interpolate_frames

FORMAT = 1
HEADER = "cache.json"
DTYPE = "float16"


def frame_rule(frontend: str) -> str:
    first, second = frame_centres(frontend, SAMPLE_RATE)[:2].tolist()
    return (f"frame_features of the whole file (mono, 24 kHz, as the loader decodes it) on the "
            f"{frontend} frames of the file, centred at {first:g} + {second - first:g} i samples; "
            f"a crop from sample s reads them linearly interpolated at its frame centres + s")


def piece_files(folder, teacher: str, piece: str) -> tuple[Path, Path]:
    """(features .npy, index .json) of one teacher's piece."""
    return Path(folder) / teacher / f"{piece}.npy", Path(folder) / teacher / f"{piece}.json"


def write_piece(folder, teacher: str, piece: str, keys: list[str], features: dict[str, np.ndarray],
                samples: dict[str, int]) -> None:
    """Writes a piece: `keys` all its files in order, `features` {key: (frames, D)} of those
    that decoded, `samples` their lengths at 24 kHz; the index last, as it marks the piece
    finished."""
    array_path, index_path = piece_files(folder, teacher, piece)
    done = [k for k in keys if k in features]
    rows, index = 0, {}
    for key in done:
        index[key] = [rows, int(features[key].shape[0]), int(samples[key])]
        rows += features[key].shape[0]
    dim = next((features[k].shape[1] for k in done), 0)
    stacked = np.concatenate([features[k] for k in done]) if done else np.zeros((0, dim))
    files.write_npy(array_path, stacked.astype(DTYPE))
    files.write_json(index_path, {"keys": keys, "files": index,
                                  "failed": [k for k in keys if k not in features]})


def read_index(folder, teacher: str, piece: str) -> dict | None:
    """A finished piece's index, or None if the piece is not finished."""
    path = piece_files(folder, teacher, piece)[1]
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def read_header(folder) -> dict:
    path = Path(folder) / HEADER
    if not path.is_file():
        raise UserError(f"no teacher cache at {folder}: expected {path}, written by "
                        f"`cache-teachers --data ... --teachers ... --out {folder}`")
    try:
        header = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"{path} is not a teacher cache header (not JSON: {err})") from None
    if header.get("format") != FORMAT:
        raise UserError(f"{path}: teacher cache format {header.get('format')!r}, this version "
                        f"reads format {FORMAT}; rebuild it with cache-teachers")
    return header


def check_same_weights(cached: dict, installed: dict, where) -> None:
    """The cache's teacher record names the installed package's version and weights."""
    if (cached["sha256"], cached["version"]) != (installed["sha256"], installed["version"]):
        raise UserError(
            f"{where} holds {cached['name']} features of {cached['package']} {cached['version']} "
            f"({cached['weight_file']} sha256 {cached['sha256'][:12]}...), but the installed "
            f"{installed['package']} is {installed['version']} (sha256 {installed['sha256'][:12]}...): "
            f"install {cached['package']}=={cached['version']}, or rebuild the cache")


class TeacherCache:
    """A cache folder opened for training: its header, checked against the run."""

    def __init__(self, folder, frontend: str):
        self.folder = Path(folder)
        self.header = read_header(folder)
        if self.header["frontend"] != frontend:
            raise UserError(f"teacher cache {folder} holds features on the "
                            f"{self.header['frontend']} frontend's frames; this run's frontend "
                            f"is {frontend}: rebuild the cache with --frontend {frontend}")
        self.frontend = frontend

    def holds(self, name: str) -> bool:
        return name in self.header["teachers"]

    def teacher(self, name: str, installed: dict) -> CachedTeacher:
        """The cached features of teacher `name`, whose installed provenance is `installed`."""
        record = self.header["teachers"].get(name)
        if record is None:
            raise UserError(f"teacher cache {self.folder} has no {name!r} features (it has "
                            f"{', '.join(self.header['teachers']) or 'none'}): run cache-teachers "
                            f"--teachers {name} --out {self.folder}")
        if not record.get("complete"):
            raise UserError(f"teacher cache {self.folder}: the {name!r} features are unfinished; "
                            f"run cache-teachers again with the same --out to finish them")
        check_same_weights(record, installed, f"teacher cache {self.folder}")
        return CachedTeacher(self.folder, name, record["dim"], self.frontend)

    def provenance(self, name: str) -> dict:
        """What a checkpoint records of the cache a teacher's targets came from."""
        h = self.header
        data = {k: v for k, v in h["data"].items() if k != "shards"}  # the shard sizes stay in the header
        if "shards" in h["data"]:
            data["shards"] = len(h["data"]["shards"])
        return {"path": str(self.folder), "format": h["format"], "frontend": h["frontend"],
                "frame_rule": h["frame_rule"], "dtype": h["dtype"], "data": data,
                "created": h["created"], "teacher": h["teachers"][name]}

    def check_covers(self, source, teacher: CachedTeacher) -> None:
        """Every file of the training data is in the cache (as features, or as a file that
        did not decode); a missing one is a UserError before training starts."""
        given = self.header["data"]["given"]
        shards = getattr(source, "shards", None)
        if shards is not None:  # the header lists the shards and their sizes
            have = self.header["data"].get("shards", {})
            for shard in shards:
                if have.get(shard.name) != shard.stat().st_size:
                    why = "not in it" if shard.name not in have else "of another size there"
                    raise UserError(f"teacher cache {self.folder} was made from {given}: shard "
                                    f"{shard} is {why}; rebuild it from this --data")
            return
        missing = [p.decode() for p in source.paths if p.decode() not in teacher.keys]
        if missing:
            raise UserError(f"teacher cache {self.folder} was made from {given} and lacks "
                            f"{len(missing)} of this run's {len(source.paths)} files, e.g. "
                            f"{missing[0]}; rebuild it from this --data")


class CachedTeacher(nn.Module):
    """A feature source that reads a teacher's cached per-file features for each crop of a
    batch (`train.objectives.crop_features` gives it the crops' keys and starts)."""

    reads_crops = True

    def __init__(self, folder, name: str, dim: int, frontend: str):
        super().__init__()
        self.folder, self.name, self.dim, self.frontend = Path(folder), name, dim, frontend
        self.files: dict[str, tuple[str, int, int, int]] = {}  # key -> piece, row, frames, samples
        self.keys: set[str] = set()  # every file seen, including those that did not decode
        for index_path in sorted((self.folder / name).glob("*.json")):
            index = json.loads(index_path.read_text())
            self.keys.update(index["keys"])
            for key, (row, frames, samples) in index["files"].items():
                self.files[key] = (index_path.stem, row, frames, samples)
        self.arrays: dict[str, np.ndarray] = {}  # piece -> memory-mapped (rows, D)

    @property
    def out_dim(self) -> int:
        return self.dim

    def file_features(self, key: str) -> tuple[np.ndarray, int]:
        """A file's cached (frames, D) float16 (memory-mapped) and its samples at 24 kHz."""
        if key not in self.files:
            raise UserError(f"teacher cache {self.folder} has no {self.name} features of {key}: "
                            f"rebuild it from this run's --data")
        piece, row, frames, samples = self.files[key]
        if piece not in self.arrays:
            self.arrays[piece] = np.load(piece_files(self.folder, self.name, piece)[0], mmap_mode="r")
        return self.arrays[piece][row: row + frames], samples

    def crop(self, key: str | None, start: float, num_samples: int) -> torch.Tensor:
        """(T, D) float32 features of the crop of `num_samples` samples from 24 kHz sample
        `start` of file `key` (key None: a stand-in crop of no file, zeros)."""
        return self.crop_at(key, start, frame_centres(self.frontend, num_samples))

    def crop_at(self, key: str | None, start: float, centres: torch.Tensor) -> torch.Tensor:
        """(T, D) float32 features at `centres` (T,), in 24 kHz samples of the crop that
        starts at sample `start` of file `key`: another model's frame grid (e.g. a mobile
        student's) read from the same cache."""
        centres = (centres.double() + start) / SAMPLE_RATE  # (T,) s in the file
        if key is None:
            return torch.zeros(centres.shape[0], self.dim)
        stored, samples = self.file_features(key)
        if stored.shape[0] == 0:
            return torch.zeros(centres.shape[0], self.dim)
        times = centres_seconds(self.frontend, samples)  # (J,) the file's frames
        # Only the file frames around the crop: one before its first centre, one after its last.
        lo = max(0, int(torch.searchsorted(times, centres[:1])) - 1)
        hi = min(times.shape[0], int(torch.searchsorted(times, centres[-1:])) + 1)
        part = torch.from_numpy(np.asarray(stored[lo:hi], dtype=np.float32))  # (J', D)
        return interpolate_frames(part[None], times[lo:hi], centres)[0]

    @torch.no_grad()
    def last_layer_features(self, wav: torch.Tensor, lengths: torch.Tensor | None, crops: dict | None):
        """wav (B, N) at 24 kHz (only its shape is used) -> (B, T, D) cached features of
        the batch's crops, and the model's padding mask (B, T)."""
        if crops is None:
            raise ValueError("cached teacher features need the batch's crop keys and starts")
        if len(crops["keys"]) != wav.shape[0]:
            raise ValueError(f"{len(crops['keys'])} crop keys for a batch of {wav.shape[0]}")
        features = torch.stack([self.crop(key, float(start), wav.shape[-1])
                                for key, start in zip(crops["keys"], crops["starts"].tolist())])
        return features.to(wav.device), padding_mask(lengths, features.shape[1], wav.shape[0], wav.device)
