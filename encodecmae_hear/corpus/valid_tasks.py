"""`valid-tasks`: the validation suite, HEAR tasks for choosing a model, kept apart from
the proof suite (`heldout-tasks`), which is reported once for the chosen model.

    python -m encodecmae_hear valid-tasks --corpus ../corpus --out ../valid_tasks

Both suites come from corpus sources pretraining never saw, but never share a clip:

* valid_pitch_class (music): pitch class (12 classes) of one note, 1 s clips, played by
  15 General MIDI programs of 12 families (PITCH_PROGRAMS) through the held-out MuseScore
  General soundfont; every program plays every pitch class once, octaves 3-5 (C4 = MIDI
  60) dealt evenly. The five folds are instrument-disjoint (3 programs each), so a
  probe has to generalise pitch to timbres it was not trained on.
* valid_instrument (music): the same clips labelled by instrument (15 classes), the
  five folds pitch-class-disjoint, so a probe has to generalise timbre to notes it was
  not trained on.
* valid_spoken_language (speech): which language a recorded ktuberling-data word is
  spoken in, for the SPOKEN_LANGUAGES languages ranked after the ones the proof's
  spoken-language task takes (most words first, ties by name): other languages, other
  recordings. Class-stratified folds as in the proof tasks.
* valid_spoken_words (speech): which of ten words (the digits zero to nine) is spoken,
  1.5 s clips from flite's four built-in speakers (corpus/flite.py), each saying every
  word at five speaking rates. Four folds, one speaker each: a probe has to recognise
  words from voices it was not trained on. No source of the corpus or the proof suite.

Seeded and deterministic; scene tasks in presplit folds (five; the words task four),
audio at 48000 and 16000 Hz, written by the shared HEAR task writer (task_io).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from encodecmae_hear.audio import resample
from encodecmae_hear.corpus import flite
from encodecmae_hear.corpus import heldout_tasks as ht
from encodecmae_hear.corpus import midi
from encodecmae_hear.corpus.sources import SOUNDFONTS
from encodecmae_hear.errors import UserError
from encodecmae_hear.evaluate import task_io

VERSION = "valid-1"
PITCH_CLASSES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORD_STRETCHES = (0.8, 0.9, 1.0, 1.12, 1.25)  # flite's duration_stretch: speaking rates
# (General MIDI program, name): 12 families, pitched programs with a clear onset or tone
PITCH_PROGRAMS = (
    (0, "grand_piano"), (6, "harpsichord"), (11, "vibraphone"), (19, "church_organ"),
    (24, "nylon_guitar"), (33, "fingered_bass"), (40, "violin"), (42, "cello"),
    (52, "choir_aahs"), (56, "trumpet"), (65, "alto_sax"), (71, "clarinet"), (73, "flute"),
    (80, "square_lead"), (104, "sitar"))
OCTAVES = (3, 4, 5)          # MIDI pitch = 12 * (octave + 1) + pitch class: 48..83
NOTE = (0.05, 0.8)           # onset and duration in a clip, seconds
MELODIC_CHANNELS = tuple(c for c in range(16) if c != 9)  # MIDI channel 9 is the drum kit
SPOKEN_LANGUAGES = 5


def midi_pitch(pitch_class: int, octave: int) -> int:
    return 12 * (octave + 1) + pitch_class


def instrument_folds(n_instruments: int, seed: int) -> list[str]:
    """A fold for each instrument (or pitch class): a seeded order cut into len(FOLDS)
    runs as equal as they can be."""
    order = np.random.default_rng(seed).permutation(n_instruments)
    folds = [""] * n_instruments
    for position, instrument in enumerate(order):
        folds[instrument] = ht.FOLDS[position * len(ht.FOLDS) // n_instruments]
    return folds


def note_clips(soundfont: Path, seed: int, seconds: float, sr: int, programs) -> list[dict]:
    """len(programs) x 12 clips of one note each, {"name", "pitch_class", "program",
    "instrument_fold", "audio"}; one fluidsynth run, a channel per program, one note every
    `spacing` seconds."""
    if len(programs) > len(MELODIC_CHANNELS):
        raise ValueError(f"at most {len(MELODIC_CHANNELS)} programs, got {len(programs)}")
    rng = np.random.default_rng(seed)
    spacing = seconds + 3.0  # the previous note's release and reverb tail die away
    onset, duration = NOTE
    notes, clips = [], []
    for (program, name), channel, fold in zip(programs, MELODIC_CHANNELS,
                                              instrument_folds(len(programs), seed)):
        octaves = rng.permutation(np.repeat(OCTAVES, len(PITCH_CLASSES) // len(OCTAVES)))
        velocities = rng.integers(80, 111, size=len(PITCH_CLASSES))
        for pc, (octave, velocity) in enumerate(zip(octaves, velocities)):
            pitch = midi_pitch(pc, int(octave))
            notes.append((len(clips) * spacing + onset, duration, channel, pitch, int(velocity)))
            clips.append({"name": f"{PITCH_CLASSES[pc]}-{name}-p{pitch}", "pitch_class": PITCH_CLASSES[pc],
                          "program": name, "instrument_fold": fold})
    audio = midi.render(notes, dict(zip(MELODIC_CHANNELS, (p for p, _ in programs))), soundfont, sr)
    step = int(spacing * sr)
    for k, clip in enumerate(clips):
        clip["audio"] = audio[k * step:k * step + int(seconds * sr)]
    return clips


def pitch_class_task(soundfont: Path, out: Path, seed: int, seconds: float = 1.0,
                     sr: int = 48000, programs=PITCH_PROGRAMS) -> Path:
    """Pitch class of each note clip, folds by instrument."""
    clips = [{"name": c["name"], "label": c["pitch_class"], "split": c["instrument_fold"], "audio": c["audio"]}
             for c in note_clips(soundfont, seed, seconds, sr, programs)]
    return ht.write_task(out, "valid_pitch_class", clips, seconds, sr, version=VERSION)


def instrument_task(soundfont: Path, out: Path, seed: int, seconds: float = 1.0,
                    sr: int = 48000, programs=PITCH_PROGRAMS) -> Path:
    """The same note clips labelled by instrument (GM program), folds by pitch class: a
    timbre task whose test notes are pitch classes the training never heard."""
    folds = instrument_folds(len(PITCH_CLASSES), seed + 1)  # the same dealing, over pitch classes
    fold_of = dict(zip(PITCH_CLASSES, folds))
    clips = [{"name": c["name"], "label": c["program"], "split": fold_of[c["pitch_class"]], "audio": c["audio"]}
             for c in note_clips(soundfont, seed, seconds, sr, programs)]
    return ht.write_task(out, "valid_instrument", clips, seconds, sr, version=VERSION)


def spoken_language_task(corpus: Path, out: Path, seed: int, per_class: int = 60,
                         seconds: float = 2.0, n_classes: int = SPOKEN_LANGUAGES,
                         skip: int = ht.SPOKEN_LANGUAGES) -> Path:
    """n_classes languages, ranked as the proof task ranks them, after the first `skip`
    (the proof's own languages); per_class words of each."""
    task = ht.scene_from_corpus(corpus, out, "valid_spoken_language", ht.language_of,
                                n_classes, per_class, seconds, seed, skip=skip, version=VERSION)
    counts = Counter(label for fold in ht.FOLDS
                     for [label] in json.loads((task / f"{fold}.json").read_text()).values())
    if len(counts) < n_classes or min(counts.values()) < per_class:
        raise UserError(f"{corpus}: ktuberling-data has too few words for {task.name}: "
                        f"wanted {n_classes} languages beyond the proof's {skip} with "
                        f"{per_class} words each, found {dict(sorted(counts.items()))}")
    return task


def spoken_words_task(out: Path, seconds: float = 1.5, sr: int = 48000) -> Path:
    """Every word of WORDS at every stretch by every flite voice; a fold per voice."""
    clips = []
    for fold, voice in enumerate(flite.VOICES):
        for word in WORDS:
            for stretch in WORD_STRETCHES:
                audio, rate = flite.render(word, voice, stretch)
                audio = resample(audio, rate, sr)
                peak = float(np.abs(audio).max())
                clips.append({"name": f"{word}-{voice}-x{stretch:g}", "label": word, "split": f"fold{fold:02d}",
                              "audio": 0.5 * audio / peak if peak > 0 else audio})
    splits = tuple(f"fold{i:02d}" for i in range(len(flite.VOICES)))
    return task_io.write_task(out, "valid_spoken_words", clips, seconds, sr, splits=splits,
                              split_mode="presplit_kfold", version=VERSION)


def check_inputs(corpus: Path, soundfont: Path) -> None:
    if not (corpus / "manifest.jsonl").is_file():
        raise UserError(f"{corpus} has no manifest.jsonl: build the corpus first "
                        f"(`make corpus CORPUS={corpus}`), or pass the folder it built")
    if not soundfont.is_file():
        raise UserError(f"held-out soundfont not found: {soundfont} (the corpus build "
                        "fetches it into <corpus>/cache/pkgs; re-run `make corpus`)")
    flite.binary()


def build_all(corpus: Path, out: Path, seed: int = 0) -> list[Path]:
    package, rel = SOUNDFONTS["heldout"]
    soundfont = corpus / "cache" / "pkgs" / package / rel
    check_inputs(corpus, soundfont)
    return [pitch_class_task(soundfont, out, seed), instrument_task(soundfont, out, seed),
            spoken_language_task(corpus, out, seed), spoken_words_task(out)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="folder built by `corpus`")
    parser.add_argument("--out", required=True, help="folder for the task folders")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    return ht.report(build_all(Path(args.corpus), Path(args.out), args.seed))
