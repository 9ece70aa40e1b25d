"""Held-out HEAR task folders: the format hear-eval-kit reads, balance, disjoint splits
(five class-stratified folds for scene tasks, train/valid/test for the event task).

The corpus is faked (a manifest and Opus files) and fluidsynth is replaced by a tone
generator, so the test needs neither apt packages nor a soundfont."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf

from encodecmae_hear.corpus import heldout_tasks as ht
from encodecmae_hear.evaluate.suites import load_suite, load_task

SR = 24000


@pytest.fixture
def fake_corpus(tmp_path):
    corpus, rows, rng = tmp_path / "corpus", [], np.random.default_rng(0)
    for source, labels, cat in (("ktuberling-data", ["ca", "de", "fr"], "speech"),
                                ("minetest-data", [None], "environment"),
                                ("lincity-ng-data", [None], "environment"),
                                ("wesnoth-music", [None], "music")):
        for label in labels:
            for k in range(7):
                sub = f"usr/share/ktuberling/sounds/{label}" if label else "sounds"
                path = f"audio/heldout/{source}/{sub}/w{k:02d}.wav"
                (corpus / path).parent.mkdir(parents=True, exist_ok=True)
                seconds = float(rng.uniform(0.5, 3.0))
                sf.write(corpus / path, 0.2 * rng.standard_normal(int(seconds * SR)).astype(np.float32), SR)
                rows.append({"path": path, "duration": seconds, "source": source, "category": cat,
                             "split": "heldout" if source != "wesnoth-music" else "train"})
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return corpus


def fake_render(notes, programs, soundfont, sample_rate=24000, gain=0.5):
    end = max(s + d for s, d, *_ in notes) + 1.0
    audio = np.zeros(int(end * sample_rate), np.float32)
    for start, dur, channel, pitch, velocity in notes:
        t = np.arange(int(dur * sample_rate)) / sample_rate
        i = int(start * sample_rate)
        audio[i:i + len(t)] += 0.1 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t)
    return audio


def check_task(task, event=False):
    meta = json.loads((task / "task_metadata.json").read_text())
    assert meta["task_name"] == task.name and meta["version"] == "heldout-2"
    assert meta["split_mode"] == ("trainvaltest" if event else "presplit_kfold")
    assert meta["embedding_type"] == ("event" if event else "scene")
    assert meta["prediction_type"] == ("multilabel" if event else "multiclass")
    assert meta["splits"] == (["train", "valid", "test"] if event else
                              ["fold00", "fold01", "fold02", "fold03", "fold04"])
    assert meta["evaluation"]
    config = load_task(task.name)  # eval_configs/ scores the folder the builder writes
    assert (config.folder, config.metric, config.embedding_type, config.split_mode) == (
        task.name, meta["evaluation"][0], meta["embedding_type"], meta["split_mode"])
    assert config.folds == (1 if event else len(meta["splits"]))
    assert config in load_suite("heldout") and config in load_suite("proof")
    with open(task / "labelvocabulary.csv") as f:
        vocab = list(csv.DictReader(f))
    assert [int(r["idx"]) for r in vocab] == list(range(len(vocab)))
    labels = {r["label"] for r in vocab}
    seen = set()
    for split in meta["splits"]:
        targets = json.loads((task / f"{split}.json").read_text())
        assert targets and not seen & set(targets)
        seen |= set(targets)
        for name, target in targets.items():
            for rate in (48000, 16000):
                info = sf.info(str(task / str(rate) / split / name))
                assert info.samplerate == rate and info.channels == 1
                assert info.frames == round(meta["sample_duration"] * rate)
            if event:
                assert all(e["label"] in labels and 0 <= e["start"] < e["end"] <= meta["sample_duration"] * 1000
                           for e in target)
            else:
                assert len(target) == 1 and target[0] in labels
    return meta, labels, seen


def class_counts(task, folds=False):
    """{label: clips}, or with folds=True {label: [clips in each fold]}."""
    counts = {}
    for k, split in enumerate(json.loads((task / "task_metadata.json").read_text())["splits"]):
        for target in json.loads((task / f"{split}.json").read_text()).values():
            per_fold = counts.setdefault(target[0], [0] * 5)
            per_fold[k] += 1
    return counts if folds else {label: sum(n) for label, n in counts.items()}


def test_scene_tasks_from_held_out_corpus_files(fake_corpus, tmp_path):
    out = tmp_path / "tasks"
    task = ht.scene_from_corpus(fake_corpus, out, "heldout_spoken_language", ht.language_of, 2, 5, 2.0, 0)
    check_task(task)
    assert class_counts(task) == {"ca": 5, "de": 5}  # the two largest classes, ties by name
    assert class_counts(task, folds=True) == {"ca": [1] * 5, "de": [1] * 5}
    sfx = ht.scene_from_corpus(fake_corpus, out, "heldout_sfx_collection",
                               lambda r: r["source"].split("-")[0] if r["category"] == "environment" else None,
                               4, 4, 2.0, 0)
    check_task(sfx)
    assert class_counts(sfx) == {"lincity": 4, "minetest": 4}  # the training-split music is never used
    again = ht.scene_from_corpus(fake_corpus, tmp_path / "again", "heldout_spoken_language", ht.language_of,
                                 2, 5, 2.0, 0)
    for fold in ht.FOLDS:
        assert (again / f"{fold}.json").read_text() == (task / f"{fold}.json").read_text()


def test_soundfont_tasks(monkeypatch, tmp_path):
    monkeypatch.setattr(ht.midi, "render", fake_render)
    family = ht.instrument_family_task(tmp_path / "sf.sf3", tmp_path, per_class=3, seconds=2.0, seed=0, sr=16000)
    _, labels, _ = check_task(family)
    assert labels == set(ht.INSTRUMENT_FAMILIES)
    assert set(class_counts(family).values()) == {3}
    onsets = ht.note_onset_task(tmp_path / "sf.sf3", tmp_path, n_clips=10, seconds=4.0, seed=0, sr=16000)
    meta, labels, names = check_task(onsets, event=True)
    assert labels == set(ht.ONSET_FAMILIES) and len(names) == 10
    assert meta["evaluation"][0] == "event_onset_200ms_fms"
    assert "event_postprocessing_grid" in meta["evaluation_params"]


def test_folds_are_balanced_per_class_and_overall():
    labels = ["a"] * 12 + ["b"] * 7 + ["c"] * 3
    folds = ht.assign_folds(labels, seed=3)
    assert folds == ht.assign_folds(labels, seed=3) and set(folds) == set(ht.FOLDS)
    assert folds != ht.assign_folds(labels, seed=4)
    for label in "abc":
        sizes = [sum(f == fold and lab == label for f, lab in zip(folds, labels)) for fold in ht.FOLDS]
        assert max(sizes) - min(sizes) <= 1
    sizes = [folds.count(fold) for fold in ht.FOLDS]
    assert max(sizes) - min(sizes) <= 1
