"""`manifest`: scan audio folders into a JSONL manifest (one file per line).

    python -m encodecmae_hear manifest /data/audioset /data/fma -o corpus.jsonl

Each line is {"path", "duration", "sample_rate", "channels", "frames"}. Folders are
searched by the project's walker (walk.py: links followed once, FIFOs and other special
files skipped). Files that soundfile cannot open, empty files, files shorter than
--min-seconds, rates the resampler does not take and what the walker skipped are
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
import sys
import tarfile
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from encodecmae_hear import files, walk
from encodecmae_hear.audio import check_rate
from encodecmae_hear.errors import UserError, one_line
from encodecmae_hear.files import shown
from encodecmae_hear.train.raw_shards import write_raw_shards

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


def find_audio(roots, outside: bool = False) -> walk.Found:
    """Audio files below `roots` (folders or files), and what the walker skipped."""
    return walk.find(roots, AUDIO_EXTENSIONS, outside=outside)


def describe(path: Path, min_seconds: float) -> tuple[dict | None, str | None]:
    """-> (manifest record, None) or (None, reason it is skipped)."""
    try:
        with sf.SoundFile(files.regular_file(path)) as info:
            if info.frames > 0 and info.samplerate > 0 and not _ends_where_it_says(info):
                return None, (f"damaged: its header claims {info.frames / info.samplerate:.6g} s "
                              f"but the audio ends sooner")
    except OSError as err:
        return None, f"unreadable: {err.strerror or err}"
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        why = getattr(err, "error_string", None) or str(err)
        return None, f"unreadable: {one_line(why, 160)}"
    if info.frames <= 0 or info.samplerate <= 0:
        return None, "empty"
    try:
        check_rate(info.samplerate)
    except ValueError as err:
        return None, f"unsupported sample rate: {err}"
    duration = info.frames / info.samplerate
    if duration < min_seconds:
        return None, f"shorter than {min_seconds} s"
    return {"path": str(path.resolve()), "duration": round(duration, 4),
            "sample_rate": int(info.samplerate), "channels": int(info.channels),
            "frames": int(info.frames)}, None


def _ends_where_it_says(f: sf.SoundFile) -> bool:
    """Whether the last frame the header promises can be read: a damaged header that
    claims hours would otherwise weigh the file by hours in training."""
    try:
        f.seek(f.frames - 1)
        return f.read(1, dtype="float32").shape[0] == 1
    except Exception:  # libsndfile: "Internal psf_fseek() failed." and the like
        return False


def read_manifest(path, needs: tuple[str, ...] = ("path", "duration")) -> list[dict]:
    """The records of a manifest, each with the keys `needs` (training needs durations,
    embedding only paths); a missing, empty or malformed one is a UserError."""
    records = []
    try:
        f = open(path, "rb")
    except OSError as err:
        raise UserError(f"cannot read manifest {shown(path)}: {err.strerror}") from None
    with f:
        for number, line in _numbered_lines(f, path):
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
        raise UserError(f"manifest {shown(path)} lists no audio files")
    return records


def _numbered_lines(f, path):
    """(number, line) of a file opened in binary, each line decoded as UTF-8; bytes that
    are not UTF-8 are a UserError naming the line (JSON lines are UTF-8; a path that is
    not UTF-8 is written as JSON escapes, as `manifest` does)."""
    for number, raw in enumerate(f, 1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{shown(path)}:{number}: not UTF-8 text ({err.reason} at byte "
                            f"{err.start} of the line); a manifest is JSON lines in UTF-8 "
                            f"(write it with the `manifest` command)") from None


def scan(roots, min_seconds: float = 0.2, outside: bool = False) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Audio below `roots` -> (manifest records, [(path, reason skipped)]), the walker's
    skipped entries first. A folder with no usable audio at all is a UserError that says
    what was found."""
    found = find_audio(roots, outside)
    paths = found.files
    where = ", ".join(map(shown, roots))
    if not paths:
        extra = f"; {found.summary()}" if found.skipped else ""
        raise UserError(f"no audio files ({' '.join(AUDIO_EXTENSIONS)}) under {where}{extra}")
    records, skipped = [], list(found.skipped)
    for path in tqdm(paths, desc="scanning", unit="file", disable=not sys.stderr.isatty()):
        record, reason = describe(path, min_seconds)
        if record is None:
            skipped.append((path, reason))
        else:
            records.append(record)
    if not records:
        reasons = "; ".join(f"{n} {r}" for r, n in skip_reasons(skipped).most_common())
        raise UserError(f"none of the {len(paths)} audio files under {where} is usable ({reasons}), "
                        f"e.g. {shown(skipped[-1][0])}: {skipped[-1][1]}")
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
        files.write_text(skipped_path, "".join(f"{shown(p)}\t{r}\n" for p, r in skipped))
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
    parser.add_argument("--raw-shards", default=None,
                        help="also decode the files into raw shards here (mono 24 kHz int16, "
                             "memory-mapped by training: no decoding or resampling per crop; "
                             "172.8 MB per hour of audio; raw_shards.py)")
    parser.add_argument("--follow-outside", action="store_true",
                        help="follow links to folders outside the given folders (by default "
                             "they are skipped and reported)")


def run(args: argparse.Namespace) -> int:
    if not args.output.endswith((".jsonl", ".json")):
        raise UserError(f"--output must end in .jsonl (training tells a manifest from a folder "
                        f"by that), got {args.output}")
    records, skipped = scan(args.folders, args.min_seconds, outside=args.follow_outside)
    for line in save_manifest(args.output, records, skipped):
        print(line)
    if args.shards:
        shards = write_shards(records, args.shards, args.per_shard)
        print(f"wrote {len(shards)} tar shards to {args.shards}")
    if args.raw_shards:
        done = write_raw_shards(records, args.raw_shards)
        print(f"wrote {done['shards']} raw shards ({done['files']} files, {done['hours']:.2f} h, "
              f"{done['bytes'] / 2**20:.0f} MiB) to {args.raw_shards}; skipped {len(done['skipped'])}"
              + "".join(f"\n  skipped {path}: {why}" for path, why in done["skipped"]))
    return 0
