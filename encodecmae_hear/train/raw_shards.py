"""Raw training shards: the corpus decoded once into mono 24 kHz int16 samples, so that a
training crop is a slice of a memory-mapped array (data.RawSource): no decoding, no
resampling, only the crop's own bytes read.

Layout of a folder:
* `raw-000000.npy`, ...: int16 samples of many files one after another (np.save format,
  about `shard_seconds` of audio each).
* `raw-index.npz`, written last (a folder without it is unfinished): per file its
  `keys` (the source path), `shard` number, `offset` and `length` in samples.

Size: 24,000 samples/s x 2 bytes = 172.8 MB per hour of audio (10,000 h: 1.73 TB), 30 to
60 times an Opus copy at 24-48 kbit/s: the price of a loader that does nothing but copy.

    python -m encodecmae_hear manifest audio/ -o corpus.jsonl --raw-shards raw/
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from encodecmae_hear import files
from encodecmae_hear.audio import resample
from encodecmae_hear.model.config import SAMPLE_RATE
from encodecmae_hear.errors import one_line

RAW_INDEX = "raw-index.npz"
INT16_SCALE = 32768.0  # int16 sample = round(x * 32768), clipped to [-32768, 32767]


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * INT16_SCALE), -32768, 32767).astype(np.int16)


def decode_24k_mono(path) -> np.ndarray:
    """A whole audio file -> (n,) float32 mono at 24 kHz (channels averaged)."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return np.asarray(resample(audio.mean(axis=1), rate, SAMPLE_RATE), dtype=np.float32)


def write_raw_shards(records: list[dict], out_dir, shard_seconds: float = 3600.0) -> dict:
    """Decodes the manifest records' files into raw shards under out_dir; a file that
    fails to decode, or holds non-finite samples, is skipped and reported.
    -> {"files", "hours", "shards", "bytes", "skipped": [(path, why)]}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RAW_INDEX).unlink(missing_ok=True)  # unfinished until the index is rewritten
    limit = int(shard_seconds * SAMPLE_RATE)
    keys, shard_of, offsets, lengths, skipped = [], [], [], [], []
    pending: list[np.ndarray] = []
    state = {"shard": 0, "filled": 0, "bytes": 0}

    def flush():
        path = out_dir / f"raw-{state['shard']:06d}.npy"
        files.write_npy(path, np.concatenate(pending) if pending else np.zeros(0, np.int16))
        state["bytes"] += path.stat().st_size
        pending.clear()
        state["shard"], state["filled"] = state["shard"] + 1, 0

    for record in records:
        try:
            audio = decode_24k_mono(record["path"])
            if audio.size == 0 or not np.isfinite(audio).all():
                raise ValueError("no samples" if audio.size == 0 else "samples are not finite")
        except Exception as err:  # any decoder error: skip the file
            skipped.append((record["path"], one_line(err, 160)))
            continue
        if state["filled"] and state["filled"] + audio.size > limit:
            flush()
        keys.append(str(record["path"]))
        shard_of.append(state["shard"])
        offsets.append(state["filled"])
        lengths.append(audio.size)
        pending.append(to_int16(audio))
        state["filled"] += audio.size
    if pending:
        flush()
    files.write_npz(out_dir / RAW_INDEX, {
        "keys": np.array(keys, dtype=str), "shard": np.array(shard_of, dtype=np.int32),
        "offset": np.array(offsets, dtype=np.int64), "length": np.array(lengths, dtype=np.int64)})
    return {"files": len(keys), "hours": sum(lengths) / SAMPLE_RATE / 3600, "shards": state["shard"],
            "bytes": state["bytes"], "skipped": skipped}


def read_index(folder) -> dict[str, np.ndarray]:
    with np.load(Path(folder) / RAW_INDEX, allow_pickle=False) as index:
        return {name: index[name] for name in ("keys", "shard", "offset", "length")}


def shard_path(folder, shard: int) -> Path:
    return Path(folder) / f"raw-{shard:06d}.npy"
