"""`manifest`: scan audio folders into a JSONL manifest (one file per line).

    python -m encodecmae_hear manifest /data/audioset /data/fma -o corpus.jsonl

Each line is {"path", "duration", "sample_rate", "channels", "frames"}. Files that
soundfile cannot open, empty files and files shorter than --min-seconds are skipped,
counted by reason and listed in `<output>.skipped.txt`; a bad file is never fatal.
`--shards DIR` also packs the listed files into tar shards in the webdataset layout
(`<key>.<ext>` audio plus `<key>.json` metadata), the second data source of training.
Training also takes a folder of audio directly: it scans it with `scan` into the run
folder (data.open_source, run.training_data).
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from encodecmae_hear import files
from encodecmae_hear.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


def find_audio(roots) -> list[Path]:
    files = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
            continue
        if not root.is_dir():
            raise UserError(f"audio folder not found: {root}")
        for dirpath, _, names in os.walk(root, followlinks=True):
            files.extend(Path(dirpath, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS))
    return sorted(files)


def describe(path: Path, min_seconds: float) -> tuple[dict | None, str | None]:
    """-> (manifest record, None) or (None, reason it is skipped)."""
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        return None, f"unreadable: {' '.join(str(err).split())[:160]}"
    if info.frames <= 0 or info.samplerate <= 0:
        return None, "empty"
    duration = info.frames / info.samplerate
    if duration < min_seconds:
        return None, f"shorter than {min_seconds} s"
    return {"path": str(path.resolve()), "duration": round(duration, 4),
            "sample_rate": int(info.samplerate), "channels": int(info.channels),
            "frames": int(info.frames)}, None


def read_manifest(path, needs: tuple[str, ...] = ("path", "duration")) -> list[dict]:
    """The records of a manifest, each with the keys `needs` (training needs durations,
    embedding only paths); a missing, empty or malformed one is a UserError."""
    records = []
    try:
        f = open(path)
    except OSError as err:
        raise UserError(f"cannot read manifest {path}: {err.strerror}") from None
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: not a JSON line: {err}") from None
            if not isinstance(record, dict) or not set(needs) <= set(record):
                keys = " and ".join(f'"{key}"' for key in needs)
                raise UserError(f"{path}:{number}: a manifest line needs {keys} "
                                f"(write manifests with the `manifest` command)")
            records.append(record)
    if not records:
        raise UserError(f"manifest {path} lists no audio files")
    return records


def scan(roots, min_seconds: float = 0.2) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Audio below `roots` -> (manifest records, [(path, reason skipped)]). A folder with
    no usable audio at all is a UserError that says what was found."""
    paths = find_audio(roots)
    where = ", ".join(map(str, roots))
    if not paths:
        raise UserError(f"no audio files ({' '.join(AUDIO_EXTENSIONS)}) under {where}")
    records, skipped = [], []
    for path in tqdm(paths, desc="scanning", unit="file", disable=not sys.stderr.isatty()):
        record, reason = describe(path, min_seconds)
        if record is None:
            skipped.append((path, reason))
        else:
            records.append(record)
    if not records:
        reasons = "; ".join(f"{n} {r}" for r, n in skip_reasons(skipped).most_common())
        raise UserError(f"none of the {len(paths)} audio files under {where} is usable ({reasons}), "
                        f"e.g. {skipped[0][0]}: {skipped[0][1]}")
    return records, skipped


def skip_reasons(skipped) -> collections.Counter:
    return collections.Counter(reason.split(":")[0] for _, reason in skipped)


def save_manifest(output, records: list[dict], skipped) -> list[str]:
    """Writes the manifest (and `<output>.skipped.txt` when files were skipped), each
    atomically; returns the report lines (files, hours, skipped by reason)."""
    output = Path(output)
    files.write_text(output, "".join(json.dumps(record) + "\n" for record in records))
    hours = sum(r["duration"] for r in records) / 3600
    lines = [f"{output}: {len(records)} files, {hours:.2f} h of audio; skipped {len(skipped)}"]
    if skipped:
        lines += [f"  skipped {count}: {reason}" for reason, count in skip_reasons(skipped).most_common()]
        skipped_path = output.with_name(output.name + ".skipped.txt")
        files.write_text(skipped_path, "".join(f"{p}\t{r}\n" for p, r in skipped))
        lines.append(f"  list of skipped files: {skipped_path}")
    return lines


def write_shards(records: list[dict], out_dir, per_shard: int = 1000) -> list[Path]:
    """Packs files into out_dir/shard-000000.tar ...: `<key>.<ext>` + `<key>.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(records), per_shard):
        path = out_dir / f"shard-{start // per_shard:06d}.tar"
        with files.atomic_open(path) as f, tarfile.open(fileobj=f, mode="w") as tar:
            for i, record in enumerate(records[start:start + per_shard], start):
                key = f"{i:09d}"
                source = Path(record["path"])
                tar.add(source, arcname=f"{key}{source.suffix.lower()}")
                meta = json.dumps({**record, "path": source.name}).encode()
                info = tarfile.TarInfo(f"{key}.json")
                info.size = len(meta)
                tar.addfile(info, io.BytesIO(meta))
        paths.append(path)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", help="audio folders (searched recursively) or files")
    parser.add_argument("-o", "--output", required=True, help="manifest file to write (.jsonl)")
    parser.add_argument("--min-seconds", type=float, default=0.2,
                        help="skip files shorter than this (the mel frontend needs 27 ms)")
    parser.add_argument("--shards", default=None,
                        help="also pack the files into tar shards (webdataset layout) here")
    parser.add_argument("--per-shard", type=int, default=1000, help="files per tar shard")


def run(args: argparse.Namespace) -> int:
    if not args.output.endswith((".jsonl", ".json")):
        raise UserError(f"--output must end in .jsonl (training tells a manifest from a folder "
                        f"by that), got {args.output}")
    records, skipped = scan(args.folders, args.min_seconds)
    for line in save_manifest(args.output, records, skipped):
        print(line)
    if args.shards:
        shards = write_shards(records, args.shards, args.per_shard)
        print(f"wrote {len(shards)} tar shards to {args.shards}")
    return 0
