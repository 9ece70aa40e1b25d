"""HEAR result tables: collect heareval's test scores over seeds and models, summarise, plot.

A results folder (one per evaluation run, any number of models side by side)::

    RUN_DIR/<label>/run.json                  {"label", "model", "options", "module"}
    RUN_DIR/<label>/seed-<k>/<task_folder>/test.predicted-scores.json
    RUN_DIR/<label>/seed-<k>/<task_folder>/task_metadata.json        (optional)

``test.predicted-scores.json`` is what ``heareval.predictions.runner`` writes: for a
train/valid/test task ``{"test": {"test_score": x, "test_<metric>": x, ...}, ...}``; for a
k-fold task one entry per test fold (``"fold00"``, ...) and ``"aggregated_scores"``
with ``"test_score_mean"`` / ``"test_score_std"`` over the folds. ``test_score`` is the
task's primary score, the first entry of ``evaluation`` in ``task_metadata.json``.

Per task and label the table gives the primary test score as mean ± sample std
(n - 1) over seeds (std 0 for one seed), the mean divided by the leaderboard best where
one is known (``evaluate/leaderboard.csv``), and per label an overall mean over the tasks
present for it. Scores stay fractions (0..1) in the data; tables and plots show %.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from encodecmae_hear.evaluate import suites
from encodecmae_hear.evaluate.suites import TaskConfig

SCORES_FILE = "test.predicted-scores.json"
METADATA_FILE = "task_metadata.json"
RUN_FILE = "run.json"
LEADERBOARD = Path(__file__).resolve().parent / "leaderboard.csv"
OVERALL = "overall"               # task id of the per-label summary rows
SEED_DIR = re.compile(r"^seed-(\d+)$")
DPI = 100                         # resolution of the bar plot (report)


@dataclass(frozen=True)
class Record:
    """One model (label), one seed, one task: the primary test score."""
    label: str
    seed: int
    task: str                      # short id from eval_configs, else the folder name
    folder: str
    metric: str                    # primary metric name (top1_acc, mAP, ...)
    score: float                   # k-fold: heareval's mean over the test folds
    folds: int = 1
    fold_std: float | None = None  # heareval's std over folds (k-fold only)
    model: str = ""
    title: str = ""
    path: str = ""
    options: dict = field(default_factory=dict, compare=False, hash=False)  # run.json


@dataclass(frozen=True)
class Best:
    task: str
    metric: str
    best: float
    model: str
    source: str


@dataclass(frozen=True)
class Row:
    """A table cell's worth: one label on one task, or its overall mean (task == OVERALL)."""
    label: str
    model: str
    task: str
    title: str
    metric: str
    mean: float
    std: float                     # sample std over seeds; nan for OVERALL rows
    n_seeds: int = 0
    seeds: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    best: float | None = None
    best_model: str = ""
    normalised: float | None = None   # mean / best
    n_tasks: int = 1                  # OVERALL: tasks averaged for mean
    n_normalised: int = 0             # OVERALL: tasks averaged for normalised
    folder: str = ""
    options: dict = field(default_factory=dict, compare=False, hash=False)


# ---------------------------------------------------------------- reading

def _test_score(entry: dict, metric: str | None, where: str, suffix: str = "") -> float:
    """The primary score of one result dict, checked against ``test_<metric>``."""
    primary = entry.get(f"test_score{suffix}")
    named = entry.get(f"test_{metric}{suffix}") if metric else None
    if primary is None and named is None:
        raise ValueError(f"{where}: no test_score{suffix}"
                         + (f" or test_{metric}{suffix}" if metric else "")
                         + f"; keys: {sorted(entry)}")
    if primary is not None and named is not None and not _same(primary, named):
        raise ValueError(f"{where}: test_score{suffix}={primary} but test_{metric}{suffix}="
                         f"{named}: the task's primary metric is not {metric!r}")
    score = float(primary if primary is not None else named)
    if math.isnan(score) and metric and entry.get(f"test_{metric}_recall{suffix}") == 0:
        return 0.0  # nothing detected: precision is 0/0, but an F-measure with recall 0 is 0
    return score


