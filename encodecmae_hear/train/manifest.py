"""`manifest`: scan audio folders into a JSONL manifest (one file per line).

    python -m encodecmae_hear manifest /data/audioset /data/fma -o corpus.jsonl

Each line is {"path", "duration", "sample_rate", "channels", "frames"}. Files that
soundfile cannot open, empty files and files shorter than --min-seconds are skipped,
counted by reason and listed in `<output>.skipped.txt`; a bad file is never fatal.
`--shards DIR` also packs the listed files into tar shards in the webdataset layout
(`<key>.<ext>` audio plus `<key>.json` metadata), the second data source of training.
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

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


def find_audio(roots) -> list[Path]:
    files = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"audio folder not found: {root}")
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


def read_manifest(path) -> list[dict]:
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not a JSON line: {err}") from None
    if not records:
        raise ValueError(f"manifest {path} lists no audio files")
    return records


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
    files = find_audio(args.folders)
    records, skipped = [], []
    for path in tqdm(files, desc="scanning", unit="file", disable=not sys.stderr.isatty()):
        record, reason = describe(path, args.min_seconds)
        if record is None:
            skipped.append((path, reason))
        else:
            records.append(record)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, output)
    hours = sum(r["duration"] for r in records) / 3600
    print(f"{output}: {len(records)} files, {hours:.2f} h of audio; skipped {len(skipped)}")
    if skipped:
        reasons = collections.Counter(reason.split(":")[0] for _, reason in skipped)
        for reason, count in reasons.most_common():
            print(f"  skipped {count}: {reason}")
        skipped_path = output.with_name(output.name + ".skipped.txt")
        skipped_path.write_text("".join(f"{p}\t{r}\n" for p, r in skipped))
        print(f"  list of skipped files: {skipped_path}")
    if args.shards and records:
        shards = write_shards(records, args.shards, args.per_shard)
        print(f"wrote {len(shards)} tar shards to {args.shards}")
    return 0 if records else 1
