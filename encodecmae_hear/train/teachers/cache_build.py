"""`cache-teachers`: each teacher's frame features of every file of a corpus, computed
once and stored for training (`pretrain --teacher-cache`; the layout and the frame rule
are in cache.py).

    python -m encodecmae_hear cache-teachers --data corpus/packed --teachers crepe,resemblyzer,vad \
        --out corpus/teacher_cache

Each file is decoded whole, as the loader decodes it (mono, 24 kHz), and each teacher
runs once over all of it: CREPE's windows go through its network a thousand at a time,
so its memory is bounded whatever the file's length; GE2E and Silero VAD carry a state
through the file, and their memory grows with the file's length (a few tens of MB per
minute of audio). Re-running with the same --out skips the finished pieces; adding a
teacher to an existing cache computes only that teacher.
"""
from __future__ import annotations

import argparse
import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from encodecmae_hear import files
from encodecmae_hear.audio import load_audio
from encodecmae_hear.errors import UserError, one_line
from encodecmae_hear.model.config import FRONTENDS, SAMPLE_RATE
from encodecmae_hear.train.data import ShardSource, audio_member, data_kind, shard_groups, shard_key
from encodecmae_hear.train.manifest import read_manifest, scan
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.teachers import TEACHERS, load_teacher, parse_teachers
from encodecmae_hear.train.teachers.cache import (
    DTYPE,
    FORMAT,
    HEADER,
    check_same_weights,
    frame_rule,
    piece_files,
    read_header,
    read_index,
    write_piece,
)


@dataclass
class Piece:
    """Consecutive files of one tar shard (`members` of `shard`) or of a manifest (paths)."""

    name: str
    keys: list[str]
    shard: Path | None = None
    members: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="the corpus as `pretrain --data` takes it: tar shards (a folder of .tar "
                             "files or a glob pattern), a manifest .jsonl, or a folder of audio files")
    parser.add_argument("--teachers", required=True,
                        help=f"comma-separated from {','.join(TEACHERS)}")
    parser.add_argument("--out", required=True,
                        help="cache folder (cache.json, <teacher>/<piece>.npy and .json); "
                             "re-running with it skips finished pieces")
    parser.add_argument("--frontend", choices=FRONTENDS, default="mel256",
                        help="whose frame grid the features are on (the model's frontend)")
    parser.add_argument("--files-per-piece", type=int, default=100,
                        help="files per stored piece: the unit of resuming")


def corpus_pieces(data, per_piece: int) -> tuple[list[Piece], dict]:
    """The corpus's files in pieces, and the record of the data the header keeps."""
    kind = data_kind(data)
    record = {"given": str(data), "kind": kind}
    if kind != "shards":
        records = read_manifest(data) if kind == "manifest" else scan([data])[0]
        keys = [r["path"] for r in records]
        record["files"] = len(keys)
        return [Piece(f"files.{i // per_piece:06d}", keys[i: i + per_piece])
                for i in range(0, len(keys), per_piece)], record
    pieces, record["shards"] = [], {}
    for shard in ShardSource(data).shards:
        record["shards"][shard.name] = shard.stat().st_size
        try:
            with tarfile.open(shard) as tar:
                groups = shard_groups(tar)
        except (tarfile.TarError, OSError) as err:
            tqdm.write(f"warning: skipped unreadable shard {shard} ({one_line(err, 120)})")
            continue
        members = [m for m in (audio_member(groups[stem]) for stem in sorted(groups)) if m is not None]
        for i in range(0, len(members), per_piece):
            part = members[i: i + per_piece]
            pieces.append(Piece(f"{shard.stem}.{i // per_piece:04d}", [shard_key(shard, m) for m in part],
                                shard, tuple(m.name for m in part)))
    return pieces, record


def open_header(folder: Path, frontend: str, data: dict, records: dict[str, dict]) -> dict:
    """The header, new or the existing one checked against this run; the teachers of this
    run are marked unfinished until every piece of theirs is written. Tar shards must be
    the same (names and sizes), as their keys do not change with their content; a
    manifest may have changed (its pieces are checked file by file)."""
    if (folder / HEADER).is_file():
        header = read_header(folder)
        old = header["data"]
        if (header["frontend"], old["kind"], old.get("shards")) != (frontend, data["kind"], data.get("shards")):
            raise UserError(f"{folder} holds a cache of {old['given']} ({old['kind']}) on the "
                            f"{header['frontend']} frames; this run's --data {data['given']} "
                            f"({data['kind']}, --frontend {frontend}) is other data or another "
                            f"frontend: choose another --out")
        header["data"] = data
        for name, record in records.items():
            if name in header["teachers"]:
                check_same_weights(header["teachers"][name], record, folder)
    else:
        header = {"format": FORMAT, "frontend": frontend, "frame_rule": frame_rule(frontend),
                  "dtype": DTYPE, "sample_rate": SAMPLE_RATE, "data": data, "created": base_record(),
                  "teachers": {}}
    for name, record in records.items():
        header["teachers"][name] = {**header["teachers"].get(name, {}), **record, "complete": False}
    files.write_json(folder / HEADER, header, indent=1)
    return header


