"""The two training runs of the GPU check, through the package's own commands:

- train_run: `pretrain` with the bundled default's recipe;
- distill_run: `distill` of the mobile student from the bundled default, one run per
  student width of the stage's sizes, side by side on the one device.

Each run goes until its steps or the stage's time (then SIGTERM: the loop finishes its
step, saves and exits 143), is released with `bundle --half` as OUT/<stage>/.../model.pt
and reports its figures from metrics.jsonl. Step checkpoints stay in a scratch folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from encodecmae_hear import files
from encodecmae_hear.cli import main as cli_main
from encodecmae_hear.model.config import SAMPLE_RATE
from gpu_check.stages import GPU, SMOKE

ROOT = Path(__file__).resolve().parent.parent
# The bundled default's recipe: recipes.mk's DEFAULT_PRETRAIN (a test keeps the two equal).
RECIPE = ("--preset", "mini", "--frontend", "mel256", "--batch-size", "16", "--targets", "mel-kmeans",
          "--clusters", "512", "--lr", "5e-4", "--warmup-steps", "200", "--schedule", "cosine",
          "--checkpoint-every", "200", "--log-every", "25")
# The bundled student's recipe (recipes.mk MOBILE_RECIPE, checkpoints/MOBILE.md) less its
# batch, warm-up, workers and checkpoint interval, which the stage's sizes set for the device.
STUDENT_RECIPE = ("--lr", "1e-3", "--schedule", "cosine", "--checkpoint-every", "250", "--log-every", "25")
STOP_MARGIN_S = {True: 15, False: 30}  # smoke: time kept to stop the runs and bundle them


def generated_audio(folder: Path, count: int, seconds: float) -> Path:
    """`count` files of tone mixtures with noise (24 kHz mono), for want of a corpus."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        x = sum(np.sin(2 * np.pi * f * t + rng.random() * 6.28) for f in 100 + 3000 * rng.random(3)) / 6
        x = x * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 3) * t)) + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"{i:03d}.wav", x.astype(np.float32), SAMPLE_RATE)
    return folder


def child_env() -> dict:
    """This process' environment with the checkout first on PYTHONPATH (what was on it
    stays: packages installed beside the checkout, as on a bare GPU machine)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_until(commands: list[list[str]], logs: list[Path], deadline: float) -> list[dict]:
    """Starts every command at once, as training processes sharing the node's CPUs
    (LOCAL_WORLD_SIZE, as torchrun says it); each one still running at the deadline gets
    SIGTERM."""
    env = {**child_env(), "LOCAL_WORLD_SIZE": str(len(commands))}
    start = time.time()
    with contextlib.ExitStack() as stack:
        procs = [subprocess.Popen(command, stdout=stack.enter_context(open(log, "w")),
                                  stderr=subprocess.STDOUT, env=env, cwd=ROOT)
                 for command, log in zip(commands, logs)]
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(1)
        stopped = [p.poll() is None for p in procs]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return [{"stopped_by_budget": s, "returncode": p.returncode, "wall_s": round(time.time() - start, 1),
             "started": start} for s, p in zip(stopped, procs)]


def release(run_dir: Path, folder: Path, outcome: dict, hardware: str, log_name: str) -> dict:
    """Keeps the run's logs in `folder`, bundles its newest step as folder/model.pt."""
    for name in ("metrics.jsonl", "train.log", "manifest.jsonl"):
        if (run_dir / name).is_file():
            files.write_bytes(folder / name, (run_dir / name).read_bytes())
    record = {k: v for k, v in outcome.items() if k != "started"}
    if outcome["returncode"] not in (0, 143):
        record["status"], record["error"] = "failed", tail(folder / log_name)
    if list(run_dir.glob("step-*.pt")):  # in this process: one Python start-up less
        with open(folder / "bundle.log", "w") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            status = cli_main(["bundle", str(run_dir), "-o", str(folder / "model.pt"), "--half",
                               "--allow-unfinished", "--hardware", hardware])
        if status != 0 and "status" not in record:
            record["status"], record["error"] = "failed", tail(folder / "bundle.log")
    elif "status" not in record:
        record["status"], record["error"] = "failed", "no step checkpoint: stopped before the first step"
    record["figures"] = run_figures(folder / "metrics.jsonl", outcome["started"])
    if (folder / "model.pt").is_file():
        record["checkpoint_mb"] = round((folder / "model.pt").stat().st_size / 2**20, 2)
    return record


