"""Generated corpora and run helpers for the data and training tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent

# (name, sample rate, seconds, channels)
CORPUS = [("a.wav", 16000, 1.5, 2), ("b.flac", 24000, 6.0, 1), ("c.ogg", 44100, 9.0, 1),
          ("d.wav", 24000, 3.0, 1), ("e.flac", 48000, 5.0, 2), ("f.wav", 22050, 4.5, 1)]


def tones(sample_rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    freqs = 150 + 2000 * rng.random(3)
    x = sum(np.sin(2 * np.pi * f * t + rng.random() * 6.28) for f in freqs) / 6
    x = x + 0.02 * rng.standard_normal(t.size)
    if channels == 2:
        x = np.stack([x, 0.5 * x], 1)
    return x.astype(np.float32)


def write_corpus(folder: Path, spec=CORPUS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, sr, seconds, channels) in enumerate(spec):
        path = folder / name
        sf.write(path, tones(sr, seconds, channels, i), sr)
        paths.append(path)
    return paths


def write_manifest(path: Path, files: list[Path]) -> Path:
    with open(path, "w") as f:
        for file in files:
            info = sf.info(str(file))
            f.write(json.dumps({"path": str(file), "duration": info.frames / info.samplerate,
                                "sample_rate": info.samplerate, "channels": info.channels,
                                "frames": info.frames}) + "\n")
    return path


def tiny_args(manifest, out, steps: int, *extra) -> list[str]:
    """A tiny pretraining run on 1 s crops, fast enough for CI on 2 cores."""
    return ["--data", str(manifest), "--out", str(out), "--preset", "tiny", "--steps", str(steps),
            "--batch-size", "4", "--micro-batch", "2", "--crop-seconds", "1", "--workers", "0",
            "--warmup-steps", "2", "--log-every", "1", "--checkpoint-every", "100",
            "--codebook-clips", "15", "--codebook-iters", "2", "--targets", "encodec-untrained",
            *map(str, extra)]


def cli(*args, **popen) -> subprocess.Popen:
    """`python -m encodecmae_hear ...` in a subprocess with one thread, so that k-means
    and matmuls reduce in the same order in every run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "encodecmae_hear", *map(str, args)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def run_cli(*args, timeout: float = 240) -> str:
    proc = cli(*args)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, like the training subprocesses (OMP_NUM_THREADS=1): two threads
    on two busy cores are several times slower than one for these sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
