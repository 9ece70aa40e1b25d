"""Writing HEAR result tables (Markdown, CSV) and the bar plot from `results.summarise` rows."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from encodecmae_hear import files
from encodecmae_hear.evaluate.results import DPI, OVERALL, Row


def _pct(x: float) -> str:
    return "nan" if math.isnan(x) else f"{100 * x:.2f}"


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _split(rows: list[Row]) -> tuple[list[str], list[tuple[str, str]], dict, dict]:
    labels = list(dict.fromkeys(r.label for r in rows))
    tasks = list(dict.fromkeys((r.task, r.title) for r in rows if r.task != OVERALL))
    cells = {(r.task, r.label): r for r in rows if r.task != OVERALL}
    overall = {r.label: r for r in rows if r.task == OVERALL}
    return labels, tasks, cells, overall


def markdown(rows: list[Row], note: str = "") -> str:
    """Two Markdown tables (scores in %, normalised scores) and the list of runs; ``note``
    is a paragraph under the heading."""
    labels, tasks, cells, overall = _split(rows)
    seeds_of = {label: max((r.n_seeds for r in rows if r.label == label), default=0)
                for label in labels}
    out = ["# HEAR results", "",
           "Primary test score in %: mean ± sample std over seeds (std 0 for one seed); "
           "(n=k) marks a task with fewer seeds than the label's others. "
           "Best: leaderboard best where known.", ""] + ([note, ""] if note else [])
    out.append("| Task | Metric | Best | " + " | ".join(labels) + " |")
    out.append("|---|---|---|" + "---|" * len(labels))
    for task, title in tasks:
        present = [cells[(task, l)] for l in labels if (task, l) in cells]
        metric = present[0].metric if present else ""
        best = next((r for r in present if r.best is not None), None)
        best_text = f"{_pct(best.best)} ({best.best_model})" if best and best.best_model \
            else (_pct(best.best) if best else "")
        line = [title, metric, best_text]
        for label in labels:
            row = cells.get((task, label))
            if row is None:
                line.append("—")
                continue
            text = f"{_pct(row.mean)} ± {_pct(row.std)}"
            if row.n_seeds < seeds_of[label]:
                text += f" (n={row.n_seeds})"
            line.append(text)
        out.append("| " + " | ".join(line) + " |")
    mean_line = ["**Mean**", "", ""]
    for label in labels:
        row = overall.get(label)
        mean_line.append(f"{_pct(row.mean)} ({_tasks(row.n_tasks)})" if row else "—")
    out.append("| " + " | ".join(mean_line) + " |")
    worst_line = ["**Worst**", "", ""]
    for label in labels:
        row = worst(rows, label)
        worst_line.append(f"{_pct(row.mean)} ({row.title})" if row else "—")
    out.append("| " + " | ".join(worst_line) + " |")

    normalised_tasks = [(t, title) for t, title in tasks
                        if any(cells.get((t, l)) and cells[(t, l)].normalised is not None
                               for l in labels)]
    if normalised_tasks:
        out += ["", "Normalised score: mean / leaderboard best.", ""]
        out.append("| Task | " + " | ".join(labels) + " |")
        out.append("|---|" + "---|" * len(labels))
        for task, title in normalised_tasks:
            line = [title]
            for label in labels:
                row = cells.get((task, label))
                line.append(f"{row.normalised:.3f}" if row and row.normalised is not None
                            else "—")
            out.append("| " + " | ".join(line) + " |")
        line = ["**Mean**"]
        for label in labels:
            row = overall.get(label)
            line.append(f"{row.normalised:.3f} ({_tasks(row.n_normalised)})"
                        if row and row.normalised is not None else "—")
        out.append("| " + " | ".join(line) + " |")

    out += ["", "Runs:", ""]
    for label in labels:
        row = overall.get(label)
        seeds = ", ".join(str(s) for s in row.seeds) if row else ""
        options = json.dumps(row.options, sort_keys=True) if row and row.options else "{}"
        out.append(f"- `{label}`: model `{row.model if row else ''}`, options `{options}`, "
                   f"seeds {seeds}")
    return "\n".join(out) + "\n"


def worst(rows: list[Row], label: str) -> Row | None:
    """A label's weakest task: the lowest score against the leaderboard's best when every
    task has one, else the lowest score (a mean hides what a model lost)."""
    own = [r for r in rows if r.label == label and r.task != OVERALL and not math.isnan(r.mean)]
    if not own:
        return None
    if all(r.normalised is not None for r in own):
        return min(own, key=lambda r: r.normalised)
    return min(own, key=lambda r: r.mean)


CSV_COLUMNS = ("label", "model", "task", "title", "folder", "metric", "n_seeds", "seeds",
               "scores", "mean", "std", "best", "best_model", "normalised", "n_tasks",
               "n_normalised")


def to_csv(rows: list[Row]) -> str:
    """One line per (task, label) and per label's overall mean; scores as fractions."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([
            r.label, r.model, r.task, r.title, r.folder, r.metric, r.n_seeds,
            " ".join(str(s) for s in r.seeds), " ".join(repr(s) for s in r.scores),
            repr(r.mean), "" if math.isnan(r.std) else repr(r.std),
            "" if r.best is None else repr(r.best), r.best_model,
            "" if r.normalised is None else repr(r.normalised), r.n_tasks, r.n_normalised])
    return buffer.getvalue()


