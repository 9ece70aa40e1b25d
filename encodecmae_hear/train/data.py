"""Training data: random 4 s crops at 24 kHz from a manifest or from tar shards.

Both sources yield micro-batches {"wav" (B, 96000), "lengths" (B,), "keys" [B names],
"starts" (B,), "failed" [paths]}: mono mixdown, resampled to 24 kHz, short files
zero-padded with their valid length (the model masks frames past it as padding); each
crop's file key (a manifest's path, or "shard.tar:member" in tar shards) and its offset
in the file in 24 kHz samples, where a per-file teacher cache looks it up. A file that
fails to decode is dropped from its batch, reported in "failed" and never stops training.

Every random choice is a function of (seed, epoch, item): crop offsets use a generator
seeded with those numbers, and epoch orders are seeded permutations. So the data a step
sees depends only on the step, not on worker count or timing, and a resumed run reads
exactly what an uninterrupted one would have read.

* `ManifestSource`: files listed by `manifest`; a file of duration d appears
  max(1, d // 4 s) times per epoch, as in the reference (duration-weighted sampling).
* `ShardSource`: tar shards in the webdataset layout (`<key>.<ext>` audio, optional
  `<key>.json` with "duration"), read with the standard library's tarfile. Shards are
  split across ranks and workers; each epoch shuffles shard order and records in a shard.
* `RawSource`: raw shards (raw_shards.py: mono 24 kHz int16, memory-mapped): a crop is
  a slice of an array, with no decoding or resampling; sampled like a manifest.
* A folder of audio files becomes a `ManifestSource` of its scan (`data_kind`, `open_source`).
"""
from __future__ import annotations

import glob
import io
import json
import math
import os
import signal
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from encodecmae_hear.audio import resample
from encodecmae_hear.errors import UserError, one_line
from encodecmae_hear.files import regular_file
from encodecmae_hear.model.config import CHUNK_SAMPLES, CHUNK_SECONDS, SAMPLE_RATE
from encodecmae_hear.train.manifest import AUDIO_EXTENSIONS, read_manifest, scan
from encodecmae_hear.train.raw_shards import INT16_SCALE, RAW_INDEX, read_index, shard_path

SAMPLE_EPOCH = 10**9  # crops for fitting codebooks / k-means use epochs from here on
MAX_WORKERS = 8  # data-loader processes per training process (the reference's number)


def crop_rng(seed: int, epoch: int, item: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, item])


class Crop(tuple):
    """A crop, unpacked as the pair (wav (crop_samples,) float32 at 24 kHz, valid samples),
    that also says where it came from: `key` names its file (a manifest's path, or
    "shard.tar:member" in tar shards) and `start` is the file time of its first sample in
    24 kHz samples (fractional for a file at another rate). Like os.stat_result, it has
    more named fields than tuple items, so code that unpacks pairs reads it unchanged."""

    def __new__(cls, wav: torch.Tensor, valid: int, key: str | None = None, start: float = 0.0):
        crop = super().__new__(cls, (wav, valid))
        crop.key, crop.start = key, float(start)
        return crop

    def __reduce__(self):
        return Crop, (self[0], self[1], self.key, self.start)


def read_crop(file, rng: np.random.Generator, crop_samples: int = CHUNK_SAMPLES,
              key: str | None = None) -> Crop:
    """file: path or file object -> Crop (wav (crop_samples,) float32 at 24 kHz, valid
    samples), named `key`, starting at a random sample of the file."""
    with sf.SoundFile(regular_file(file) if isinstance(file, (str, Path)) else file) as f:
        sr, total = f.samplerate, f.frames
        need = math.ceil(crop_samples * sr / SAMPLE_RATE)
        start = int(rng.integers(0, total - need + 1)) if total > need else 0
        f.seek(start)
        audio = f.read(min(need, total), dtype="float32", always_2d=True)  # (N, C)
    if audio.shape[0] == 0:
        raise ValueError("no samples decoded")
    wav = torch.from_numpy(audio.mean(axis=1))  # mono mixdown (N,)
    wav = resample(wav, sr, SAMPLE_RATE)
    if not bool(torch.isfinite(wav).all()):
        raise ValueError("decoded samples are not finite")
    valid = min(wav.shape[0], crop_samples)
    out = torch.zeros(crop_samples)
    out[:valid] = wav[:valid]
    return Crop(out, valid, key, start * SAMPLE_RATE / sr)


