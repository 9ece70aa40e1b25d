"""What a user installs is what we test: the wheel, in a fresh venv, driven by the HEAR
tools exactly as their docs give them. Run by `make test` (and `make wheel-check`):

1. build: `pip wheel --no-deps` from a copy of this checkout's files (tracked and new,
   not ignored: what a clone would hold), as `pip install .` or `pip install git+URL` do;
2. venv: a fresh one outside the checkout; the wheel (+ its `hear` extra) pinned by
   constraints.txt, then the HEAR tools by tools/install_hear_tools.py (make install's recipe);
3. from a folder outside the checkout, with no PYTHONPATH and no ENCODECMAE_* overrides:
   `hear-validator encodecmae_hear` (the bundled default model) and
   `hear-validator encodecmae_hear.mobile_hear` (the bundled student); `load_model()` without a
   path, whose checkpoint, task configs and shims must come from the installed package;
   `python -m encodecmae_hear synth-tasks`; `python -m heareval.embeddings.runner
   encodecmae_hear` on that suite (embedding files for every split); and
   `python -m heareval.predictions.runner` on the event task's embeddings, which needs
   the fixes that the venv's .pth file installs (pytorch-lightning, torch >= 2.6).

    python tools/wheel_check.py [--keep]     # times each step; exit 1 at the first failure

Every step's output goes to WORK/logs/; WORK (a temporary folder) is removed after a
pass unless --keep, and kept after a failure.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
EVENT_TASK = "synthetic_onsets"
SUITE = ("synthetic_scene_kfold", EVENT_TASK)
# Python compiles the modules that the checks import when they first do; compiling every
# installed file (torch's thousands) would double the CPU time of the install steps.
PIP_OPTIONS = ["--no-compile"]
# Inside the fresh venv: the HEAR API on the bundled model, and where the package's files are.
PROBE = """
import json, torch
import encodecmae_hear as E
from encodecmae_hear import paths
from encodecmae_hear.evaluate import results, suites
model = E.load_model()
emb, ts = E.get_timestamp_embeddings(torch.rand(2, model.sample_rate) * 2 - 1, model)
scene = E.get_scene_embeddings(torch.rand(1, model.sample_rate // 2) * 2 - 1, model)
print(json.dumps({
    "files": [str(p) for p in (E.__file__, paths.BUNDLED_CHECKPOINT, paths.EVAL_CONFIGS,
                               paths.SHIM_DIR / "tensorflow" / "__init__.py",
                               paths.SHIM_DIR / "encodecmae_hear_fixes.py", results.LEADERBOARD)],
    "installed": paths.INSTALLED, "timestamp_embeddings": list(emb.shape),
    "timestamps": list(ts.shape), "scene": list(scene.shape),
    "synthetic_suite": [t.task for t in suites.load_suite("synthetic")],
    "leaderboard_tasks": len(results.load_leaderboard())}))
"""


class CheckFailed(Exception):
    pass


class Check:
    def __init__(self, work: Path):
        self.work = work
        self.venv = work / "venv"
        self.cwd = work / "run"                          # outside the checkout
        self.logs = work / "logs"
        self.env = {k: v for k, v in os.environ.items()
                    if k != "PYTHONPATH" and not k.startswith("ENCODECMAE_")}
        self.env.pop("VIRTUAL_ENV", None)
        self.times: list[tuple[str, float]] = []

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, name: str, argv: list, expect: str = "", cwd: Path | None = None) -> str:
        """Run argv with its output in logs/NAME.log; -> the output. Fails on a non-zero
        exit status or when `expect` is missing from the output."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        start = time.time()
        with open(log, "w") as out:
            status = subprocess.run([str(a) for a in argv], cwd=cwd or self.cwd, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.time() - start
        self.times.append((name, seconds))
        output = log.read_text(errors="replace")
        tail = "\n".join(output.splitlines()[-25:])
        if status != 0:
            raise CheckFailed(f"{name}: exit status {status} ({log}):\n{tail}")
        if expect not in output:
            raise CheckFailed(f"{name}: {expect!r} not in its output ({log}):\n{tail}")
        print(f"  ok  {name:<12} {seconds:6.1f} s", flush=True)
        return output

    def inside_venv(self, path: str) -> bool:
        return Path(path).resolve().is_relative_to(self.venv.resolve())


def source_copy(dest: Path) -> Path:
    """The checkout's files that a clone (plus local edits) would hold, copied to dest."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        raise CheckFailed(f"{ROOT} must be a git checkout (git ls-files lists what a clone "
                          f"holds): {listed.stderr.decode(errors='replace').strip()}")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():                             # a deleted, not yet committed file: gone
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def check_probe(check: Check, output: str) -> None:
    found = json.loads(output.strip().splitlines()[-1])
    outside = [p for p in found["files"] if not check.inside_venv(p)]
    if outside or not found["installed"]:
        raise CheckFailed(f"load_model: files read from outside the venv: {outside}")
    missing = [p for p in found["files"] if not Path(p).exists()]
    if missing:
        raise CheckFailed(f"load_model: the installed package lacks {missing}")
    if sorted(found["synthetic_suite"]) != sorted(SUITE) or not found["leaderboard_tasks"]:
        raise CheckFailed(f"load_model: task configs or leaderboard wrong: {found}")
    print(f"      embeddings {found['timestamp_embeddings']}, scene {found['scene']}, "
          f"files from {check.venv}")


def file_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def check_embeddings(emb_dir: Path) -> Path:
    """heareval's output for both tasks, every split; -> the event task's folder."""
    for task in SUITE:
        folder = emb_dir / "encodecmae_hear" / task
        splits = json.loads((folder / "task_metadata.json").read_text())["splits"] \
            if (folder / "task_metadata.json").exists() else []
        if not splits or not (folder / ".done.embeddings").exists():
            raise CheckFailed(f"heareval's embedding runner left no finished {folder}")
        empty = [s for s in splits if not file_size(folder / f"{s}.embeddings.npy")]
        if empty:
            raise CheckFailed(f"{folder}: no embeddings for split(s) {empty}")
    return emb_dir / "encodecmae_hear" / EVENT_TASK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder after a pass")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="encodecmae_hear-wheel-"))
    check = Check(work)
    start = time.time()
    print(f"wheel check in {work}")
    try:
        dist, tasks, emb = work / "dist", work / "run" / "tasks", work / "run" / "embeddings"
        src = source_copy(work / "src")
        check.run("build", [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, "."],
                  cwd=src)
        wheel = next(dist.glob("encodecmae_hear-*.whl"))
        check.run("venv", [sys.executable, "-m", "venv", check.venv])
        check.run("install", [check.python, "-m", "pip", "install", "-q", *PIP_OPTIONS,
                              "-c", CONSTRAINTS, f"encodecmae_hear[hear] @ {wheel.as_uri()}"])
        check.run("hear-tools", [check.python, ROOT / "tools" / "install_hear_tools.py",
                                 *PIP_OPTIONS])
        check.run("validator", [check.venv / "bin" / "hear-validator", "encodecmae_hear"],
                  expect="Looks good!")
        check.run("validator-mobile", [check.venv / "bin" / "hear-validator",
                                       "encodecmae_hear.mobile_hear"], expect="Looks good!")
        check_probe(check, check.run("load_model", [check.python, "-c", PROBE]))
        check.run("synth-tasks", [check.python, "-m", "encodecmae_hear", "synth-tasks",
                                  "--out", tasks, "--scale", "0", "--epochs", "10"])
        check.run("embed", [check.python, "-m", "heareval.embeddings.runner", "encodecmae_hear",
                            "--tasks-dir", tasks, "--embeddings-dir", emb])
        event = check_embeddings(emb)
        check.run("predict", [check.python, "-m", "heareval.predictions.runner", event,
                              "--grid-points", "1"])
        scores = json.loads((event / "test.predicted-scores.json").read_text())
        print(f"      {EVENT_TASK} test score {scores['test']['test_score']:.3f}")
    except (CheckFailed, subprocess.CalledProcessError, StopIteration, OSError, KeyError) as err:
        print(f"FAILED wheel check: {err}\nwork folder kept: {work}", file=sys.stderr)
        return 1
    steps = ", ".join(f"{name} {seconds:.0f}" for name, seconds in check.times)
    print(f"wheel check passed in {time.time() - start:.0f} s ({steps} s)")
    if not args.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
