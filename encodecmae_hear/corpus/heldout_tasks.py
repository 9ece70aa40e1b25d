"""`heldout-tasks`: HEAR-format tasks from corpus sources that pretraining never saw.

    python -m encodecmae_hear heldout-tasks --corpus /work/corpus --out /work/heldout_tasks

Four tasks, each balanced and seeded, audio at 48000 and 16000 Hz, clips padded or cut
to a fixed length. The three scene tasks are split into five folds, stratified by class
(split_mode "presplit_kfold"): hear-eval-kit tests on every fold in turn, so every clip is
scored once, which makes the small tasks far less noisy than a single 20 % test split.
The event task is split train/valid/test 60/20/20 ("trainvaltest").

* heldout_spoken_language (speech): which language a recorded word is spoken in
  (ktuberling-data: one or a few speakers per language, none in pretraining).
* heldout_sfx_collection (environment): which held-out game an effect comes from
  (lincity-ng, scorched3d, minetest, colobot sound effects).
* heldout_instrument_family (music): General MIDI instrument family of a short phrase
  played by the MuseScore General soundfont (pretraining used FluidR3 only).
* heldout_note_onsets (event): onsets of notes of four families in 4 s clips, same
  soundfont; scored like DCASE 2016 task 2 (onset F-measure, 200 ms collar).

Folders are written by the shared HEAR task writer (task_io.write_task).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from encodecmae_hear.corpus import midi
from encodecmae_hear.corpus.sources import SOUNDFONTS
from encodecmae_hear.errors import UserError
from encodecmae_hear.evaluate import task_io

FOLDS = tuple(f"fold{i:02d}" for i in range(5))
VERSION = "heldout-2"
SPOKEN_LANGUAGES = 8  # the proof's spoken-language task: the 8 languages with most words
ONSET_POSTPROCESSING = {"event_postprocessing_grid": {"median_filter_ms": [150], "min_duration": [60, 120]}}


def assign_folds(labels: list[str], seed: int) -> list[str]:
    """Every class dealt out over FOLDS in a seeded order; class sizes differ by at most
    one between folds, and each class starts where the previous one stopped, so the
    folds' sizes do too."""
    rng = np.random.default_rng(seed)
    out, dealt = [""] * len(labels), 0
    for label in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        for j in rng.permutation(len(idx)):
            out[idx[j]] = FOLDS[dealt % len(FOLDS)]
            dealt += 1
    return out


def write_task(out: Path, name: str, clips: list[dict], seconds: float, sr: int,
               event: bool = False, version: str = VERSION) -> Path:
    """The shared HEAR task-folder writer (task_io): scene tasks in FOLDS, the event
    task in train/valid/test."""
    layout = ({"event": True, "evaluation_params": ONSET_POSTPROCESSING} if event else
              {"splits": FOLDS, "split_mode": "presplit_kfold"})
    return task_io.write_task(out, name, clips, seconds, sr, version=version, **layout)


def corpus_clips(corpus: Path, source_label, seconds: float) -> list[dict]:
    """Held-out corpus files (sorted) -> scene clips of their first `seconds`;
    source_label(manifest row) gives the label or None to leave the file out."""
    rows = [json.loads(line) for line in open(corpus / "manifest.jsonl")]
    clips = []
    for row in sorted(rows, key=lambda r: r["path"]):
        label = source_label(row) if row["split"] == "heldout" else None
        if label is None or row["duration"] < 0.3:
            continue
        audio, sr = sf.read(str(corpus / row["path"]), dtype="float32")
        clips.append({"name": f"{label}-{Path(row['path']).stem}"[:80], "label": label,
                      "audio": audio[:int(seconds * sr)], "sr": sr})
    return clips


def language_of(row) -> str | None:
    parts = row["path"].split("/")
    if row["source"] == "ktuberling-data" and "sounds" in parts:
        return parts[parts.index("sounds") + 1]
    return None


def scene_from_corpus(corpus: Path, out: Path, name: str, labeler, n_classes: int,
                      per_class: int, seconds: float, seed: int, skip: int = 0,
                      version: str = VERSION) -> Path:
    """The n_classes labels with most files (ties by name), after leaving out the first
    `skip` of that ranking; per_class seeded files of each, in class-stratified FOLDS."""
    clips = corpus_clips(corpus, labeler, seconds)
    counts = {lab: sum(c["label"] == lab for c in clips) for lab in {c["label"] for c in clips}}
    keep = sorted(sorted(counts, key=lambda lab: (-counts[lab], lab))[skip:skip + n_classes])
    rng = np.random.default_rng(seed)
    chosen = []
    for label in keep:
        group = [c for c in clips if c["label"] == label]
        chosen += [group[i] for i in sorted(rng.permutation(len(group))[:per_class])]
    if not chosen:
        raise UserError(f"{corpus}: no held-out files for {name} in manifest.jsonl")
    for clip, fold in zip(chosen, assign_folds([c["label"] for c in chosen], seed)):
        clip["split"] = fold
    names = set()
    for i, clip in enumerate(chosen):  # unique file names
        clip["name"] = f"{i:04d}-{clip['name']}" if clip["name"] in names else clip["name"]
        names.add(clip["name"])
    sr = chosen[0]["sr"]
    return write_task(out, name, chosen, seconds, sr, version=version)


