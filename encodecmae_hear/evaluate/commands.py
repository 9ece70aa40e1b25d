"""The HEAR evaluation commands, each a thin layer over `runner`:

    python -m encodecmae_hear hear --tasks-dir ~/hear/tasks --model runs/base/model.pt
    python -m encodecmae_hear hear-validate --model runs/base/model.pt
    python -m encodecmae_hear hear-embed --tasks-dir ~/hear/tasks --suite paper6 \\
        --model runs/base/model.pt --options '{"layer": 5}'
    python -m encodecmae_hear hear-predict --tasks-dir ~/hear/tasks --seeds 3

`hear` runs embed, predict (several seeds) and the table in one go. Re-running resumes:
finished embeddings (RUN_DIR/<label>/embeddings/...) and seeds
(RUN_DIR/<label>/seed-<k>/<task_folder>/test.predicted-scores.json) are skipped unless
--force; a task whose folder is missing is reported and the others still run. The table
(results.md, results.csv, results.png) covers every label under RUN_DIR, so runs of
several checkpoints or layers merge into one table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

from encodecmae_hear.evaluate import runner, table


def _embed_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_common(parser)


def _embed(args: argparse.Namespace) -> int:
    plan = runner.plan_from(args)
    tasks = runner.select(plan)
    return runner.report("hear-embed", tasks, runner.embed(plan, tasks))


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_common(parser, seeds=True, predict=True)


def _predict(args: argparse.Namespace) -> int:
    plan = runner.plan_from(args)
    tasks = runner.select(plan)
    return runner.report("hear-predict", tasks, runner.predict(plan, tasks))


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", metavar="CKPT",
                        help="checkpoint file, or a bundled, local or published model name "
                             "(e.g. mel256-ec-base_st, fetched once) passed to load_model "
                             "(default: the bundled model)")
    parser.add_argument("--device", default="", help="cpu, cuda or cuda:N")
    parser.add_argument("--module", default=runner.MODULE, help="HEAR module to validate")


def _validate(args: argparse.Namespace) -> int:
    plan = runner.Plan(run_dir=Path("."), tasks_dir=Path("."), model=runner.model_file(args.model)[0],
                       device=args.device, module=args.module)
    return runner.validate(plan)


def _hear_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_common(parser, seeds=True, predict=True)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where the table and plot go (default: RUN_DIR)")


def _hear(args: argparse.Namespace) -> int:
    start = time.time()
    plan = runner.plan_from(args)
    tasks = runner.select(plan)
    status = runner.report("hear-embed", tasks, runner.embed(plan, tasks))
    status |= runner.report("hear-predict", tasks, runner.predict(plan, tasks))
    table_parser = argparse.ArgumentParser()
    table.add_arguments(table_parser)
    status |= table.run(table_parser.parse_args(
        ["--runs", str(args.runs)] + (["--out", str(args.out)] if args.out else [])
        + (["--suite", args.suite] if args.suite else [])))
    print(f"hear: {len(tasks)} task(s) in {time.time() - start:.0f} s")
    return status


# Command objects for cli.py: `add_arguments(parser)` and `run(args) -> exit status`.
embed = SimpleNamespace(add_arguments=_embed_arguments, run=_embed)
predict = SimpleNamespace(add_arguments=_predict_arguments, run=_predict)
validate = SimpleNamespace(add_arguments=_validate_arguments, run=_validate)
hear = SimpleNamespace(add_arguments=_hear_arguments, run=_hear)
