"""``hear``: checkpoint to table in one command — embed, predict (several seeds), table.

    python -m encodecmae_hear hear --tasks-dir ~/hear/tasks --model runs/base/model.pt

Re-running resumes: finished embeddings and seeds are skipped. The table (results.md,
results.csv, results.png) covers every label under RUN_DIR, so runs of several
checkpoints or layers merge into one table.
"""
from __future__ import annotations

import argparse
import time

from . import hear_runner, hear_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    hear_runner.add_common(parser, seeds=True, predict=True)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where the table and plot go (default: RUN_DIR)")


def run(args: argparse.Namespace) -> int:
    start = time.time()
    plan = hear_runner.plan_from(args)
    tasks = hear_runner.select(plan)
    status = hear_runner.report("hear-embed", tasks, hear_runner.embed(plan, tasks))
    status |= hear_runner.report("hear-predict", tasks, hear_runner.predict(plan, tasks))
    table = argparse.Namespace(runs=[args.runs], out=args.out, suite=args.suite,
                               stem="results", no_plot=False)
    status |= hear_table.run(table)
    print(f"hear: {len(tasks)} task(s) in {time.time() - start:.0f} s")
    return status
