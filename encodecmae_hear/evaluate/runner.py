"""Drive the real HEAR 2021 runners (heareval 2021.1.3, hearvalidator 2021.0.6) as
subprocesses, through `compat`, with resumable steps and visible progress.

One evaluation run writes, per label (a model + options choice)::

    RUN_DIR/<label>/run.json                         model, options, module (for hear-table)
    RUN_DIR/<label>/embeddings/<module+opts>/<task_folder>/   heareval.embeddings.runner output
    RUN_DIR/<label>/seed-<k>/<task_folder>/          symlinks to those embeddings, plus what
                                                     heareval.predictions.runner writes there
                                                     (test.predicted-scores.json, ...)
    RUN_DIR/<label>/logs/<step>-<task_folder>.log    the runners' full output

A step is skipped when the runner's own marker exists (`.done.embeddings`,
`prediction-done.json`) unless `force`; a task folder missing under TASKS_DIR is
reported and the other tasks still run. Seed k reseeds heareval's downstream training
(see `compat`), so seeds differ only in the prediction step.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from encodecmae_hear import files
from encodecmae_hear.errors import UserError
from encodecmae_hear.evaluate import compat, suites
from encodecmae_hear.evaluate.suites import TaskConfig
from encodecmae_hear.locate import locate

MODULE = "encodecmae_hear"
EMBED_DONE = ".done.embeddings"
PREDICT_DONE = "prediction-done.json"
DEFAULT_GRID_POINTS = 8          # heareval's own default


@dataclass
class Plan:
    run_dir: Path
    tasks_dir: Path
    model: str = ""                    # "" = the module's bundled model
    options: dict = field(default_factory=dict)
    label: str = ""
    suite: str | None = None
    seeds: int = 3
    device: str = ""                   # "", "cpu", "cuda", "cuda:1"
    grid_points: int | None = None     # None: the task config's, else heareval's 8
    force: bool = False
    module: str = MODULE
    published: dict | None = None      # hub record of a published model (repo, file, commit, sha256)

    @property
    def label_dir(self) -> Path:
        return self.run_dir / (self.label or default_label(self.model, self.options))


def default_label(model: str, options: dict) -> str:
    """'default' for the bundled model, else the checkpoint's stem; plus k=v options."""
    name = Path(model).stem if model else "default"
    extra = "-".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{name}-{extra}" if extra else name


def parse_options(text: str | None) -> dict:
    options = json.loads(text) if text and text.strip() else {}
    if not isinstance(options, dict):
        raise ValueError(f"model options must be a JSON object, got {text!r}")
    return options


def runner_env(device: str) -> dict:
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    return env


def _run_logged(argv: list[str], log: Path, env: dict) -> int:
    """Run argv with stdout+stderr into `log`; -> exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write(" ".join(argv) + "\n")
        out.flush()
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def select(plan: Plan) -> list[tuple[TaskConfig, Path]]:
    """The suite's tasks that exist under tasks_dir; missing ones are reported. A tasks
    folder that does not exist, or holds none of the suite's tasks, is a UserError."""
    present, missing = suites.resolve(plan.suite, plan.tasks_dir)
    if not present and missing:
        where = (f"{plan.tasks_dir} holds none of them" if plan.tasks_dir.is_dir()
                 else f"{plan.tasks_dir} does not exist")
        raise UserError(
            f"no task folder of suite {plan.suite or 'default'} found: they are expected in "
            f"--tasks-dir / TASKS_DIR (e.g. {plan.tasks_dir / missing[0].folder}), and {where}; "
            f"unpack the HEAR 2021 tasks there, or write the synthetic suite with "
            f"`python -m encodecmae_hear synth-tasks --out {plan.tasks_dir}` and use --suite synthetic")
    for task in missing:
        print(f"MISSING {task.task}: no folder {plan.tasks_dir / task.folder} (skipped)",
              file=sys.stderr)
    return present


