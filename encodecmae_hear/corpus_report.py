"""Outputs of `corpus`: manifests, the source record (CORPUS.md) and packed tar shards."""
from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from .corpus_sources import CATEGORIES


def write_jsonl(path: Path, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_manifests(rows: list[dict], out: Path) -> None:
    """manifest.jsonl (all splits, paths relative to out); pretrain/valid.jsonl (absolute)."""
    write_jsonl(out / "manifest.jsonl", rows)
    for split, name in (("train", "pretrain.jsonl"), ("valid", "valid.jsonl")):
        write_jsonl(out / name, [{**r, "path": str(out / r["path"])} for r in rows
                                 if r["split"] == split])


def hours_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    """source -> category -> hours."""
    table: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
    for r in rows:
        table[r["source"]][r["category"]] += r["duration"] / 3600
    return table


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def write_record(rows, records, out: Path, record_path: Path, wall_s: float) -> None:
    """CORPUS.md: every source with package, version, licence, role, files, hours."""
    table = hours_table(rows)
    files = collections.Counter(r["source"] for r in rows)
    lines = ["# Pretraining corpus: sources and licences", "",
             "Built by `python -m encodecmae_hear corpus` (see docs/CORPUS_BUILD.md) from Debian",
             "packages only. Every audio file is converted to mono 24 kHz Ogg Opus. Role",
             "`heldout` sources are never used for pretraining; they feed `heldout-tasks`.", "",
             "## Hours", "", "| split | " + " | ".join(CATEGORIES) + " | total |",
             "|---|" + "---:|" * (len(CATEGORIES) + 1)]
    for split in ("train", "valid", "heldout"):
        hours = [sum(r["duration"] for r in rows if r["split"] == split and r["category"] == c) / 3600
                 for c in CATEGORIES]
        lines.append(f"| {split} | " + " | ".join(f"{h:.2f}" for h in hours) + f" | {sum(hours):.2f} |")
    lines += ["", f"{len(rows)} files; audio {folder_mib(out / 'audio'):.0f} MiB "
              "(build times and the packed copy: docs/CORPUS_BUILD.md).", "",
              "## Sources", "", "| package | version | licence (from its copyright file) | role | kind "
              "| files | " + " | ".join(f"h {c}" for c in CATEGORIES) + " |",
              "|---|---|---|---|---|---:|" + "---:|" * len(CATEGORIES)]
    for rec in sorted(records, key=lambda r: (r["role"], r["package"])):
        hours = table.get(rec["package"], {})
        lines.append(f"| {rec['package']} | {rec['version']} | {rec['licence'][:120]} | {rec['role']} | "
                     f"{rec['kind']} | {files.get(rec['package'], 0)} | "
                     + " | ".join(f"{hours.get(c, 0.0):.2f}" for c in CATEGORIES) + " |")
    lines += ["", "Synthesised sources: `espeak-ng` rows count the speech that espeak-ng "
              "(voices from espeak-ng-data) spoke from the licence texts of base-files; "
              "`fluidsynth` rows count seeded procedural MIDI pieces played through the "
              "fluid-soundfont-gm soundfont.", ""]
    text = "\n".join(lines)
    for path in (record_path, out / "CORPUS.md"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def pack_selection(rows, hours: float) -> list[dict]:
    """Train files for the packed copy, at most `hours` in all: environment first (the
    rarest), then the rest shared evenly by speech and music; files in a seeded order
    (hash of the path), so the same corpus gives the same selection."""
    import hashlib

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


def pack(rows, out: Path, level: float, n_shards: int, hours: float = 1e9) -> list[Path]:
    """Train split (or `hours` of it, see pack_selection) re-encoded at a low Opus
    bitrate into n_shards tar shards."""
    import soundfile as sf

    from .corpus import write_opus
    from .manifest import write_shards

    train = pack_selection(rows, hours)
    small = out / "packed_audio"
    packed = []
    for r in train:
        target = small / r["path"]
        if not target.exists():
            audio, _ = sf.read(str(out / r["path"]), dtype="float32")
            write_opus(target, audio, compression_level=level)
        packed.append({**r, "path": str(target)})
    per_shard = -(-len(packed) // n_shards)
    shards = write_shards(packed, out / "packed", per_shard=per_shard)
    total = sum(p.stat().st_size for p in shards) / 2**20
    hours = sum(r["duration"] for r in train) / 3600
    by_cat = {c: sum(r["duration"] for r in train if r["category"] == c) / 3600 for c in CATEGORIES}
    summary = {"files": len(packed), "hours": round(hours, 3), "mib": round(total, 2),
               "hours_by_category": {c: round(h, 3) for c, h in by_cat.items()},
               "opus_compression_level": level, "shards": [p.name for p in shards]}
    (out / "packed" / "PACK.json").write_text(json.dumps(summary, indent=1))
    print(f"packed {len(packed)} files ({hours:.2f} h) into {len(shards)} shards, {total:.1f} MiB")
    return shards
