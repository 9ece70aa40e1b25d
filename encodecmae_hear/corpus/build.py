"""`corpus`: build the offline pretraining corpus from Debian packages (see sources.py).

    python -m encodecmae_hear corpus --out /work/corpus [--pack]

Steps, each resumable (finished outputs are skipped, every file is written to a
temporary name and renamed): fetch packages (`apt-get download`, `dpkg -x` into
OUT/cache), synthesise speech (espeak-ng) and render music (fluidsynth), convert every
file to mono 24 kHz Ogg Opus under OUT/audio/<role>/<source>/, then write
OUT/manifest.jsonl (paths relative to OUT), OUT/pretrain.jsonl and OUT/valid.jsonl
(absolute paths, for `pretrain --data`), and the source record (CORPUS.md).
`--pack` also writes OUT/packed/shard-*.tar: the train split re-encoded at a low Opus
bitrate, in the tar-shard layout of `manifest --shards`. Inputs are sorted and all
randomness is seeded, so two builds give the same file list and the same splits.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from encodecmae_hear.corpus import midi
from encodecmae_hear.corpus import sources as cs
from encodecmae_hear.corpus.opus import read_audio, to_mono_24k, write_opus
from encodecmae_hear.corpus.pack import pack
from encodecmae_hear.corpus.parallel import default_jobs, map_in_order
from encodecmae_hear.corpus.record import write_manifests, write_record
from encodecmae_hear.model.config import SAMPLE_RATE
from encodecmae_hear.errors import one_line

MIN_SECONDS = 0.3
VALID_FRACTION = 0.02


@dataclass
class Item:
    out: str                 # output path relative to the corpus root
    source: str              # source name in the record (package or synthesiser)
    category: str
    role: str                # "pretrain" or "heldout"
    make: Callable[[], tuple[np.ndarray, int]]  # -> (audio (n,) or (n, c), sample rate)


def run_quiet(cmd, cwd=None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return done.stdout


def fetch_package(package: str, cache: Path) -> Path:
    """`apt-get download` + `dpkg -x` into cache/pkgs/<package> (once) -> that folder."""
    root = cache / "pkgs" / package
    if (root / ".done").exists():
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        run_quiet(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    tmp = root.with_name(package + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    run_quiet(["dpkg-deb", "-x", str(found[-1]), str(tmp)])
    version = run_quiet(["dpkg-deb", "-f", str(found[-1]), "Version"]).strip()
    (tmp / ".done").write_text(version + "\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def package_record(package: str, root: Path | None) -> dict:
    """Version and licence of a package, from its extracted tree or the installed copy."""
    if root is not None and (root / ".done").exists():
        version = (root / ".done").read_text().strip()
        docs = [root / "usr/share/doc" / package / "copyright",
                *sorted(root.glob("usr/share/doc/*/copyright"))]
    else:
        version = run_quiet(["dpkg-query", "-W", "-f", "${Version}", package]).strip()
        docs = [Path("/usr/share/doc") / package / "copyright"]
    copyright_file = next((p for p in docs if p.is_file()), None)
    licence = cs.licence_of(copyright_file.read_text(errors="ignore")) if copyright_file else \
        "unknown (no copyright file in the package)"
    return {"package": package, "version": version, "licence": licence}


def package_audio(root: Path) -> list[tuple[str, Path]]:
    """Audio files of an extracted package, sorted; .pk3 (zip) members are unpacked."""
    found = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        for name in sorted(names):
            path = Path(dirpath, name)
            if path.is_symlink():  # an alias of a file already listed
                continue
            rel = path.relative_to(root).as_posix()
            if name.lower().endswith(cs.AUDIO_SUFFIXES) and not rel.startswith("_pk3/"):
                found.append((rel, path))
            elif name.lower().endswith(".pk3"):
                out = root / "_pk3" / name
                with zipfile.ZipFile(path) as archive:
                    for member in sorted(archive.namelist()):
                        if member.lower().endswith(cs.AUDIO_SUFFIXES):
                            target = out / member
                            if not target.exists():
                                target.parent.mkdir(parents=True, exist_ok=True)
                                target.write_bytes(archive.read(member))
                            found.append((f"{rel}/{member}", target))
    return found


def split_of(item: Item) -> str:
    if item.role == "heldout":
        return "heldout"
    h = int(hashlib.sha1(item.out.encode()).hexdigest()[:8], 16) / 16**8
    return "valid" if h < VALID_FRACTION else "train"


def safe_name(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0]
    return "".join(c if c.isalnum() or c in "-_/." else "_" for c in stem) + ".ogg"


def package_items(cache: Path, sources, log=print) -> tuple[list[Item], list[dict]]:
    items, records = [], []
    for src in sources:
        root = fetch_package(src.package, cache)
        record = {**package_record(src.package, root), "role": src.role, "kind": "package"}
        records.append(record)
        for rel, path in package_audio(root):
            category = src.category_of("/" + rel)
            if category is not None:
                items.append(Item(f"audio/{src.role}/{src.package}/{safe_name(rel)}", src.package,
                                  category, src.role, lambda p=path: read_audio(p)))
        log(f"  {src.package} {record['version']}: {sum(i.source == src.package for i in items)} files")
    return items, records


def synth_items(cache: Path, n_speech: int, n_music: int, music_seconds: float):
    """espeak-ng speech and fluidsynth music (both seeded) -> (items, records)."""
    items, records = [], []
    if n_speech:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise FileNotFoundError("espeak-ng not found: apt-get install espeak-ng (or --speech 0)")

        def speak(job):
            with tempfile.TemporaryDirectory() as tmp:
                wav = os.path.join(tmp, "speech.wav")
                run_quiet([exe, "-v", job.voice, "-s", str(job.rate), "-p", str(job.pitch),
                           "-w", wav, job.text])
                return read_audio(wav)
        for job in cs.speech_jobs(n_speech):
            items.append(Item(f"audio/pretrain/espeak-ng/{job.name}.ogg", "espeak-ng", "speech",
                              "pretrain", lambda j=job: speak(j)))
        records += [{**package_record(p, None), "role": "pretrain", "kind": "synthesis"}
                    for p in ("espeak-ng", cs.ESPEAK_DATA_PACKAGE, "base-files")]
    if n_music:
        package, rel = cs.SOUNDFONTS["pretrain"]
        root = fetch_package(package, cache)
        for seed in range(n_music):
            items.append(Item(f"audio/pretrain/fluidsynth/piece-{seed:05d}.ogg", "fluidsynth",
                              "music", "pretrain", lambda s=seed: (midi.render(
                                  *midi.procedural_piece(s, music_seconds), root / rel), SAMPLE_RATE)))
        records += [{**package_record(package, root), "role": "pretrain", "kind": "soundfont"},
                    {**package_record("fluidsynth", None), "role": "pretrain", "kind": "synthesis"}]
    return items, records


def convert_one(item: Item, out: Path) -> str:
    """Writes item's Opus file unless it is there -> "ok", "skipped" or the failure."""
    path = out / item.out
    skip_mark = path.with_name(path.name + ".skip")
    if skip_mark.exists():
        return "skipped"
    if path.exists():
        return "ok"
    try:
        audio = to_mono_24k(*item.make())
    except Exception as err:  # a bad input file is never fatal
        return f"failed {item.out}: {one_line(err, 120)}"
    if len(audio) < MIN_SECONDS * SAMPLE_RATE or not np.any(audio):
        skip_mark.parent.mkdir(parents=True, exist_ok=True)
        skip_mark.write_text("too short or silent\n")
        return "skipped"
    write_opus(path, audio)
    return "ok"