def _same(a: float, b: float) -> bool:
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _infer_metric(entry: dict) -> str:
    """The first ``test_<name>`` equal to ``test_score`` (heareval logs the primary first).
    ``entry`` is one split's results or ``aggregated_scores`` (keys ending in _mean)."""
    suffix = "_mean" if "test_score_mean" in entry else ""
    primary = entry.get(f"test_score{suffix}")
    if primary is None:
        return "test_score"
    for key, value in entry.items():
        if not (key.startswith("test_") and key.endswith(suffix)):
            continue
        name = key[len("test_"):len(key) - len(suffix)]
        if name not in ("score", "loss") and isinstance(value, (int, float)) \
                and _same(value, primary):
            return name
    return "test_score"


def read_scores(path: str | Path, metric: str | None = None) -> tuple[str, float, int, float | None]:
    """Parse one ``test.predicted-scores.json``.

    -> (metric, primary test score, number of test folds, std over folds or None).
    ``metric`` None: taken from ``task_metadata.json`` beside the file when there is one,
    else inferred from the keys.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if metric is None:
        meta = path.parent / METADATA_FILE
        if meta.is_file():
            evaluation = json.loads(meta.read_text()).get("evaluation") or []
            metric = str(evaluation[0]) if evaluation else None
    folds = {k: v for k, v in data.items()
             if k != "aggregated_scores" and isinstance(v, dict)
             and any(key.startswith("test_") for key in v)}
    if not folds:
        raise ValueError(f"{path}: no test results (expected a 'test' entry or per-fold "
                         f"entries with test_score); keys: {sorted(data)}")
    aggregated = data.get("aggregated_scores")
    if isinstance(aggregated, dict):
        if metric is None:
            metric = _infer_metric(aggregated)
        score = _test_score(aggregated, metric, f"{path} aggregated_scores", "_mean")
        std = aggregated.get("test_score_std", aggregated.get(f"test_{metric}_std"))
        return metric, score, len(folds), (None if std is None else float(std))
    if metric is None:
        metric = _infer_metric(next(iter(folds.values())))
    scores = [_test_score(entry, metric, f"{path} {name}") for name, entry in folds.items()]
    if len(scores) == 1:
        return metric, scores[0], 1, None
    # Several folds but no aggregate (heareval always writes one; be lenient).
    mean, std = mean_std(scores)
    return metric, mean, len(scores), std


def read_run(label_dir: str | Path) -> dict:
    """``run.json`` of one label folder, or {} when there is none."""
    path = Path(label_dir) / RUN_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _task_index() -> dict[str, TaskConfig]:
    try:
        return {task.folder: task for task in suites.all_tasks()}
    except FileNotFoundError:
        return {}


def _is_label_dir(path: Path) -> bool:
    return path.is_dir() and any(SEED_DIR.match(p.name) and p.is_dir() for p in path.iterdir())


def collect(run_dir: str | Path) -> list[Record]:
    """Every score under ``run_dir`` (see the module docstring for the layout).

    ``run_dir`` may also be one label folder itself (it holds ``seed-<k>`` folders).
    Task folders without a scores file (a run in progress or failed) are skipped.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {run_dir}")
    index = _task_index()
    label_dirs = [run_dir] if _is_label_dir(run_dir) else sorted(
        p for p in run_dir.iterdir() if not p.name.startswith(".") and _is_label_dir(p))
    records = []
    for label_dir in label_dirs:
        run = read_run(label_dir)
        label = str(run.get("label") or label_dir.name)
        model = str(run.get("model") or label)
        options = dict(run.get("options") or {})
        seed_dirs = sorted((int(m.group(1)), p) for p in label_dir.iterdir()
                           if p.is_dir() and (m := SEED_DIR.match(p.name)))
        for seed, seed_dir in seed_dirs:
            for task_dir in sorted(p for p in seed_dir.iterdir() if p.is_dir()):
                scores_file = task_dir / SCORES_FILE
                if not scores_file.is_file():
                    continue
                config = index.get(task_dir.name)
                metric, score, folds, fold_std = read_scores(
                    scores_file, config.metric if config else None)
                records.append(Record(
                    label=label, seed=seed, folder=task_dir.name,
                    task=config.task if config else task_dir.name,
                    title=config.name if config else task_dir.name,
                    metric=metric, score=score, folds=folds, fold_std=fold_std,
                    model=model, path=str(scores_file), options=options))
    return records