def write_run_json(plan: Plan) -> None:
    plan.label_dir.mkdir(parents=True, exist_ok=True)
    bundled = "bundled" if plan.module == MODULE else f"{plan.module} (its own)"
    data = {"label": plan.label_dir.name, "model": str(plan.model or bundled),
            "options": plan.options, "module": plan.module,
            **({"published": plan.published} if plan.published else {})}
    files.write_json(plan.label_dir / "run.json", data, indent=1)


def embedding_dir(plan: Plan, folder: str) -> Path | None:
    """Where heareval put this task's embeddings (it names the folder module+options)."""
    found = sorted((plan.label_dir / "embeddings").glob(f"*/{folder}"))
    return found[0] if found else None


def check_model(model: str) -> None:
    """A checkpoint file this package refuses ends here in one line (UserError), not in
    a traceback from the validator's process: `info` reads it in a subprocess (evaluation
    reaches models only through processes)."""
    done = subprocess.run([sys.executable, "-m", MODULE, "info", model],
                          capture_output=True, text=True)
    if done.returncode == 2:
        lines = done.stderr.strip().splitlines()
        raise UserError(lines[-1].removeprefix("info: error: ") if lines else f"cannot read {model}")


def validate(plan: Plan) -> int:
    if plan.module == MODULE:
        check_model(plan.model)
    argv = [*compat.command("hearvalidator.validate", plan.module),
            *(["--model", plan.model] if plan.model else []),
            *(["--device", plan.device] if plan.device else [])]
    if plan.options:
        print("hear-validate: hear-validator takes no model options; validating defaults")
    return subprocess.run(argv, env=runner_env(plan.device)).returncode


def embed(plan: Plan, tasks: list[tuple[TaskConfig, Path]]) -> list[str]:
    """Embed every task (skipping finished ones); -> names of tasks that failed."""
    write_run_json(plan)
    failed = []
    bar = tqdm(tasks, desc="embed", unit="task")
    for task, folder in bar:
        bar.set_postfix_str(task.task)
        done = embedding_dir(plan, task.folder)
        if done is not None and (done / EMBED_DONE).exists():
            if not plan.force:
                tqdm.write(f"skip embed {task.task}: done ({done})")
                continue
            shutil.rmtree(done)
        log = plan.label_dir / "logs" / f"embed-{task.folder}.log"
        argv = [*compat.command(
            "heareval.embeddings.runner", plan.module, "--tasks-dir", folder.parent,
            "--task", folder.name, "--embeddings-dir", plan.label_dir / "embeddings",
            "--model-options", json.dumps(plan.options)),
            *(["--model", str(plan.model)] if plan.model else [])]
        start = time.time()
        status = _run_logged(argv, log, runner_env(plan.device))
        if status != 0:
            failed.append(task.task)
            tqdm.write(f"FAILED embed {task.task} (exit {status}), log {log}:\n{_tail(log)}")
        else:
            tqdm.write(f"embedded {task.task} in {time.time() - start:.1f} s")
    return failed


