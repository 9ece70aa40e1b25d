"""The packed copy of the corpus: a few hours of the train split re-encoded at a low Opus
bitrate into tar shards (the layout of `manifest --shards`), small enough to upload."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import soundfile as sf

from encodecmae_hear import files
from encodecmae_hear.corpus.opus import write_opus
from encodecmae_hear.corpus.parallel import map_in_order
from encodecmae_hear.corpus.sources import CATEGORIES
from encodecmae_hear.train.manifest import write_shards


def pack_selection(rows, hours: float) -> list[dict]:
    """Train files for the packed copy, at most `hours` in all: environment first (the
    rarest), then the rest shared evenly by speech and music; files in a seeded order
    (hash of the path), so the same corpus gives the same selection."""
    def order(r):
        return hashlib.sha1(r["path"].encode()).hexdigest()
    train = sorted((r for r in rows if r["split"] == "train"), key=order)
    by_cat = {c: [r for r in train if r["category"] == c] for c in CATEGORIES}
    have = {c: sum(r["duration"] for r in by_cat[c]) / 3600 for c in CATEGORIES}
    budget = {"environment": min(have["environment"], hours / 3)}
    rest = hours - budget["environment"]
    budget["speech"] = min(have["speech"], rest / 2)
    budget["music"] = rest - budget["speech"]
    chosen = []
    for c in CATEGORIES:
        total = 0.0
        for r in by_cat[c]:
            if total + r["duration"] / 3600 <= budget[c]:
                chosen.append(r)
                total += r["duration"] / 3600
    return sorted(chosen, key=lambda r: r["path"])


def reencode(row: dict, out: Path, level: float) -> dict:
    """One corpus file re-encoded (unless done) into OUT/packed_audio -> its packed row."""
    target = out / "packed_audio" / row["path"]
    if not target.exists():
        audio, _ = sf.read(str(out / row["path"]), dtype="float32")
        write_opus(target, audio, compression_level=level)
    return {**row, "path": str(target)}


def pack(rows, out: Path, level: float, n_shards: int, hours: float = 1e9, jobs: int = 1) -> list[Path]:
    """Train split (or `hours` of it, see pack_selection) re-encoded at a low Opus
    bitrate (in `jobs` processes) into n_shards tar shards."""
    train = pack_selection(rows, hours)
    packed = list(map_in_order(functools.partial(reencode, out=out, level=level), train, jobs))
    per_shard = -(-len(packed) // n_shards)
    shards = write_shards(packed, out / "packed", per_shard=per_shard)
    total = sum(p.stat().st_size for p in shards) / 2**20
    hours = sum(r["duration"] for r in train) / 3600
    by_cat = {c: sum(r["duration"] for r in train if r["category"] == c) / 3600 for c in CATEGORIES}
    summary = {"files": len(packed), "hours": round(hours, 3), "mib": round(total, 2),
               "hours_by_category": {c: round(h, 3) for c, h in by_cat.items()},
               "opus_compression_level": level, "shards": [p.name for p in shards]}
    files.write_json(out / "packed" / "PACK.json", summary, indent=1)
    print(f"packed {len(packed)} files ({hours:.2f} h) into {len(shards)} shards, {total:.1f} MiB")
    return shards
