"""One row per training recipe: pooling the runs of a recipe trained with several seeds.

An ablation trains each recipe several times, labelled ``<recipe>-seed<N>``, and scores
every trained model over several heareval seeds. Pooled, a trained model's score on a
task is its mean over heareval seeds, and the recipe's row is the mean ± sample std of
those over its training seeds: the spread that says whether two recipes differ.
Labels without ``-seed<N>`` stay as they are (± over heareval seeds).
"""
from __future__ import annotations

import math
import re
from dataclasses import replace

from encodecmae_hear.evaluate.results import Record

TRAINING_SEED = re.compile(r"^(?P<recipe>.+)-seed(?P<seed>\d+)$")
NOTE = ("Training seeds pooled: a label `<recipe>-seed<N>` is one trained model; its score "
        "on a task is its mean over heareval seeds, and the recipe's cell is the mean ± "
        "sample std of those over training seeds (the seeds listed under Runs). Labels "
        "without `-seed<N>` keep ± over heareval seeds.")


def pool(records: list[Record]) -> list[Record]:
    """Replace the records of every ``<recipe>-seed<N>`` label by one record per training
    seed and task (label ``<recipe>``, seed N, score = mean over heareval seeds).

    The pooled records take the place of their recipe's first record, so labels keep their
    order of first appearance; their ``model`` lists the recipe's models by training seed.
    """
    groups: dict[tuple[str, int, str], list[Record]] = {}
    models: dict[str, dict[int, str]] = {}
    for record in records:
        match = TRAINING_SEED.match(record.label)
        if match is None:
            continue
        recipe, seed = match["recipe"], int(match["seed"])
        groups.setdefault((recipe, seed, record.task), []).append(record)
        models.setdefault(recipe, {})[seed] = record.model
    model_list = {recipe: ", ".join(m for _, m in sorted(by_seed.items()))
                  for recipe, by_seed in models.items()}

    pooled: list[Record] = []
    placed: set[str] = set()
    for record in records:
        match = TRAINING_SEED.match(record.label)
        if match is None:
            pooled.append(record)
            continue
        recipe = match["recipe"]
        if recipe in placed:
            continue
        placed.add(recipe)
        for (name, seed, _task), group in sorted(groups.items(),
                                                 key=lambda item: (item[0][2], item[0][1])):
            if name != recipe:
                continue
            pooled.append(replace(
                group[0], label=recipe, seed=seed, model=model_list[recipe],
                score=math.fsum(r.score for r in group) / len(group),
                fold_std=None, path=", ".join(r.path for r in group)))
    return pooled
