"""``hear-embed``: embeddings of every task of a suite with heareval's embedding runner.

    python -m encodecmae_hear hear-embed --tasks-dir ~/hear/tasks --suite paper6 \\
        --model runs/base/model.pt --options '{"layer": 5}'

Output: RUN_DIR/<label>/embeddings/...; a task already embedded is skipped (--force redoes
it); a task whose folder is missing is reported and the others still run.
"""
from __future__ import annotations

import argparse

from . import hear_runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    hear_runner.add_common(parser)


def run(args: argparse.Namespace) -> int:
    plan = hear_runner.plan_from(args)
    tasks = hear_runner.select(plan)
    return hear_runner.report("hear-embed", tasks, hear_runner.embed(plan, tasks))