def train_run(out: Path, smoke: bool, allotted: float, data: str | None, work: str | None,
              hardware: str) -> dict:
    """`pretrain` with the bundled default's recipe; OUT/train_run/model.pt."""
    sizes = (SMOKE if smoke else GPU)["train_run"]
    deadline = time.time() + allotted - STOP_MARGIN_S[smoke]
    folder = out / "train_run"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        run_dir = Path(scratch) / "run"
        if data is None:
            data = str(generated_audio(Path(scratch) / "audio", sizes["files"], sizes["file_seconds"]))
        command = [sys.executable, "-m", "encodecmae_hear", "pretrain", "--data", data,
                   "--out", str(run_dir), *RECIPE, *sizes["extra"], "--steps", str(sizes["steps"])]
        record = {"command": " ".join(command[1:]), "data": data,
                  "generated_audio": data.startswith(scratch), "target_steps": sizes["steps"]}
        (outcome,) = run_until([command], [folder / "pretrain.log"], deadline)
        run = release(run_dir, folder, outcome, hardware, "pretrain.log")
    record.update({k: v for k, v in run.items() if k != "figures"}, results=run["figures"])
    if (folder / "model.pt").is_file():
        record["checkpoint"] = "train_run/model.pt"
    return record


def distill_run(out: Path, smoke: bool, allotted: float, data: str | None, work: str | None,
                hardware: str) -> dict:
    """`distill` from the bundled default, one student per width in sizes["presets"], side
    by side; OUT/distill_run/<preset>/model.pt."""
    sizes = (SMOKE if smoke else GPU)["distill_run"]
    deadline = time.time() + allotted - STOP_MARGIN_S[smoke]
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        if data is None:
            data = str(generated_audio(Path(scratch) / "audio", sizes["files"], sizes["file_seconds"]))
        commands, folders = [], []
        for name in sizes["presets"]:
            folders.append(out / "distill_run" / name)
            folders[-1].mkdir(parents=True, exist_ok=True)
            commands.append([sys.executable, "-m", "encodecmae_hear", "distill", "--data", data,
                             "--out", str(Path(scratch) / name), "--preset", name, *STUDENT_RECIPE,
                             *sizes["extra"], "--steps", str(sizes["steps"])])
        outcomes = run_until(commands, [f / "distill.log" for f in folders], deadline)
        runs = [release(Path(scratch) / name, folder, outcome, hardware, "distill.log")
                for name, folder, outcome in zip(sizes["presets"], folders, outcomes)]
    record = {"data": data, "generated_audio": data.startswith(scratch), "target_steps": sizes["steps"],
              "results": [{"preset": name, "command": " ".join(command[1:]), **run}
                          for name, command, run in zip(sizes["presets"], commands, runs)]}
    failed = [r for r in record["results"] if r.get("status") == "failed"]
    if failed:
        record["status"] = "failed" if len(failed) == len(runs) else "partial"
        record["error"] = "; ".join(f"{r['preset']}: {r['error']}" for r in failed)
    return record


def tail(path: Path, lines: int = 6) -> str:
    """The last lines of a log, joined into one (for results.json)."""
    if not path.is_file():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def run_figures(metrics_file: Path, start: float) -> dict:
    """Steps, speed and the first and last losses of a run's metrics.jsonl; the last
    masked accuracy (pretrain) or frame cosine to the teacher (distill)."""
    if not metrics_file.is_file():
        return {}
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    rates = sorted(r["steps_per_s"] for r in rows)
    last = rows[-1]
    figures = {"steps": last["step"], "first_log_after_s": round(rows[0]["time"] - start, 1),
               "steps_per_s_median": round(rates[len(rates) // 2], 3),
               "samples_per_s_median": round(sorted(r["samples_per_s"] for r in rows)[len(rows) // 2], 1),
               "loss_first": round(rows[0]["loss"], 4), "loss_last": round(last["loss"], 4),
               "audio_hours_seen": round(last["audio_hours_seen"], 3)}
    for key in ("masked_accuracy", "cosine"):
        if key in last:
            figures[f"{key}_last"] = round(last[key], 4)
    return figures
