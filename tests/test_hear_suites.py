"""HEAR task configs and suites: the 19 HEAR 2021 tasks, named selections, missing folders."""
import json

import pytest

from encodecmae_hear.evaluate import suites as hear_suites
from encodecmae_hear.evaluate.suites import TaskConfig, load_suite, load_task, resolve

# Folder names of the HEAR 2021 release (hear-preprocess: <task_name>-<version>-<mode>)
# with the first entry of each task's "evaluation" list.
HEAR2021 = {
    "beehive_states_fold0-v2-full": "aucroc",
    "beijing_opera-v1.0-hear2021-full": "top1_acc",
    "dcase2016_task2-hear2021-full": "event_onset_200ms_fms",
    "esc50-v2.0.0-full": "top1_acc",
    "fsd50k-v1.0-full": "mAP",
    "gunshot_triangulation-v1.0-full": "top1_acc",
    "libricount-v1.0.0-hear2021-full": "top1_acc",
    "maestro-v3.0.0-5h": "event_onset_50ms_fms",
    "mridangam_stroke-v1.5-full": "top1_acc",
    "mridangam_tonic-v1.5-full": "top1_acc",
    "nsynth_pitch-v2.2.3-5h": "pitch_acc",
    "nsynth_pitch-v2.2.3-50h": "pitch_acc",
    "speech_commands-v0.0.2-5h": "top1_acc",
    "speech_commands-v0.0.2-full": "top1_acc",
    "tfds_crema_d-1.0.0-full": "top1_acc",
    "tfds_gtzan-1.0.0-full": "top1_acc",
    "tfds_gtzan_music_speech-1.0.0-full": "top1_acc",
    "vocal_imitation-v1.1.3-full": "mAP",
    "vox_lingua_top10-hear2021-full": "top1_acc",
}
EVENT = {"dcase2016_task2-hear2021-full", "maestro-v3.0.0-5h"}


def test_all19_folders_metrics_and_types():
    tasks = load_suite("all19")
    assert len(tasks) == 19
    assert {t.folder: t.metric for t in tasks} == HEAR2021
    for task in tasks:
        assert isinstance(task, TaskConfig)
        assert task.embedding_type == ("event" if task.folder in EVENT else "scene")
        assert task.kfold == (task.folds > 1)
    assert len({t.task for t in tasks}) == 19


def test_hear18_is_all_but_beehive_and_is_the_default():
    hear18 = load_suite("hear18")
    assert len(hear18) == 18
    assert not any("beehive" in t.folder for t in hear18)
    assert {t.folder for t in hear18} == set(HEAR2021) - {"beehive_states_fold0-v2-full"}
    assert hear_suites.default_suite() == "hear18"
    assert load_suite() == hear18


def test_paper6_and_synthetic():
    assert [t.folder for t in load_suite("paper6")] == [
        "nsynth_pitch-v2.2.3-50h", "tfds_gtzan-1.0.0-full", "speech_commands-v0.0.2-full",
        "tfds_crema_d-1.0.0-full", "fsd50k-v1.0-full", "esc50-v2.0.0-full"]
    synthetic = {t.folder: t.metric for t in load_suite("synthetic")}
    assert synthetic == {"synthetic_scene_kfold": "top1_acc",
                         "synthetic_onsets": "event_onset_200ms_fms"}
    assert set(hear_suites.suite_names()) >= {"hear18", "paper6", "all19", "synthetic"}


def test_load_task_by_id_or_folder_and_unknown():
    assert load_task("esc50") == load_task("esc50-v2.0.0-full")
    assert load_task("esc50").folds == 5
    with pytest.raises(KeyError, match="unknown HEAR task 'nope'"):
        load_task("nope")
    with pytest.raises(KeyError, match="unknown suite"):
        load_suite("hear99")


def test_resolve_reports_missing_folders(tmp_path):
    (tmp_path / "esc50-v2.0.0-full").mkdir()
    (tmp_path / "tfds_crema_d-1.0.0-full").mkdir()
    present, missing = resolve("paper6", tmp_path)
    assert [(t.task, p) for t, p in present] == [
        ("crema_d", tmp_path / "tfds_crema_d-1.0.0-full"),
        ("esc50", tmp_path / "esc50-v2.0.0-full")]
    assert [t.task for t in missing] == [
        "nsynth_pitch_50h", "gtzan", "speech_commands_full", "fsd50k"]
    present, missing = resolve(load_suite("synthetic"), tmp_path / "absent")
    assert present == [] and len(missing) == 2


def _write_configs(root, suites, **tasks):
    root.mkdir()
    for name, data in tasks.items():
        (root / f"{name}.json").write_text(json.dumps(data))
    (root / "suites.json").write_text(json.dumps({"default": "mine", "suites": suites}))


def test_env_override_and_per_task_settings(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    _write_configs(root, {"mine": ["toy"]},
                   toy={"task": "toy", "folder": "toy-v1-full", "metric": "top1_acc",
                        "embedding_type": "scene", "grid_points": 2})
    monkeypatch.setenv(hear_suites.EVAL_CONFIGS_ENV, str(root))
    assert hear_suites.configs_dir() == root
    (task,) = load_suite()
    assert task == TaskConfig(task="toy", folder="toy-v1-full", metric="top1_acc",
                              embedding_type="scene", grid_points=2)
    assert task.name == "toy" and not task.kfold


def test_bad_configs_say_what_is_wrong(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    base = {"task": "toy", "folder": "toy-v1-full", "metric": "top1_acc",
            "embedding_type": "scene"}
    _write_configs(root, {"mine": ["toy"]}, toy={**base, "gridpoints": 2})
    monkeypatch.setenv(hear_suites.EVAL_CONFIGS_ENV, str(root))
    with pytest.raises(ValueError, match=r"toy.json: unknown key\(s\) \['gridpoints'\]"):
        load_task("toy")
    (root / "toy.json").write_text(json.dumps({**base, "embedding_type": "frame"}))
    with pytest.raises(ValueError, match="embedding_type must be one of"):
        load_task("toy")
    (root / "toy.json").write_text(json.dumps({k: v for k, v in base.items() if k != "metric"}))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['metric'\]"):
        load_task("toy")
    monkeypatch.setenv(hear_suites.EVAL_CONFIGS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="ENCODECMAE_EVAL_CONFIGS"):
        load_suite("hear18")