def convert_all(items: list[Item], out: Path, log=print, jobs: int = 1) -> list[dict]:
    """Converts what is not there yet (in `jobs` processes) -> manifest records (sorted by path)."""
    rows, failed, t0 = [], 0, time.time()
    ordered = sorted(items, key=lambda i: i.out)
    results = map_in_order(functools.partial(convert_one, out=out), ordered, jobs)
    for n, (item, status) in enumerate(zip(ordered, results), 1):
        if status.startswith("failed"):
            failed += 1
            log(f"  {status}")
        elif status == "ok":
            frames = sf.info(str(out / item.out)).frames
            rows.append({"path": item.out, "duration": round(frames / SAMPLE_RATE, 4),
                         "sample_rate": SAMPLE_RATE, "channels": 1, "frames": frames,
                         "source": item.source, "category": item.category, "split": split_of(item)})
        if n % 500 == 0:
            log(f"  {n}/{len(items)} files, {time.time() - t0:.0f} s")
    log(f"converted {len(rows)} files ({failed} failed) in {time.time() - t0:.0f} s")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="corpus folder (cache, audio, manifests)")
    parser.add_argument("--speech", type=int, default=240, help="espeak-ng utterances (~25 s each)")
    parser.add_argument("--music", type=int, default=80, help="rendered MIDI pieces")
    parser.add_argument("--music-seconds", type=float, default=60.0, help="length of a piece")
    parser.add_argument("--only", nargs="*", default=None, help="only these packages (for trials)")
    parser.add_argument("--record", default="checkpoints/CORPUS.md", help="source record to write")
    parser.add_argument("--pack", action="store_true", help="also write low-bitrate tar shards")
    parser.add_argument("--pack-level", type=float, default=0.96,
                        help="Opus compression level of the packed copy (1 = smallest)")
    parser.add_argument("--pack-hours", type=float, default=6.0,
                        help="hours of the train split in the packed copy (≈59 MiB at the default level)")
    parser.add_argument("--shards", type=int, default=4, help="number of tar shards")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="processes converting files (default: one per CPU core)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    out, t0 = Path(args.out).resolve(), time.time()
    cache = out / "cache"
    sources = [s for s in cs.PACKAGE_SOURCES if args.only is None or s.package in args.only]
    print(f"fetching {len(sources)} packages into {cache}", file=sys.stderr)
    items, records = package_items(cache, sources, log=lambda m: print(m, file=sys.stderr))
    synth, synth_records = synth_items(cache, args.speech, args.music, args.music_seconds)
    fetch_package(cs.SOUNDFONTS["heldout"][0], cache)  # for heldout-tasks
    rows = convert_all(items + synth, out, log=lambda m: print(m, file=sys.stderr), jobs=args.jobs)
    write_manifests(rows, out)
    wall = time.time() - t0
    write_record(rows, records + synth_records, out, Path(args.record), wall)
    if args.pack:
        pack(rows, out, args.pack_level, args.shards, args.pack_hours, jobs=args.jobs)
    print(f"corpus at {out}: {len(rows)} files, {sum(r['duration'] for r in rows) / 3600:.2f} h,"
          f" {wall / 60:.1f} min")
    return 0
