"""What a model keeps of a reference model, task by task: `hear-table --against LABEL`.

A student is judged against its teacher on every task, not only on the mean: a gain on
one task hides a loss on another in a mean. For each label and each task that both it
and the reference scored, the ratio is its mean score over the reference's mean score;
the worst task is the one with the lowest ratio. Beside them: the mean of the per-task
ratios and the ratio of the two means over the same tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from encodecmae_hear.evaluate.results import OVERALL, Row


@dataclass(frozen=True)
class Ratio:
    label: str
    task: str
    title: str
    score: float       # the label's mean score (fraction)
    reference: float   # the reference's mean score on the same task
    ratio: float       # score / reference


@dataclass(frozen=True)
class Kept:
    """One label against the reference over the tasks both scored."""
    label: str
    ratios: tuple[Ratio, ...]
    mean_ratio: float        # mean of the per-task ratios
    ratio_of_means: float    # the label's mean over those tasks / the reference's
    worst: Ratio


def task_ratios(rows: list[Row], reference: str) -> list[Kept]:
    """Every label but `reference` against it, in the rows' label order. Tasks where the
    reference scored 0 (or nan) have no ratio and are left out; a label with no task in
    common with the reference is left out. A reference with no rows is a ValueError."""
    cells = {(r.task, r.label): r for r in rows if r.task != OVERALL and not math.isnan(r.mean)}
    ref = {task: row for (task, label), row in cells.items() if label == reference}
    if not ref:
        labels = sorted({r.label for r in rows})
        raise ValueError(f"no scores of the reference {reference!r} (labels: {', '.join(labels)})")
    kept = []
    for label in dict.fromkeys(r.label for r in rows):
        if label == reference:
            continue
        ratios = tuple(Ratio(label, task, row.title, cells[(task, label)].mean, row.mean,
                             cells[(task, label)].mean / row.mean)
                       for task, row in ref.items() if (task, label) in cells and row.mean > 0)
        if not ratios:
            continue
        score, ref_score = math.fsum(r.score for r in ratios), math.fsum(r.reference for r in ratios)
        kept.append(Kept(label, ratios, mean_ratio=math.fsum(r.ratio for r in ratios) / len(ratios),
                         ratio_of_means=score / ref_score, worst=min(ratios, key=lambda r: r.ratio)))
    return kept


def markdown(rows: list[Row], reference: str) -> str:
    """A table: one line per task, one column per label, each cell score / reference in
    %; then the mean ratio, the ratio of the means and the worst task."""
    kept = task_ratios(rows, reference)
    out = [f"## Against `{reference}`", "",
           f"Each task: the label's mean score / `{reference}`'s mean score, in %. "
           "Mean of ratios: over the tasks both scored; ratio of means: the label's mean "
           f"over those tasks / `{reference}`'s; worst: the lowest ratio.", ""]
    if not kept:
        return "\n".join(out + ["No other label shares a task with it.", ""])
    tasks = list(dict.fromkeys((r.task, r.title) for k in kept for r in k.ratios))
    out.append("| Task | " + " | ".join(k.label for k in kept) + " |")
    out.append("|---|" + "---|" * len(kept))
    for task, title in tasks:
        line = [title]
        for k in kept:
            cell = next((r for r in k.ratios if r.task == task), None)
            line.append("—" if cell is None else f"{100 * cell.ratio:.1f}")
        out.append("| " + " | ".join(line) + " |")
    counts = [f"{len(k.ratios)} task" + ("" if len(k.ratios) == 1 else "s") for k in kept]
    out.append("| **Mean of ratios** | " + " | ".join(f"{100 * k.mean_ratio:.1f} ({n})"
                                                      for k, n in zip(kept, counts)) + " |")
    out.append("| **Ratio of means** | " + " | ".join(f"{100 * k.ratio_of_means:.1f}" for k in kept) + " |")
    out.append("| **Worst** | " + " | ".join(f"{100 * k.worst.ratio:.1f} ({k.worst.title})"
                                             for k in kept) + " |")
    return "\n".join(out) + "\n"
