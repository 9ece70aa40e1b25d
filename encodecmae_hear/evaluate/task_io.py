"""Writing task folders in the HEAR 2021 format that hear-eval-kit reads.

    <task>/task_metadata.json
    <task>/labelvocabulary.csv            idx,label
    <task>/<split>.json                   {file: [label]} (scene) or
                                          {file: [{"label", "start", "end"}]} in ms (event)
    <task>/<rate>/<split>/<file>.wav      for every rate in `rates`
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from encodecmae_hear import files
from encodecmae_hear.audio import resample

RATES = (48000, 16000)
TRAINVALTEST = ("train", "valid", "test")
SCENE_EVAL = ["top1_acc"]
EVENT_EVAL = ["event_onset_200ms_fms", "segment_1s_er"]


def fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to exactly n samples."""
    return np.pad(audio, (0, max(0, n - len(audio))))[:n]


def write_task(out: Path, name: str, clips: list[dict], seconds: float, sr: int, *,
               event: bool = False, splits: tuple[str, ...] = TRAINVALTEST,
               split_mode: str = "trainvaltest", evaluation: list[str] | None = None,
               evaluation_params: dict | None = None, version: str = "1",
               rates: tuple[int, ...] = RATES) -> Path:
    """clips: {"name", "audio" (n,) at sr, "split", and "label" (scene) or "events"
    ([{"label", "start", "end"}] in ms)} -> the task folder `out/name`."""
    task = out / name
    labels = sorted({e["label"] for c in clips for e in c["events"]} if event else
                    {c["label"] for c in clips})
    for rate in rates:
        for split in splits:
            (task / str(rate) / split).mkdir(parents=True, exist_ok=True)
    targets: dict[str, dict] = {split: {} for split in splits}
    for clip in clips:
        fname = clip["name"] + ".wav"
        for rate in rates:
            audio = fit(resample(clip["audio"], sr, rate), int(round(seconds * rate)))
            with files.atomic_open(task / str(rate) / clip["split"] / fname) as f:
                sf.write(f, np.clip(audio, -1, 1), rate, subtype="PCM_16", format="WAV")
        targets[clip["split"]][fname] = clip["events"] if event else [clip["label"]]
    for split in splits:
        files.write_json(task / f"{split}.json", targets[split], indent=1, sort_keys=True)
    with files.atomic_open(task / "labelvocabulary.csv", "w") as f:
        writer = csv.writer(f)
        writer.writerow(["idx", "label"])
        writer.writerows(enumerate(labels))
    metadata = {"task_name": name, "version": version, "mode": "full",
                "embedding_type": "event" if event else "scene",
                "prediction_type": "multilabel" if event else "multiclass",
                "split_mode": split_mode, "splits": list(splits), "sample_duration": seconds,
                "evaluation": evaluation or (EVENT_EVAL if event else SCENE_EVAL)}
    if evaluation_params:
        metadata["evaluation_params"] = evaluation_params
    files.write_json(task / "task_metadata.json", metadata, indent=1, sort_keys=True)
    return task