def _link_embeddings(source: Path, target: Path) -> None:
    """Seed folder = symlinks to the (shared, read-only) embedding files."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        link = target / item.name
        if item.name.startswith(".") or link.exists() or link.is_symlink():
            continue
        link.symlink_to(item.resolve(), target_is_directory=item.is_dir())


def predict(plan: Plan, tasks: list[tuple[TaskConfig, Path]]) -> list[str]:
    """Downstream training and scoring for every task and seed; -> failed tasks."""
    write_run_json(plan)
    failed = []
    jobs = [(seed, task) for task, _ in tasks for seed in range(plan.seeds)]
    bar = tqdm(jobs, desc="predict", unit="run")
    for seed, task in bar:
        bar.set_postfix_str(f"{task.task} seed {seed}")
        source = embedding_dir(plan, task.folder)
        if source is None or not (source / EMBED_DONE).exists():
            if task.task not in failed:
                failed.append(task.task)
                tqdm.write(f"FAILED predict {task.task}: not embedded yet (run hear-embed)")
            continue
        target = plan.label_dir / f"seed-{seed}" / task.folder
        if (target / PREDICT_DONE).exists():
            if not plan.force:
                tqdm.write(f"skip predict {task.task} seed {seed}: done")
                continue
            shutil.rmtree(target)
        elif target.exists():
            shutil.rmtree(target)   # an interrupted run: start this seed again
        _link_embeddings(source, target)
        points = plan.grid_points or task.grid_points or DEFAULT_GRID_POINTS
        log = plan.label_dir / "logs" / f"predict-{task.folder}-seed{seed}.log"
        argv = compat.command("heareval.predictions.runner", target, "--grid", "default",
                                   "--grid-points", str(points))
        env = runner_env(plan.device)
        env[compat.SEED_ENV] = str(seed)
        start = time.time()
        status = _run_logged(argv, log, env)
        if status != 0:
            failed.append(task.task)
            tqdm.write(f"FAILED predict {task.task} seed {seed} (exit {status}), "
                       f"log {log}:\n{_tail(log)}")
        else:
            tqdm.write(f"predicted {task.task} seed {seed} in {time.time() - start:.1f} s")
    return failed


# ---------------------------------------------------------------- command-line glue

def add_common(parser, *, seeds: bool = False, predict: bool = False) -> None:
    parser.add_argument("--model", default="", metavar="CKPT",
                        help="checkpoint file, or a bundled, local or published model name "
                             "(e.g. mel256-ec-base_st, fetched once) passed to load_model "
                             "(default: the bundled model)")
    parser.add_argument("--options", default="{}", metavar="JSON",
                        help="load_model options, e.g. '{\"layer\": 5}' (heareval --model-options)")
    parser.add_argument("--tasks-dir", default="tasks", metavar="DIR",
                        help="folder holding the HEAR task folders (esc50-v2.0.0-full, ...)")
    parser.add_argument("--suite", default=None,
                        help=f"task selection from eval_configs/suites.json: {suites.suites_for_help()} "
                             "(none given: the file's default)")
    parser.add_argument("--runs", default="runs/hear", metavar="RUN_DIR",
                        help="results folder; each model/options label gets a subfolder")
    parser.add_argument("--label", default="",
                        help="name of this model in tables (default: checkpoint stem + options)")
    parser.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: GPU if any)")
    parser.add_argument("--module", default=MODULE, help="HEAR module to evaluate")
    parser.add_argument("--force", action="store_true",
                        help="redo steps that are already done")
    if seeds:
        parser.add_argument("--seeds", type=int, default=3,
                            help="downstream training runs per task (seeds 0..N-1)")
    if predict:
        parser.add_argument("--grid-points", type=int, default=None,
                            help="heareval grid points per task (default: the task config's, "
                                 f"else {DEFAULT_GRID_POINTS})")


def model_file(model: str) -> tuple[str, dict | None]:
    """heareval and hear-validator take a file: a model name (local, bundled or published,
    locate.py) becomes its path, fetched first if it is published. -> (path, hub record)."""
    if not model or Path(model).exists():
        return model, None
    located = locate(model)
    return str(located.path), located.published


def plan_from(args) -> Plan:
    options = parse_options(args.options)
    model, published = model_file(args.model)
    label = args.label or (default_label(args.model.replace("/", "-"), options) if published else "")
    return Plan(run_dir=Path(args.runs), tasks_dir=Path(args.tasks_dir), model=model,
                options=options, label=label, suite=args.suite,
                seeds=getattr(args, "seeds", 3), device=args.device,
                grid_points=getattr(args, "grid_points", None), force=args.force,
                module=args.module, published=published)


def report(step: str, tasks: list, failed: list[str]) -> int:
    ok = len(tasks) - len(failed)
    print(f"{step}: {ok} of {len(tasks)} task(s) done"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed or not tasks else 0
