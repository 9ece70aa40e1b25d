"""HEAR task configurations and named task selections ("suites").

``eval_configs/`` (``paths.EVAL_CONFIGS``: the checkout's, or the installed package's copy)
holds one JSON file per task,
named by its short id, and ``suites.json`` with the named selections::

    eval_configs/esc50.json   {"task": "esc50", "title": "ESC-50",
                               "folder": "esc50-v2.0.0-full", "metric": "top1_acc",
                               "embedding_type": "scene", "split_mode": "presplit_kfold",
                               "folds": 5}
    eval_configs/suites.json  {"default": "hear18", "suites": {"hear18": [...], ...}}

``folder`` is the task folder's name in the HEAR 2021 release (``<task_name>-<version>-
<mode>`` as hear-preprocess names it); ``metric`` is the task's primary score, the first
entry of ``evaluation`` in its ``task_metadata.json``, which heareval writes to
``test.predicted-scores.json`` as ``test_score`` and as ``test_<metric>``.
Optional keys: ``grid_points`` (heareval's ``--grid-points`` for this task) and
``notes``. $ENCODECMAE_EVAL_CONFIGS points at another folder of the same layout.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from encodecmae_hear.paths import EVAL_CONFIGS

EVAL_CONFIGS_ENV = "ENCODECMAE_EVAL_CONFIGS"
SUITES_FILE = "suites.json"
EMBEDDING_TYPES = ("scene", "event")
SPLIT_MODES = ("trainvaltest", "presplit_kfold", "new_split_kfold")
_REQUIRED = ("task", "folder", "metric", "embedding_type")
_OPTIONAL = ("title", "split_mode", "folds", "grid_points", "notes")


@dataclass(frozen=True)
class TaskConfig:
    task: str                    # short id, also the config file's stem
    folder: str                  # task folder name in the HEAR 2021 release
    metric: str                  # primary score as heareval names it (top1_acc, mAP, ...)
    embedding_type: str          # "scene" or "event"
    title: str = ""              # display name for tables and plots
    split_mode: str = "trainvaltest"
    folds: int = 1               # 1 for trainvaltest
    grid_points: int | None = None
    notes: str = ""

    @property
    def name(self) -> str:
        return self.title or self.task

    @property
    def kfold(self) -> bool:
        return self.split_mode != "trainvaltest"


def configs_dir() -> Path:
    """$ENCODECMAE_EVAL_CONFIGS, else the project's eval_configs/ (paths.EVAL_CONFIGS)."""
    override = os.environ.get(EVAL_CONFIGS_ENV, "").strip()
    if override:
        return Path(override)
    return EVAL_CONFIGS


def _existing_dir() -> Path:
    root = configs_dir()
    if not root.is_dir():
        raise FileNotFoundError(
            f"HEAR task configs not found: {root} is not a folder. Set ${EVAL_CONFIGS_ENV} "
            "to a folder of task configs, or unset it to use the project's eval_configs/")
    return root


def _parse_task(data: object, path: Path) -> TaskConfig:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; required: {list(_REQUIRED)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: "
                         f"{list(_REQUIRED) + list(_OPTIONAL)}")
    if data["embedding_type"] not in EMBEDDING_TYPES:
        raise ValueError(f"{path}: embedding_type must be one of {EMBEDDING_TYPES}, "
                         f"got {data['embedding_type']!r}")
    split_mode = data.get("split_mode", "trainvaltest")
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"{path}: split_mode must be one of {SPLIT_MODES}, got {split_mode!r}")
    if data["task"] != path.stem:
        raise ValueError(f"{path}: task {data['task']!r} differs from the file name {path.stem!r}")
    grid_points = data.get("grid_points")
    if grid_points is not None and (not isinstance(grid_points, int) or grid_points < 1):
        raise ValueError(f"{path}: grid_points must be a positive integer, got {grid_points!r}")
    return TaskConfig(task=str(data["task"]), folder=str(data["folder"]),
                      metric=str(data["metric"]), embedding_type=str(data["embedding_type"]),
                      title=str(data.get("title", "")), split_mode=split_mode,
                      folds=int(data.get("folds", 1)), grid_points=grid_points,
                      notes=str(data.get("notes", "")))


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def all_tasks() -> list[TaskConfig]:
    """Every task config in the configs folder, sorted by short id."""
    root = _existing_dir()
    return [_parse_task(_read_json(path), path)
            for path in sorted(root.glob("*.json")) if path.name != SUITES_FILE]


def load_task(name: str) -> TaskConfig:
    """A task by short id (``esc50``) or by HEAR folder name (``esc50-v2.0.0-full``)."""
    root = _existing_dir()
    path = root / f"{name}.json"
    if path.is_file() and path.name != SUITES_FILE:
        return _parse_task(_read_json(path), path)
    for task in all_tasks():
        if task.folder == name:
            return task
    known = ", ".join(t.task for t in all_tasks())
    raise KeyError(f"unknown HEAR task {name!r} (no {path.name} in {root}, and no config "
                   f"with that folder); known: {known}")


def _suites() -> tuple[str, dict[str, list[str]]]:
    path = _existing_dir() / SUITES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"suite list not found: {path}")
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("suites"), dict):
        raise ValueError(f'{path}: expected {{"default": NAME, "suites": {{NAME: [task, ...]}}}}')
    return str(data.get("default", "")), {str(k): list(v) for k, v in data["suites"].items()}


def suite_names() -> list[str]:
    return list(_suites()[1])


def default_suite() -> str:
    return _suites()[0]


def suites_for_help() -> str:
    """The suite names of suites.json for a --suite help line (never raises: help must print)."""
    try:
        return ", ".join(suite_names())
    except (OSError, ValueError) as error:
        return f"(suite list unreadable: {error})"


def load_suite(name: str | None = None) -> list[TaskConfig]:
    """The tasks of a named suite (default: the file's ``default``, i.e. hear18), in order."""
    default, suites = _suites()
    name = name or default
    if name not in suites:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(suites)}")
    return [load_task(task) for task in suites[name]]


def resolve(suite: str | list[TaskConfig] | None, tasks_dir: str | Path
            ) -> tuple[list[tuple[TaskConfig, Path]], list[TaskConfig]]:
    """Split a suite into tasks whose folder exists under ``tasks_dir`` and those missing.

    -> (present: [(config, tasks_dir / folder)], missing: [config]). A missing folder is
    reported, not an error: a machine often holds only some of the tasks.
    """
    tasks = suite if isinstance(suite, list) else load_suite(suite)
    root = Path(tasks_dir)
    present, missing = [], []
    for task in tasks:
        folder = root / task.folder
        if folder.is_dir():
            present.append((task, folder))
        else:
            missing.append(task)
    return present, missing
