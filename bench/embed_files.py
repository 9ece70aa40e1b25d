"""`embed` end to end, files on disk to .npy files on disk, per file against batched
(not a test: prints figures).

Writes folders of noise clips (16-bit WAV at 16 kHz: `--short` 1 s clips and `--long`
10 s clips), then times the command on each in fresh processes, the variants taking
turns for `--rounds` rounds; the best time of each is kept (other jobs only add time):

* per-file: `--batch 1 --workers 0`, one file per HEAR call, decoded in the process;
* batched: the defaults, `--batch 64` files per call with their windows sharing
  forwards, decoding in `--workers` processes (default: the command's own choice).

Shown: seconds (best), real-time factor (audio seconds per wall second, the model
load included) and batched over per-file.

    python bench/embed_files.py                           # bundled model, CPU
    python bench/embed_files.py --model small.pt --device cuda --short 2000 --long 300
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
VARIANTS = {"per-file": ["--batch", "1", "--workers", "0"], "batched": []}


def clips(folder: Path, seconds: float, count: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        audio = (0.1 * rng.standard_normal(int(seconds * RATE))).clip(-1, 1).astype(np.float32)
        sf.write(folder / f"{i:05d}.wav", audio, RATE, subtype="PCM_16")
    return folder


def timed(folder: Path, out: Path, extra: list[str], args) -> float:
    command = [sys.executable, "-m", "encodecmae_hear", "embed", str(folder), "--out", str(out),
               "--device", args.device, *(["--model", args.model] if args.model else []),
               *(["--dtype", args.dtype] if args.dtype else []), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"embed failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint; None: the bundled default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="None: the command's default")
    parser.add_argument("--short", type=int, default=240, metavar="N", help="1 s clips")
    parser.add_argument("--long", type=int, default=36, metavar="N", help="10 s clips")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the command")
    parser.add_argument("--workers", type=int, default=None, help="batched: --workers N")
    args = parser.parse_args()
    if args.workers is not None:
        VARIANTS["batched"] = ["--workers", str(args.workers)]
    with tempfile.TemporaryDirectory(prefix="bench-embed-files-") as tmp:
        sets = {"1 s": (clips(Path(tmp) / "short", 1.0, args.short), args.short * 1.0),
                "10 s": (clips(Path(tmp) / "long", 10.0, args.long), args.long * 10.0)}
        best = {(s, v): float("inf") for s in sets for v in VARIANTS}
        for round_ in range(args.rounds):
            for name, (folder, _) in sets.items():
                for variant, extra in VARIANTS.items():
                    out = Path(tmp) / f"out-{round_}-{name[:-2]}-{variant}"
                    best[name, variant] = min(best[name, variant], timed(folder, out, extra, args))
        print(f"| clips | files | audio s | per-file s | per-file x real time | batched s | "
              f"batched x real time | batched / per-file |")
        print("|---|---|---|---|---|---|---|---|")
        for name, (folder, audio_s) in sets.items():
            one, many = best[name, "per-file"], best[name, "batched"]
            files = args.short if name == "1 s" else args.long
            print(f"| {name} | {files} | {audio_s:g} | {one:.2f} | {audio_s / one:.1f} | {many:.2f} | "
                  f"{audio_s / many:.1f} | {one / many:.2f} |")


if __name__ == "__main__":
    main()
