"""hear-embed / hear-predict driving the real heareval embedding runner: resumable
steps, missing task folders reported while the other tasks run, labels and options.
A tiny stand-in HEAR module (tests/hear_standin.py) keeps these fast; the bundled model
runs end to end in test_hear_eval_e2e.py."""
import json
import os
from pathlib import Path

import pytest

from encodecmae_hear import cli
from encodecmae_hear.evaluate import runner as hear_runner
from encodecmae_hear.evaluate import synthetic_tasks

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tasks")
    synthetic_tasks.scene_task(out, per_class_per_fold=2, seed=0)   # 24 clips
    return out                     # synthetic_onsets deliberately absent


@pytest.fixture(autouse=True)
def standin_on_path(monkeypatch):
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONPATH", path)


def embed(tasks_dir, runs, *extra) -> int:
    return cli.main(["hear-embed", "--module", "hear_standin", "--tasks-dir", str(tasks_dir),
                     "--suite", "synthetic", "--runs", str(runs), "--device", "cpu", *extra])


def test_embed_reports_missing_task_runs_the_rest_and_resumes(tasks_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert embed(tasks_dir, runs) == 0
    captured = capsys.readouterr()
    assert "MISSING synthetic_onsets" in captured.err
    assert str(tasks_dir / "synthetic_onsets") in captured.err
    assert "embedded synthetic_scene_kfold" in captured.out
    done = runs / "default" / "embeddings" / "hear_standin" / "synthetic_scene_kfold"
    marker = done / hear_runner.EMBED_DONE
    assert marker.is_file()
    for fold in synthetic_tasks.FOLDS:
        dims = json.loads((done / f"{fold}.embedding-dimensions.json").read_text())
        assert dims == [8, 16]       # 8 clips per fold, 16 bands
    info = json.loads((runs / "default" / "run.json").read_text())
    assert info["module"] == "hear_standin" and info["model"] == "hear_standin (its own)"

    stamp = marker.stat().st_mtime_ns
    assert embed(tasks_dir, runs) == 0                               # second run: skipped
    assert "skip embed synthetic_scene_kfold" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == stamp

    assert embed(tasks_dir, runs, "--force") == 0                    # forced: redone
    assert "embedded synthetic_scene_kfold" in capsys.readouterr().out
    assert (done / hear_runner.EMBED_DONE).stat().st_mtime_ns != stamp


def test_options_reach_load_model_and_name_the_label(tasks_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert embed(tasks_dir, runs, "--options", '{"layer": 3}') == 0
    label_dir = runs / "default-layer=3"
    assert json.loads((label_dir / "run.json").read_text())["options"] == {"layer": 3}
    # heareval names the embedding folder module + slugified options
    assert (label_dir / "embeddings" / "hear_standin-layer=3" / "synthetic_scene_kfold"
            / hear_runner.EMBED_DONE).is_file()


def test_predict_without_embeddings_fails_clearly(tasks_dir, tmp_path, capsys):
    status = cli.main(["hear-predict", "--module", "hear_standin", "--tasks-dir",
                       str(tasks_dir), "--suite", "synthetic", "--runs", str(tmp_path),
                       "--seeds", "2"])
    assert status == 1
    out = capsys.readouterr().out
    assert "FAILED predict synthetic_scene_kfold: not embedded yet" in out
    assert "0 of 1 task(s) done" in out


def test_failed_embedding_is_reported_with_its_log(tasks_dir, tmp_path, capsys):
    status = embed(tasks_dir, tmp_path, "--model", str(tmp_path / "absent.pt"))
    assert status == 1
    out = capsys.readouterr().out
    assert "FAILED embed synthetic_scene_kfold" in out
    assert "embed-synthetic_scene_kfold.log" in out


def test_labels_and_options():
    assert hear_runner.default_label("", {}) == "default"
    assert hear_runner.default_label("runs/base/model.pt", {"layer": 5}) == "model-layer=5"
    assert hear_runner.parse_options("") == {}
    with pytest.raises(ValueError, match="JSON object"):
        hear_runner.parse_options("[1]")


def test_every_command_has_help(capsys):
    for name in ("hear", "hear-embed", "hear-predict", "hear-table", "hear-validate",
                 "synth-tasks"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out