def collate(items: list) -> dict:
    """items: Crop (or a (wav, valid) pair: key None, start 0) or (None, "failed path")
    -> batch dict; failures are dropped."""
    good = [item for item in items if item[0] is not None]
    failed = [item[1] for item in items if item[0] is None]
    keys = [getattr(item, "key", None) for item in good]
    starts = torch.tensor([getattr(item, "start", 0.0) for item in good], dtype=torch.float64)
    if not good:
        return {"wav": torch.zeros(0, 0), "lengths": torch.zeros(0, dtype=torch.long),
                "keys": keys, "starts": starts, "failed": failed}
    return {"wav": torch.stack([w for w, _ in good]),
            "lengths": torch.tensor([n for _, n in good], dtype=torch.long),
            "keys": keys, "starts": starts, "failed": failed}


def _load(file, name: str, rng, crop_samples: int) -> tuple:
    """A Crop of `file` keyed `name`, or (None, "name (why it failed)")."""
    try:
        return read_crop(file, rng, crop_samples, key=name)
    except Exception as err:  # any decoder error: skip this file, keep training
        return None, f"{name} ({one_line(err, 120)})"


class ManifestSource(Dataset):
    """Map-style dataset over (epoch, entry) keys; entry e reads file `file_of[e]`."""

    def __init__(self, manifest, seed: int = 0, crop_seconds: float = CHUNK_SECONDS):
        records = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
        # numpy arrays, not lists of Python objects: forked workers share them without
        # copying pages (refcount updates would copy a list of millions of dicts).
        self.paths = np.array([os.fsencode(r["path"]) for r in records])  # names not UTF-8 too
        durations = np.array([r["duration"] for r in records], dtype=np.float64)
        self.crop_seconds, self.crop_samples = crop_seconds, int(crop_seconds * SAMPLE_RATE)
        counts = np.maximum(1, (durations // crop_seconds).astype(np.int64))
        self.file_of = np.repeat(np.arange(len(records)), counts)  # entry -> file
        self.seed = seed
        self.hours = float(durations.sum() / 3600)

    def __len__(self) -> int:
        return len(self.file_of)

    def __getitem__(self, key: tuple[int, int]):
        epoch, entry = key
        path = os.fsdecode(self.paths[self.file_of[entry]])
        return _load(path, path, crop_rng(self.seed, epoch, int(entry)), self.crop_samples)

    def sample(self, count: int, seed: int) -> list[Crop]:
        """`count` crops of distinct entries (for fitting codebooks or k-means)."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        crops = []
        for entry in order.tolist():
            crop = self[(SAMPLE_EPOCH + seed, entry)]
            if crop[0] is not None:
                crops.append(crop)
            if len(crops) == count:
                break
        return crops


class RawSource(ManifestSource):
    """ManifestSource over raw shards: the same duration-weighted entries, epochs and
    seeded crop offsets, each crop a slice of a memory-mapped int16 shard (only its own
    pages are read). Shards are mapped on first use in each process."""

    def __init__(self, folder, seed: int = 0, crop_seconds: float = CHUNK_SECONDS):
        index = read_index(folder)
        self.folder = Path(folder)
        self.paths = np.char.encode(index["keys"])  # bytes: shared by forked workers as is
        self.shard_of, self.offset, self.length = index["shard"], index["offset"], index["length"]
        self.crop_seconds, self.crop_samples = crop_seconds, int(crop_seconds * SAMPLE_RATE)
        durations = self.length / SAMPLE_RATE
        counts = np.maximum(1, (durations // crop_seconds).astype(np.int64))
        self.file_of = np.repeat(np.arange(len(self.length)), counts)
        self.seed = seed
        self.hours = float(durations.sum() / 3600)
        self._maps: dict[int, np.ndarray] = {}

    def __getitem__(self, key: tuple[int, int]):
        epoch, entry = key
        f = int(self.file_of[entry])
        name = self.paths[f].decode()
        try:
            rng, total, need = crop_rng(self.seed, epoch, int(entry)), int(self.length[f]), self.crop_samples
            start = int(rng.integers(0, total - need + 1)) if total > need else 0
            valid = min(need, total)
            shard = int(self.shard_of[f])
            if shard not in self._maps:
                self._maps[shard] = np.load(shard_path(self.folder, shard), mmap_mode="r")
            first = int(self.offset[f]) + start
            samples = torch.from_numpy(self._maps[shard][first:first + valid].astype(np.float32))
        except Exception as err:  # a missing or truncated shard: skip the crop, keep training
            return None, f"{name} ({one_line(err, 120)})"
        wav = torch.zeros(need)
        wav[:valid] = samples / INT16_SCALE
        return Crop(wav, valid, name, start)


class EpochBatchSampler:
    """Endless micro-batches of (epoch, entry) keys for one rank, from micro-batch `start`.

    Epoch e is a seeded permutation of all entries, cut into global micro-batches of
    `micro * world` keys (the tail is dropped); rank r takes slice r of each.
    """

    def __init__(self, size: int, micro: int, rank: int, world: int, seed: int, start: int = 0):
        self.size, self.micro, self.rank, self.world, self.seed = size, micro, rank, world, seed
        self.per_epoch = size // (micro * world)
        if self.per_epoch == 0:
            raise ValueError(f"the corpus has {size} crops per epoch, fewer than one global "
                             f"micro-batch ({micro} x {world} processes)")
        self.start = start

    def position(self, micro_batches: int) -> dict:
        return {"epoch": micro_batches // self.per_epoch,
                "batch_in_epoch": micro_batches % self.per_epoch, "micro_batches": micro_batches}

    def __iter__(self):
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(
                self.seed * 100_003 + epoch))
            for b in range(offset, self.per_epoch):
                first = (b * self.world + self.rank) * self.micro
                yield [(epoch, e) for e in order[first: first + self.micro].tolist()]
            epoch, offset = epoch + 1, 0


def shard_groups(tar: tarfile.TarFile) -> dict[str, dict[str, tarfile.TarInfo]]:
    """The webdataset records of a tar: "folder/stem" -> {extension: member}, where a
    member's stem is its name up to the first dot."""
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in tar.getmembers():
        folder, _, base = member.name.rpartition("/")
        if member.isfile() and "." in base:
            stem, ext = base.split(".", 1)
            groups.setdefault(f"{folder}/{stem}", {})[ext.lower()] = member
    return groups


def audio_member(members: dict[str, tarfile.TarInfo]) -> tarfile.TarInfo | None:
    """The audio file of a webdataset record, if it has one."""
    return next((m for ext, m in members.items() if f".{ext}" in AUDIO_EXTENSIONS), None)


def shard_key(shard: Path, member: tarfile.TarInfo) -> str:
    """The name of a file inside a tar shard, in messages and in the teacher cache."""
    return f"{shard.name}:{member.name}"


class ShardSource(IterableDataset):
    """Endless stream of crops from tar shards; shard i goes to slot i % (world * workers)."""

    def __init__(self, shards, seed: int = 0, crop_seconds: float = CHUNK_SECONDS):
        pattern = str(shards)
        paths = sorted(Path(p) for p in (glob.glob(f"{pattern}/*.tar") if Path(pattern).is_dir()
                                         else glob.glob(pattern)))
        if not paths:
            raise UserError(f"no .tar shards match {pattern}")
        self.shards, self.seed = paths, seed
        self.crop_seconds, self.crop_samples = crop_seconds, int(crop_seconds * SAMPLE_RATE)
        self.rank, self.world, self.micro, self.start, self._skip = 0, 1, 1, 0, 0
        self.hours = None  # unknown without reading every shard

    def configure(self, micro: int, rank: int, world: int, start: int) -> None:
        self.micro, self.rank, self.world, self.start = micro, rank, world, start

    def __iter__(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        slots = self.world * workers
        if len(self.shards) < slots:
            raise ValueError(f"{len(self.shards)} shards cannot feed {self.world} processes x "
                             f"{workers} workers; write more shards or use fewer workers")
        # The DataLoader takes batches from workers in turn, beginning with worker 0. When
        # resuming at micro-batch `start`, worker w plays the part of the worker that made
        # batch start + w, and skips (reading headers only) the batches that one made.
        role = (worker + self.start) % workers
        slot = self.rank * workers + role
        self._skip = (self.start - role + workers - 1) // workers * self.micro
        epoch = 0
        while True:
            order = torch.randperm(len(self.shards), generator=torch.Generator().manual_seed(
                self.seed * 100_003 + epoch)).tolist()
            for shard_index in order:
                if shard_index % slots == slot:
                    yield from self._read_shard(shard_index, epoch)
            epoch += 1

    def _read_shard(self, shard_index: int, epoch: int):
        path = self.shards[shard_index]
        try:
            with tarfile.open(path) as tar:
                groups = shard_groups(tar)
                keys = sorted(groups)
                rng = np.random.default_rng([self.seed, epoch, shard_index])
                for k in rng.permutation(len(keys)):
                    members = groups[keys[k]]
                    audio = audio_member(members)
                    if audio is None:
                        continue
                    crops = 1
                    if "json" in members:
                        meta = json.loads(tar.extractfile(members["json"]).read())
                        crops = max(1, int(meta.get("duration", 0) // self.crop_seconds))
                    for c in range(crops):
                        if self._skip:  # resuming: count the sample without decoding it
                            self._skip -= 1
                            yield None
                            continue
                        name = shard_key(path, audio)
                        data = io.BytesIO(tar.extractfile(audio).read())
                        yield _load(data, name, np.random.default_rng(
                            [self.seed, epoch, shard_index, int(k), c]), self.crop_samples)
        except (tarfile.TarError, OSError) as err:
            if self._skip:
                self._skip -= 1
                yield None
                return
            yield None, f"{path} (bad shard: {one_line(err, 120)})"

    def sample(self, count: int, seed: int) -> list[Crop]:
        crops, self._skip = [], 0
        for shard_index in range(len(self.shards)):
            for item in self._read_shard(shard_index, SAMPLE_EPOCH + seed):
                if item is not None and item[0] is not None:
                    crops.append(item)
                if len(crops) == count:
                    return crops
        return crops


def data_kind(data) -> str:
    """What --data names: "manifest" (a .jsonl file), "raw" (a folder of raw shards,
    raw_shards.py), "shards" (a folder holding .tar files, or a glob pattern of them) or
    "audio" (a folder of audio files, searched recursively, or one audio file)."""
    path = Path(data)
    if (path / RAW_INDEX).is_file():
        return "raw"
    if str(data).endswith((".jsonl", ".json")):
        if not path.is_file():
            raise UserError(f"manifest not found: {data}")
        return "manifest"
    if path.is_dir():
        return "shards" if any(path.glob("*.tar")) else "audio"
    if path.is_file() and path.name.lower().endswith(AUDIO_EXTENSIONS):
        return "audio"
    if glob.has_magic(str(data)) or path.suffix == ".tar":
        return "shards"
    raise UserError(f"--data {data}: expected a manifest (.jsonl), a folder of audio files, raw "
                    f"shards (a folder with {RAW_INDEX}), or tar shards (a folder of .tar files or "
                    f"a glob pattern); "
                    f"{'it is not one' if path.exists() else 'no such file or folder'}")


def open_source(data, seed: int, crop_seconds: float = CHUNK_SECONDS, kind: str | None = None):
    """A manifest, tar shards, raw shards, or a folder of audio (scanned here, in memory;
    training scans it once into its run folder instead: run.training_data). `kind`, when
    the caller has decided it already (data_kind), is not decided again."""
    kind = kind or data_kind(data)
    if kind == "shards":
        return ShardSource(data, seed, crop_seconds)
    if kind == "raw":
        return RawSource(data, seed, crop_seconds)
    return ManifestSource(data if kind == "manifest" else scan([data])[0], seed, crop_seconds)


def cpus_per_process() -> int:
    """The CPUs this process may use, shared by the training processes on this node
    (torchrun's LOCAL_WORLD_SIZE)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def default_workers() -> int:
    """Data-loader processes per training process: its CPUs less one for the training
    process itself; at most MAX_WORKERS."""
    return max(0, min(MAX_WORKERS, cpus_per_process() - 1))


def gpu_process_threads(workers: int) -> int:
    """CPU threads for a training process that computes on a GPU: the CPUs its data-loader
    processes leave. Its own CPU work is light (masks, batches), and more threads than
    free cores spin against the loaders for the same cores."""
    return max(1, cpus_per_process() - workers)


def make_loader(source, micro: int, rank: int, world: int, seed: int, start: int,
                num_workers: int, prefetch: int = 4, pin_memory: bool = False) -> DataLoader:
    """Endless DataLoader of micro-batches for this rank, from micro-batch `start`."""
    extra = dict(num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory)
    if num_workers > 0:
        extra.update(prefetch_factor=prefetch, persistent_workers=True, worker_init_fn=_ignore_signals)
    if isinstance(source, ManifestSource):
        sampler = EpochBatchSampler(len(source), micro, rank, world, seed, start)
        return DataLoader(source, batch_sampler=sampler, **extra)
    source.configure(micro, rank, world, start)
    return DataLoader(_SkipNone(source), batch_size=micro, **extra)


def _ignore_signals(worker_id: int) -> None:
    """Ctrl-C and SIGTERM reach the whole process group: workers keep serving batches
    while the main process checkpoints, and end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _SkipNone(IterableDataset):
    """Drops the placeholders that ShardSource yields for samples skipped on resume."""

    def __init__(self, source: ShardSource):
        self.source = source

    def __iter__(self):
        return (item for item in self.source if item is not None)
