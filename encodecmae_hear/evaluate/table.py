"""``hear-table``: one results table (Markdown, CSV) and bar plot from HEAR result folders.

    python -m encodecmae_hear hear-table --runs runs/hear/base runs/hear/large --out table/

Each RUN_DIR holds ``<label>/seed-<k>/<task_folder>/test.predicted-scores.json`` (see
``results``); labels from several RUN_DIRs appear side by side. Results of HEAR tasks
also go to ``results.leaderboard.csv``, rows in the HEAR leaderboard's layout
(``submission``). ``--by-training-seed`` pools labels ``<recipe>-seed<N>`` into one row
per recipe (see ``training_seeds``).
``--against LABEL`` adds, per task, each other label's score over LABEL's, the mean of
those ratios and the worst task (``ratios``), to the output and ``<stem>.ratios.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from encodecmae_hear.errors import UserError
from encodecmae_hear import files
from encodecmae_hear.evaluate import ratios, report, results, submission, suites, training_seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR",
                        help="results folders: RUN_DIR/<label>/seed-<k>/<task_folder>/"
                             "test.predicted-scores.json")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where results.md, results.csv and results.png go "
                             "(default: the first RUN_DIR)")
    parser.add_argument("--suite", default=None,
                        help="restrict the table to this suite's tasks, in its order "
                             f"({suites.suites_for_help()}); default: every task found")
    parser.add_argument("--stem", default="results", help="file name stem of the outputs")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only")
    parser.add_argument("--by-training-seed", action="store_true",
                        help="one row per recipe: labels <recipe>-seed<N> are models trained "
                             "with seed N; each scores its mean over heareval seeds and the "
                             "table gives mean ± std over training seeds")
    parser.add_argument("--against", default=None, metavar="LABEL",
                        help="also give every other label's score / LABEL's per task, the "
                             "mean of those ratios and the worst task (e.g. a student against "
                             "its teacher)")


def run(args: argparse.Namespace) -> int:
    records = []
    for run_dir in args.runs:
        try:
            records += results.collect(run_dir)
        except FileNotFoundError as err:
            raise UserError(str(err)) from None
    if not records:
        print(f"hear-table: no {results.SCORES_FILE} found under "
              f"{', '.join(args.runs)} (layout: RUN_DIR/<label>/seed-<k>/<task_folder>/"
              f"{results.SCORES_FILE})", file=sys.stderr)
        return 1
    try:
        tasks = suites.load_suite(args.suite) if args.suite else None
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise UserError(str(err)) from None
    note = ""
    if args.by_training_seed:
        records, note = training_seeds.pool(records), training_seeds.NOTE
    rows = results.summarise(records, tasks=tasks)
    if tasks is not None:
        found = {r.task for r in rows}
        absent = [t.task for t in tasks if t.task not in found]
        if absent:
            print(f"hear-table: no results for {len(absent)} task(s) of suite "
                  f"{args.suite}: {', '.join(absent)}", file=sys.stderr)
    if not any(r.task != results.OVERALL for r in rows):
        print("hear-table: none of the results belong to the chosen suite", file=sys.stderr)
        return 1
    out = Path(args.out or args.runs[0])
    kept = None
    if args.against:
        try:
            kept = ratios.markdown(rows, args.against)
        except ValueError as err:
            raise UserError(f"--against: {err}") from None
    paths = report.write_tables(rows, out, stem=args.stem, note=note)
    if kept is not None:
        paths["ratios"] = out / f"{args.stem}.ratios.md"
        files.write_text(paths["ratios"], kept)
    leaderboard = submission.leaderboard_csv(rows, submission.urls(args.runs))
    if leaderboard is not None:
        paths["leaderboard"] = out / f"{args.stem}.leaderboard.csv"
        files.write_text(paths["leaderboard"], leaderboard)
    if not args.no_plot:
        paths["plot"] = report.plot(rows, out / f"{args.stem}.png")
    print(report.markdown(rows, note))
    if kept is not None:
        print(kept)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
