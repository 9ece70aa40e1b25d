"""Outputs of `corpus`: the manifests and the source record (CORPUS.md)."""
from __future__ import annotations

import collections
from pathlib import Path

from encodecmae_hear import files
from encodecmae_hear.corpus.sources import CATEGORIES


def write_manifests(rows: list[dict], out: Path) -> None:
    """manifest.jsonl (all splits, paths relative to out); pretrain/valid.jsonl (absolute)."""
    files.write_jsonl(out / "manifest.jsonl", rows)
    for split, name in (("train", "pretrain.jsonl"), ("valid", "valid.jsonl")):
        files.write_jsonl(out / name, [{**r, "path": str(out / r["path"])} for r in rows
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
    file_counts = collections.Counter(r["source"] for r in rows)
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
                     f"{rec['kind']} | {file_counts.get(rec['package'], 0)} | "
                     + " | ".join(f"{hours.get(c, 0.0):.2f}" for c in CATEGORIES) + " |")
    lines += ["", "Synthesised sources: `espeak-ng` rows count the speech that espeak-ng "
              "(voices from espeak-ng-data) spoke from the licence texts of base-files; "
              "`fluidsynth` rows count seeded procedural MIDI pieces played through the "
              "fluid-soundfont-gm soundfont.", ""]
    text = "\n".join(lines)
    for path in (record_path, out / "CORPUS.md"):
        files.write_text(path, text)
