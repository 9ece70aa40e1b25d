"""End to end with the bundled model: the real heareval embedding and prediction runners
on the synthetic suite (a 3-fold scene task and an onset event task), then the table.
Small tasks and a one-point grid keep this within a few minutes on 2 CPU cores."""
import csv
import math
import subprocess
import time

import pytest

from encodecmae_hear import cli
from encodecmae_hear.evaluate import runner as hear_runner
from encodecmae_hear.evaluate import synthetic_tasks

SCENE_CHANCE = 1 / len(synthetic_tasks.SCENE_CLASSES)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("hear_e2e")
    tasks = root / "tasks"
    synthetic_tasks.scene_task(tasks, per_class_per_fold=8, seed=0, epochs=40)   # 96 clips
    synthetic_tasks.event_task(tasks, n_clips=15, seed=1, epochs=20)             # 15 x 4 s
    argv = ["hear", "--tasks-dir", str(tasks), "--suite", "synthetic", "--runs",
            str(root / "runs"), "--seeds", "1", "--grid-points", "1", "--device", "cpu"]
    start = time.time()
    status = cli.main(argv)
    return root, argv, status, time.time() - start


def test_real_runners_produce_a_table_above_chance(evaluated, capsys):
    root, _, status, seconds = evaluated
    assert status == 0
    runs = root / "runs"
    for name in ("results.md", "results.csv", "results.png"):
        assert (runs / name).stat().st_size > 0
    with open(runs / "results.csv", newline="") as f:
        rows = {r["task"]: r for r in csv.DictReader(f) if r["label"] == "default"}
    scene = float(rows["synthetic_scene_kfold"]["mean"])
    onsets = float(rows["synthetic_onsets"]["mean"])
    print(f"end to end {seconds:.0f} s: scene top1 {scene:.3f}, onset FMS {onsets:.3f}")
    assert math.isfinite(scene) and math.isfinite(onsets)
    assert scene > SCENE_CHANCE + 0.15          # 4 balanced classes: chance 0.25
    assert onsets > 0.3                          # no onsets found scores 0
    scores = runs / "default" / "seed-0" / "synthetic_onsets" / "test.predicted-scores.json"
    assert scores.is_file()
    assert "| Synthetic onsets | event_onset_200ms_fms |" in (runs / "results.md").read_text()


def test_second_run_skips_finished_steps(evaluated, capsys, monkeypatch):
    root, argv, _, _ = evaluated
    started = []  # every runner is a subprocess (subprocess.run builds on Popen)

    def no_runner(args, *rest, **kwargs):
        started.append(args)
        raise AssertionError(f"a runner was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_runner)
    monkeypatch.setattr(subprocess, "run", no_runner)
    assert cli.main(argv) == 0
    monkeypatch.undo()
    assert started == []
    out = capsys.readouterr().out
    for task in ("synthetic_scene_kfold", "synthetic_onsets"):
        assert f"skip embed {task}: done" in out
        assert f"skip predict {task} seed 0: done" in out
    marker = root / "runs" / "default" / "seed-0" / "synthetic_scene_kfold" / hear_runner.PREDICT_DONE
    assert marker.is_file()
