"""The synthetic HEAR suite is written in the exact HEAR 2021 task-folder format that
heareval reads: metadata, split JSON labels, label vocabulary, audio at 48 and 16 kHz."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from heareval.score import available_scores  # noqa: E402

from encodecmae_hear.evaluate import suites as hear_suites
from encodecmae_hear.evaluate import synthetic_tasks


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    synthetic_tasks.build(out, scale=0.4, seed=3, epochs=7)
    return out


def read(task: Path):
    meta = json.loads((task / "task_metadata.json").read_text())
    with open(task / "labelvocabulary.csv", newline="") as f:
        vocab = list(csv.DictReader(f))
    splits = {s: json.loads((task / f"{s}.json").read_text()) for s in meta["splits"]}
    return meta, vocab, splits


def check_audio(task: Path, meta: dict, splits: dict) -> None:
    for rate in (48000, 16000):
        for split, labels in splits.items():
            files = sorted(p.name for p in (task / str(rate) / split).iterdir())
            assert files == sorted(labels)                      # one wav per labelled file
            for name in list(labels)[:3]:
                audio, sr = sf.read(task / str(rate) / split / name, dtype="float32")
                assert sr == rate and audio.ndim == 1
                assert len(audio) == round(meta["sample_duration"] * rate)
                assert np.abs(audio).max() <= 1.0 and audio.std() > 1e-3


def test_scene_task_format(suite):
    task = suite / "synthetic_scene_kfold"
    meta, vocab, splits = read(task)
    assert meta["task_name"] == "synthetic_scene_kfold" and meta["mode"] == "full"
    assert meta["embedding_type"] == "scene" and meta["prediction_type"] == "multiclass"
    assert meta["split_mode"] == "presplit_kfold" and meta["splits"] == list(synthetic_tasks.FOLDS)
    assert all(e in available_scores for e in meta["evaluation"])
    assert meta["evaluation"][0] == hear_suites.load_task("synthetic_scene_kfold").metric
    grid = meta["evaluation_params"]["task_specific_param_grid"]
    assert grid["max_epochs"] == [7]
    assert [row["idx"] for row in vocab] == [str(i) for i in range(len(vocab))]
    labels = {row["label"] for row in vocab}
    assert labels == set(synthetic_tasks.SCENE_CLASSES)
    for fold, files in splits.items():
        counts = {label: sum(v == [label] for v in files.values()) for label in labels}
        assert set(counts.values()) == {3}                     # balanced: 3 per class and fold
    check_audio(task, meta, splits)


def test_event_task_format(suite):
    task = suite / "synthetic_onsets"
    meta, vocab, splits = read(task)
    assert meta["embedding_type"] == "event" and meta["prediction_type"] == "multilabel"
    assert meta["split_mode"] == "trainvaltest" and meta["splits"] == ["train", "valid", "test"]
    assert all(e in available_scores for e in meta["evaluation"])
    assert meta["evaluation"][0] == hear_suites.load_task("synthetic_onsets").metric
    assert set(meta["evaluation_params"]["event_postprocessing_grid"]) == {
        "median_filter_ms", "min_duration"}
    assert {row["label"] for row in vocab} == {"beep", "thump"}
    duration_ms = meta["sample_duration"] * 1000
    n_events = 0
    for files in splits.values():
        assert files
        for events in files.values():
            assert events
            ends = 0.0
            for event in sorted(events, key=lambda e: e["start"]):
                assert set(event) == {"label", "start", "end"}
                assert ends <= event["start"] < event["end"] <= duration_ms  # ms, no overlap
                ends = event["end"]
                n_events += 1
    assert n_events >= 3 * sum(len(f) for f in splits.values()) // 2
    check_audio(task, meta, splits)


def test_event_audio_is_loud_where_the_labels_say(suite):
    """The onsets are real: the signal is louder inside labelled events than between."""
    task = suite / "synthetic_onsets"
    _, _, splits = read(task)
    name, events = next(iter(splits["train"].items()))
    audio, sr = sf.read(task / "16000" / "train" / name, dtype="float32")
    inside = np.zeros(len(audio), bool)
    for e in events:
        inside[int(e["start"] * sr / 1000): int(e["end"] * sr / 1000)] = True
    assert np.sqrt((audio[inside] ** 2).mean()) > 3 * np.sqrt((audio[~inside] ** 2).mean())


def test_same_seed_same_suite(tmp_path):
    a = synthetic_tasks.event_task(tmp_path / "a", n_clips=15, seed=5)
    b = synthetic_tasks.event_task(tmp_path / "b", n_clips=15, seed=5)
    assert (a / "train.json").read_text() == (b / "train.json").read_text()
    wav = "16000/test/onsets-0004.wav"
    assert (a / wav).read_bytes() == (b / wav).read_bytes()
