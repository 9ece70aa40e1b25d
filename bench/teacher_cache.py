"""Teacher cache benchmark (not a test): what `cache-teachers` costs and what it saves.

    python bench/teacher_cache.py                   # crepe,resemblyzer,vad on one thread
    python bench/teacher_cache.py --files 16 --seconds 10

On generated audio (voiced buzzes at changing pitches with noise gaps, 24 kHz): the time
and size of the cache per hour of audio per teacher; the time to get a batch's teacher
features (batch of 16 crops of 4 s) computed on the fly and read from the cache, best of
--repeats, and how alike the two are (mean cosine per frame); and the peak memory of one teacher run over a whole file of --long-seconds
(Linux: read from /proc/self/status).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from encodecmae_hear.cli import main  # noqa: E402
from encodecmae_hear.model.config import SAMPLE_RATE  # noqa: E402
from encodecmae_hear.train.data import ManifestSource, make_loader  # noqa: E402
from encodecmae_hear.train.teachers import load_teacher, parse_teachers  # noqa: E402
from encodecmae_hear.train.teachers.cache import TeacherCache  # noqa: E402


def voice(seconds: float, seed: int) -> np.ndarray:
    """Buzzes of random pitch (80-400 Hz) and length, separated by quiet noise."""
    rng = np.random.default_rng(seed)
    out, n = [], int(seconds * SAMPLE_RATE)
    while sum(map(len, out)) < n:
        length = int(rng.uniform(0.3, 1.5) * SAMPLE_RATE)
        t = np.arange(length) / SAMPLE_RATE
        f0 = rng.uniform(80, 400) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
        phase = np.cumsum(2 * np.pi * f0 / SAMPLE_RATE)
        out.append(0.3 * sum(np.sin(k * phase) / k for k in range(1, 12)) * np.hanning(length))
        out.append(0.003 * rng.standard_normal(int(rng.uniform(0.1, 0.6) * SAMPLE_RATE)))
    return np.concatenate(out)[:n].astype(np.float32)


def write_corpus(folder: Path, files: int, seconds: float) -> Path:
    manifest = folder / "m.jsonl"
    with open(manifest, "w") as f:
        for i in range(files):
            path = folder / f"{i:03d}.wav"
            sf.write(path, voice(seconds, i), SAMPLE_RATE)
            f.write(json.dumps({"path": str(path), "duration": seconds}) + "\n")
    return manifest


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(name: str, seconds: float) -> None:
    """Prints the peak RSS growth (MB) of one teacher over a whole file of `seconds`: the
    high-water mark is reset (clear_refs 5) after the file is in memory."""
    teacher = load_teacher(name)
    wav = torch.from_numpy(voice(seconds, 0))[None]
    teacher.frame_features(wav[:, :SAMPLE_RATE])  # warm up: kernels, resamplers
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kb("VmRSS")
    teacher.frame_features(wav)
    print((status_kb("VmHWM") - before) / 1024)


def main_bench(args) -> None:
    torch.set_num_threads(args.threads)
    names = parse_teachers(args.teachers)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = write_corpus(folder, args.files, args.seconds)
        hours = args.files * args.seconds / 3600
        start = time.perf_counter()
        main(["cache-teachers", "--data", str(manifest), "--teachers", args.teachers,
              "--out", str(folder / "cache")])
        build = time.perf_counter() - start
        header = json.loads((folder / "cache" / "cache.json").read_text())
        print(f"\nbuilding: {build:.1f} s for {hours * 3600:.0f} s of audio "
              f"({build / hours / 3600:.3f} s per s of audio, all teachers, {args.threads} thread)")
        for name in names:
            t = header["teachers"][name]
            print(f"  {name}: {t['bytes'] / hours / 1e6:.1f} MB per hour of audio")

        source = ManifestSource(manifest, seed=0, crop_seconds=4.0)
        batch = next(iter(make_loader(source, args.batch, 0, 1, 0, 0, num_workers=0)))
        wav, lengths = batch["wav"], batch["lengths"]
        cache = TeacherCache(folder / "cache", "mel256")
        print(f"\nteacher features of a batch of {wav.shape[0]} crops of 4 s, best of {args.repeats}, "
              f"{args.threads} thread:")
        total = {"fly": 0.0, "cache": 0.0}
        for name in names:
            teacher = load_teacher(name)
            cached = cache.teacher(name, teacher.provenance())
            fly = best_of(args.repeats, lambda t=teacher: t.frame_features(wav, lengths))
            read = best_of(args.repeats, lambda c=cached: c.last_layer_features(wav, lengths, batch))
            total["fly"] += fly
            total["cache"] += read
            cos = torch.nn.functional.cosine_similarity(teacher.frame_features(wav, lengths),
                                                        cached.last_layer_features(wav, lengths, batch)[0], dim=-1)
            half = cos.shape[1] // 2  # (B, T): all crops are whole 4 s here
            print(f"  {name}: on the fly {fly * 1000:.0f} ms, from the cache {read * 1000:.1f} ms; "
                  f"cosine of the two {cos.mean():.3f} (first 2 s {cos[:, :half].mean():.3f}, "
                  f"last 2 s {cos[:, half:].mean():.3f})")
        print(f"  all: on the fly {total['fly']:.2f} s, from the cache {total['cache'] * 1000:.1f} ms "
              f"({total['fly'] / total['cache']:.0f}x)")

    print(f"\npeak memory growth of one teacher over a whole {args.long_seconds:.0f} s file:")
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--memory", name, str(args.long_seconds),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        print(f"  {name}: {float(out.stdout.split()[-1]):.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teachers", default="crepe,resemblyzer,vad")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--long-seconds", type=float, default=300.0)
    parser.add_argument("--memory", nargs=2, metavar=("TEACHER", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        torch.set_num_threads(args.threads)
        memory_child(args.memory[0], float(args.memory[1]))
    else:
        main_bench(args)