def load_leaderboard(path: str | Path | None = None) -> dict[str, Best]:
    """task id -> leaderboard best (``evaluate/leaderboard.csv`` unless ``path``)."""
    path = Path(path) if path else LEADERBOARD
    with open(path, newline="") as file:
        return {row["task"]: Best(row["task"], row["metric"], float(row["best"]),
                                  row.get("model", ""), row.get("source", ""))
                for row in csv.DictReader(file)}


# ---------------------------------------------------------------- maths

def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); std 0 for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def summarise(records: list[Record], tasks: list[TaskConfig] | None = None,
              leaderboard: dict[str, Best] | None = None) -> list[Row]:
    """Per (task, label) mean ± std over seeds, normalised scores, per-label overall means.

    ``tasks``: restrict to and order by these tasks (e.g. a suite); default: every task
    in ``records``, ordered by title. Labels keep their order of first appearance.
    ``leaderboard`` default: the bundled ``evaluate/leaderboard.csv``; {} for none.
    Rows come task by task (labels inside), then one OVERALL row per label.
    """
    leaderboard = load_leaderboard() if leaderboard is None else leaderboard
    seen: dict[tuple[str, int, str], Record] = {}
    for record in records:
        key = (record.label, record.seed, record.task)
        if key in seen:
            raise ValueError(f"two results for label {record.label!r}, seed {record.seed}, "
                             f"task {record.task}: {seen[key].path} and {record.path}; "
                             "give the runs different labels")
        seen[key] = record
    labels = list(dict.fromkeys(r.label for r in records))
    if tasks is not None:
        order = [(t.task, t.name, t.metric, t.folder) for t in tasks]
    else:
        first = {}
        for r in records:
            first.setdefault(r.task, (r.task, r.title or r.task, r.metric, r.folder))
        order = sorted(first.values(), key=lambda t: t[1].lower())
    rows: list[Row] = []
    per_label: dict[str, list[Row]] = {label: [] for label in labels}
    for task, title, metric, folder in order:
        best = leaderboard.get(task)
        for label in labels:
            group = sorted((r for r in records if r.label == label and r.task == task),
                           key=lambda r: r.seed)
            if not group:
                continue
            mean, std = mean_std([r.score for r in group])
            known = best is not None and best.metric == group[0].metric and best.best > 0
            row = Row(label=label, model=group[0].model, task=task, title=title,
                      metric=group[0].metric, mean=mean, std=std, n_seeds=len(group),
                      seeds=tuple(r.seed for r in group), scores=tuple(r.score for r in group),
                      best=best.best if known else None, best_model=best.model if known else "",
                      normalised=mean / best.best if known else None, folder=folder,
                      options=group[0].options)
            rows.append(row)
            per_label[label].append(row)
    for label in labels:
        done = per_label[label]
        if not done:
            continue
        normalised = [r.normalised for r in done if r.normalised is not None]
        rows.append(Row(
            label=label, model=done[0].model, task=OVERALL, title="Mean", metric="",
            mean=math.fsum(r.mean for r in done) / len(done), std=math.nan,
            n_seeds=max(r.n_seeds for r in done),
            seeds=tuple(sorted({s for r in done for s in r.seeds})),
            normalised=math.fsum(normalised) / len(normalised) if normalised else None,
            n_tasks=len(done), n_normalised=len(normalised), options=done[0].options))
    return rows
