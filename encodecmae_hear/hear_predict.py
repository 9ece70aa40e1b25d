"""``hear-predict``: heareval's downstream training and test scores, once per seed.

    python -m encodecmae_hear hear-predict --tasks-dir ~/hear/tasks --seeds 3

Needs hear-embed first (same --model/--options/--label). Output:
RUN_DIR/<label>/seed-<k>/<task_folder>/test.predicted-scores.json; a finished seed is
skipped (--force redoes it).
"""
from __future__ import annotations

import argparse

from . import hear_runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    hear_runner.add_common(parser, seeds=True, predict=True)


def run(args: argparse.Namespace) -> int:
    plan = hear_runner.plan_from(args)
    tasks = hear_runner.select(plan)
    return hear_runner.report("hear-predict", tasks, hear_runner.predict(plan, tasks))