def decode(file) -> torch.Tensor | Exception:
    """(N,) mono at 24 kHz, or the error that stopped decoding (the loader skips the file too)."""
    try:
        return load_audio(file, SAMPLE_RATE)
    except Exception as err:  # any decoder error
        return err


def decoded(piece: Piece):
    """Yields (key, wav (N,) at 24 kHz or the decoding error) for the files of a piece."""
    if piece.shard is None:
        for key in piece.keys:
            yield key, decode(key)
        return
    with tarfile.open(piece.shard) as tar:
        for key, member in zip(piece.keys, piece.members):
            yield key, decode(io.BytesIO(tar.extractfile(member).read()))


@torch.no_grad()
def cache_piece(folder: Path, piece: Piece, teachers: dict, bar) -> float:
    """Computes and writes the piece for each teacher in `teachers`. -> seconds of audio."""
    features = {name: {} for name in teachers}
    samples = {}
    for key, wav in decoded(piece):
        if isinstance(wav, Exception):
            tqdm.write(f"warning: skipped unreadable audio: {key} ({one_line(wav, 120)})")
        else:
            samples[key] = wav.shape[0]
            for name, teacher in teachers.items():
                features[name][key] = teacher.frame_features(wav[None])[0].numpy().astype(DTYPE)  # (T, D)
        bar.update(1)
    for name in teachers:
        write_piece(folder, name, piece.name, piece.keys, features[name], samples)
    return sum(samples.values()) / SAMPLE_RATE


def teacher_counts(folder: Path, name: str, pieces: list[Piece]) -> dict:
    """Counts over every piece of a teacher, and whether they are all finished."""
    counts = {"files": 0, "failed": 0, "frames": 0, "seconds": 0.0, "bytes": 0, "complete": True}
    for piece in pieces:
        index = read_index(folder, name, piece.name)
        if index is None or index["keys"] != piece.keys:
            counts["complete"] = False
            continue
        counts["files"] += len(index["files"])
        counts["failed"] += len(index["failed"])
        counts["frames"] += sum(frames for _, frames, _ in index["files"].values())
        counts["seconds"] += sum(n for _, _, n in index["files"].values()) / SAMPLE_RATE
        counts["bytes"] += sum(p.stat().st_size for p in piece_files(folder, name, piece.name))
    counts["seconds"] = round(counts["seconds"], 3)
    return counts


def run(args: argparse.Namespace) -> int:
    names = parse_teachers(args.teachers)
    if not names:
        raise UserError("--teachers names no teacher: give e.g. --teachers crepe,resemblyzer,vad")
    if args.files_per_piece < 1:
        raise UserError(f"--files-per-piece must be at least 1, got {args.files_per_piece}")
    began = time.perf_counter()
    folder = Path(args.out)
    pieces, data = corpus_pieces(args.data, args.files_per_piece)
    teachers = {name: load_teacher(name, args.frontend) for name in names}
    header = open_header(folder, args.frontend, data, {n: t.provenance() for n, t in teachers.items()})
    todo = []  # (piece, names of the teachers it still lacks)
    for piece in pieces:
        missing = [n for n in names if (read_index(folder, n, piece.name) or {}).get("keys") != piece.keys]
        if missing:
            todo.append((piece, missing))
    skipped = len(pieces) - len(todo)
    print(f"{sum(len(p.keys) for p in pieces)} files in {len(pieces)} pieces, {skipped} already "
          f"cached for {','.join(names)}")
    bar = tqdm(total=sum(len(p.keys) for p, _ in todo), unit="file", desc="teacher features",
               dynamic_ncols=True, mininterval=2.0)
    audio_seconds = 0.0
    for piece, missing in todo:
        audio_seconds += cache_piece(folder, piece, {n: teachers[n] for n in missing}, bar)
        bar.set_postfix(audio_h=f"{audio_seconds / 3600:.3f}")
    bar.close()
    for name in names:
        header["teachers"][name].update(teacher_counts(folder, name, pieces))
    files.write_json(folder / HEADER, header, indent=1)
    print(summary(header, names, folder, time.perf_counter() - began, audio_seconds / 3600, skipped))
    return 0


def summary(header: dict, names: list[str], folder: Path, seconds: float, hours_now: float,
            skipped: int) -> str:
    first = header["teachers"][names[0]]
    hours = first["seconds"] / 3600
    lines = [(f"teacher cache {folder}: {first['files']} files ({hours:.3f} h of audio; "
              f"{first['failed']} did not decode); this run computed {hours_now:.3f} h in "
              f"{seconds:.0f} s, {skipped} pieces were already there")]
    for name in names:
        t = header["teachers"][name]
        per_hour = t["bytes"] / max(hours, 1e-9) / 1e6
        state = "complete" if t["complete"] else "UNFINISHED (run again)"
        lines.append(f"  {name}: {t['frames']} frames x {t['dim']} {DTYPE}, {t['bytes'] / 1e6:.1f} MB "
                     f"({per_hour:.0f} MB per hour of audio), {state}")
    total = sum(header["teachers"][n]["bytes"] for n in names)
    lines.append(f"  in all: {total / 1e6:.1f} MB")
    return "\n".join(lines)