def write_tables(rows: list[Row], out_dir: str | Path, stem: str = "results",
                 note: str = "") -> dict[str, Path]:
    """Write ``<stem>.md`` (with ``note``) and ``<stem>.csv`` atomically.
    -> {"markdown": path, "csv": path}."""
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv"}
    files.write_bytes(paths["markdown"], markdown(rows, note).encode())
    files.write_bytes(paths["csv"], to_csv(rows).encode())
    return paths


def figure_size(n_tasks: int, n_labels: int) -> tuple[float, float]:
    """Figure size in inches for ``plot`` (pixels: times DPI)."""
    width = max(6.0, 1.5 + 0.15 * max(n_tasks, 1) * (max(n_labels, 1) + 1))
    return round(width, 2), 4.5


def plot(rows: list[Row], path: str | Path) -> Path:
    """Bar plot of the task rows: one group per task, one bar per label, error bars = std
    over seeds, a black tick at the leaderboard best where known. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # optional extra [hear]: on use
    from matplotlib.figure import Figure

    path = Path(path)
    labels, tasks, cells, _ = _split(rows)
    fig = Figure(figsize=figure_size(len(tasks), len(labels)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        xs, heights, errors = [], [], []
        for j, (task, _) in enumerate(tasks):
            row = cells.get((task, label))
            if row is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                heights.append(100 * row.mean)
                errors.append(100 * row.std)
        ax.bar(xs, heights, width=width, yerr=errors, capsize=2, label=label)
    labelled = False
    for j, (task, _) in enumerate(tasks):
        best = next((cells[(task, l)].best for l in labels
                     if (task, l) in cells and cells[(task, l)].best is not None), None)
        if best is not None:
            ax.hlines(100 * best, j - 0.45, j + 0.45, colors="black", linewidth=1.5,
                      label=None if labelled else "leaderboard best")
            labelled = True
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([title for _, title in tasks], rotation=35, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    tops = [100 * (r.mean + r.std) for r in cells.values() if not math.isnan(r.mean + r.std)]
    ax.set_ylim(0, max([100.0] + [t + 2 for t in tops]))
    ax.set_ylabel("test score (%)")
    fig.suptitle("HEAR: primary test score, mean ± std over seeds", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    if labels:
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=min(len(labels) + 1, 6), frameon=False)
    width_in, height_in = fig.get_size_inches()
    # rotated task names reach below the axes, and the first two left of them: make room
    longest_first = max([len(title) for _, title in tasks[:2]] + [0])
    longest = max([len(title) for _, title in tasks] + [0])
    left_in = min(max(0.7, 0.05 * longest_first), 0.3 * width_in)
    bottom_in = min(max(1.3, 0.047 * longest), 0.45 * height_in)
    fig.subplots_adjust(left=left_in / width_in, right=1 - 0.15 / width_in,
                        bottom=bottom_in / height_in, top=1 - 0.75 / height_in)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    files.write_bytes(path, buffer.getvalue())
    return path