INSTRUMENT_FAMILIES = ("piano", "chromatic_percussion", "organ", "guitar", "bass", "strings",
                       "brass", "reed")
PITCH_RANGE = {"bass": (28, 55), "piano": (40, 84), "guitar": (40, 76), "strings": (45, 84),
               "brass": (45, 79), "reed": (50, 84), "organ": (40, 80), "chromatic_percussion": (55, 96)}
ONSET_FAMILIES = ("piano", "organ", "guitar", "brass")


def instrument_family_task(soundfont: Path, out: Path, per_class: int, seconds: float,
                           seed: int, sr: int = 48000) -> Path:
    """Phrases of 1-3 notes, one random GM program of the family per clip."""
    rng = np.random.default_rng(seed)
    spacing = seconds + 1.0
    clips = []
    for family in INSTRUMENT_FAMILIES:
        base = midi.GM_FAMILIES[family]
        notes, programs = [], {ch: base + ch for ch in range(8)}  # channel = program offset
        for k in range(per_class):
            ch, t = int(rng.integers(8)), k * spacing + float(rng.uniform(0.05, 0.3))
            lo, hi = PITCH_RANGE[family]
            for _ in range(int(rng.integers(1, 4))):
                dur = float(rng.uniform(0.25, 0.9))
                notes.append((t, dur, ch, int(rng.integers(lo, hi)), int(rng.integers(60, 120))))
                t += dur + float(rng.uniform(0.0, 0.15))
        audio = midi.render(notes, programs, soundfont, sr)
        step = int(spacing * sr)
        clips += [{"name": f"{family}-{k:03d}", "label": family,
                   "audio": audio[k * step:k * step + int(seconds * sr)]} for k in range(per_class)]
    for clip, fold in zip(clips, assign_folds([c["label"] for c in clips], seed)):
        clip["split"] = fold
    return write_task(out, "heldout_instrument_family", clips, seconds, sr)


def note_onset_task(soundfont: Path, out: Path, n_clips: int, seconds: float, seed: int,
                    sr: int = 48000) -> Path:
    """Clips with 3-6 notes of four families at random onsets; events in ms."""
    rng = np.random.default_rng(seed)
    spacing = seconds + 2.0
    programs = {i: midi.GM_FAMILIES[f] + (0 if f != "brass" else 1) for i, f in enumerate(ONSET_FAMILIES)}
    notes, clips = [], []
    for k in range(n_clips):
        events = []
        for _ in range(int(rng.integers(3, 7))):
            ch = int(rng.integers(len(ONSET_FAMILIES)))
            start = float(rng.uniform(0.1, seconds - 0.8))
            dur = float(rng.uniform(0.2, 0.6))
            lo, hi = PITCH_RANGE[ONSET_FAMILIES[ch]]
            notes.append((k * spacing + start, dur, ch, int(rng.integers(lo, hi)), int(rng.integers(70, 120))))
            events.append({"label": ONSET_FAMILIES[ch], "start": round(start * 1000, 1),
                           "end": round((start + dur) * 1000, 1)})
        clips.append({"name": f"notes-{k:04d}", "events": sorted(events, key=lambda e: e["start"]),
                      "split": ("train", "train", "train", "valid", "test")[k % 5]})
    audio = midi.render(notes, programs, soundfont, sr)
    step = int(spacing * sr)
    for k, clip in enumerate(clips):
        clip["audio"] = audio[k * step:k * step + int(seconds * sr)]
    return write_task(out, "heldout_note_onsets", clips, seconds, sr, event=True)


def build_all(corpus: Path, out: Path, seed: int = 0, scale: float = 1.0) -> list[Path]:
    n = lambda k: max(5, int(k * scale))  # noqa: E731
    package, rel = SOUNDFONTS["heldout"]
    soundfont = corpus / "cache" / "pkgs" / package / rel
    return [
        scene_from_corpus(corpus, out, "heldout_spoken_language", language_of, SPOKEN_LANGUAGES,
                          n(40), 2.0, seed),
        scene_from_corpus(corpus, out, "heldout_sfx_collection",
                          lambda r: r["source"].split("-")[0] if r["category"] == "environment" else None,
                          4, n(60), 2.0, seed),
        instrument_family_task(soundfont, out, n(40), 2.0, seed),
        note_onset_task(soundfont, out, n(150), 4.0, seed),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="folder built by `corpus`")
    parser.add_argument("--out", required=True, help="folder for the task folders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="scale clip counts (tests: 0.1)")


def report(tasks) -> int:
    """Prints each task folder as it is written, with the clips in each split."""
    for task in tasks:
        splits = json.loads((task / "task_metadata.json").read_text())["splits"]
        sizes = {s: len(json.loads((task / f"{s}.json").read_text())) for s in splits}
        print(f"{task}: {sizes}")
    return 0


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    return report(build_all(Path(args.corpus), Path(args.out), args.seed, args.scale))
