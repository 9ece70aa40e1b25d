"""`synth-tasks`: a small HEAR suite generated from scratch, for CI and smoke runs.

* synthetic_scene_kfold (scene, 3 pre-split folds, top-1 accuracy): harmonic tones,
  rising and falling chirps, and amplitude-modulated noise, each with random pitch,
  rate, level and background noise. Chance is 25 %.
* synthetic_onsets (event, train/valid/test, onset F-measure with a 200 ms collar):
  "beep" and "thump" events at random, non-overlapping times in 4 s of noise.

Both carry a small `task_specific_param_grid`, so heareval's downstream search stays
within minutes on a CPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from encodecmae_hear.evaluate.task_io import write_task

SR = 48000
SCENE_CLASSES = ("harmonic", "chirp_up", "chirp_down", "am_noise")
FOLDS = ("fold00", "fold01", "fold02")
FAST_GRID = {"hidden_layers": [1], "hidden_dim": [256], "lr": [1e-3], "patience": [10],
             "max_epochs": [40], "check_val_every_n_epoch": [3]}


def _tone(rng, seconds: float, f_start: float, f_end: float, harmonics: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    freq = np.linspace(f_start, f_end, t.size)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    wave = sum(np.sin(k * phase + rng.uniform(0, 6.28)) / k for k in range(1, harmonics + 1))
    return wave / np.abs(wave).max()


def scene_clip(rng, label: str, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    if label == "harmonic":
        f0 = rng.uniform(150, 600)
        sound = _tone(rng, seconds, f0, f0 * rng.uniform(0.98, 1.02), int(rng.integers(2, 6)))
    elif label in ("chirp_up", "chirp_down"):
        low, high = rng.uniform(200, 500), rng.uniform(1200, 3000)
        start, end = (low, high) if label == "chirp_up" else (high, low)
        sound = _tone(rng, seconds, start, end, int(rng.integers(1, 3)))
    else:
        t = np.arange(n) / SR
        sound = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 12) * t))
        sound /= np.abs(sound).max()
    background = rng.standard_normal(n) * rng.uniform(0.02, 0.15)
    return (rng.uniform(0.2, 0.6) * sound + background).astype(np.float32)


def _grid(epochs: int, check_every: int) -> dict:
    return {**FAST_GRID, "max_epochs": [epochs], "check_val_every_n_epoch": [check_every]}


def scene_task(out: Path, per_class_per_fold: int, seed: int, epochs: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    clips = []
    for fold in FOLDS:
        for label in SCENE_CLASSES:
            for k in range(per_class_per_fold):
                clips.append({"name": f"{fold}-{label}-{k:03d}", "label": label, "split": fold,
                              "audio": scene_clip(rng, label, 1.5)})
    return write_task(out, "synthetic_scene_kfold", clips, 1.5, SR, splits=FOLDS,
                      split_mode="presplit_kfold",
                      evaluation_params={"task_specific_param_grid": _grid(epochs, 3)})


def event_sound(rng, label: str) -> tuple[np.ndarray, float]:
    if label == "beep":
        seconds = rng.uniform(0.15, 0.4)
        t = np.arange(int(seconds * SR)) / SR
        sound = np.sin(2 * np.pi * rng.uniform(800, 2000) * t) * np.hanning(t.size)
    else:  # thump: a decaying low tone with a noisy attack
        seconds = rng.uniform(0.1, 0.3)
        t = np.arange(int(seconds * SR)) / SR
        sound = (np.sin(2 * np.pi * rng.uniform(60, 150) * t) + 0.3 * rng.standard_normal(t.size)) \
            * np.exp(-t / (seconds / 4))
    return (rng.uniform(0.3, 0.8) * sound).astype(np.float32), seconds


def event_task(out: Path, n_clips: int, seed: int, seconds: float = 4.0,
               epochs: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    clips = []
    for k in range(n_clips):
        audio = (rng.standard_normal(int(seconds * SR)) * rng.uniform(0.01, 0.05)).astype(np.float32)
        events, cursor = [], rng.uniform(0.1, 0.5)
        while cursor < seconds - 0.5 and len(events) < 4:
            label = ("beep", "thump")[int(rng.integers(2))]
            sound, length = event_sound(rng, label)
            start = int(cursor * SR)
            audio[start:start + sound.size] += sound[: audio.size - start]
            events.append({"label": label, "start": round(cursor * 1000, 1),
                           "end": round((cursor + length) * 1000, 1)})
            cursor += length + rng.uniform(0.3, 1.0)
        split = ("train", "train", "train", "valid", "test")[k % 5]
        clips.append({"name": f"onsets-{k:04d}", "events": events, "split": split, "audio": audio})
    params = {"event_postprocessing_grid": {"median_filter_ms": [150], "min_duration": [60]},
              "task_specific_param_grid": _grid(epochs, 10)}
    return write_task(out, "synthetic_onsets", clips, seconds, SR, event=True,
                      evaluation_params=params)


def build(out: Path, scale: float = 1.0, seed: int = 0, epochs: int = 40) -> list[Path]:
    """Both tasks; `scale` multiplies the clip counts, `epochs` caps downstream training."""
    out.mkdir(parents=True, exist_ok=True)
    return [scene_task(out, max(3, int(8 * scale)), seed, epochs),
            event_task(out, max(15, int(40 * scale)), seed + 1, epochs=epochs)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write the task folders into")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the clip counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40,
                        help="max_epochs of heareval's downstream training on these tasks")


def run(args: argparse.Namespace) -> int:
    for task in build(Path(args.out), args.scale, args.seed, args.epochs):
        print(f"wrote {task}")
    return 0
