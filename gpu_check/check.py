"""The GPU figures in one prepared run (not a test): `make gpu-check`, or, from the checkout,

    python -m gpu_check [--out DIR] [--data SHARDS] [--budget 510] [--stages a,b] [--cpu-smoke]

Five stages, each under its own time budget and in its own subprocess, so that a
crash, an out-of-memory or a hang in one keeps the figures of the others; results.json
and summary.md are rewritten (atomically) after every stage:

1. embed: HEAR embedding speed (real-time factor) of small and base, mel256 and encodec
   frontends, fp32 and bf16, on 60 s of audio through `load_model(dtype=...)` +
   `get_timestamp_embeddings`, with the cosine of the bf16 embeddings to the fp32 ones.
   Untrained weights: speed does not depend on them.
2. embed_files: the `embed` command end to end, 16 kHz WAV files on disk to .npy files
   on disk, small and base (mel256, bf16): 1 s clips, 10 s clips and 10-minute files,
   after a warm-up run; real-time factor with and without the model load, and MFU
   (FLOPs of the window forward over the device's bf16 peak).
3. train_speed: pretraining optimizer steps/s, samples/s, MFU and peak GPU memory of small
   and base at batch 128 x 4 s crops, bf16 autocast, eager and with torch.compile of the
   two Transformer stacks (as `pretrain --compile`); the step of the train loop
   (forward, mel-kmeans targets of 512 clusters, loss, backward, clipping, AdamW),
   timed after warm-up steps on a batch already on the device (no data loading).
4. train_run: the bundled default's recipe (gpu_check/runs.py RECIPE, recipes.mk's
   DEFAULT_PRETRAIN) through `python -m encodecmae_hear pretrain` on --data (e.g. the
   packed corpus' tar shards, `make corpus`) or else on generated audio; stopped with
   SIGTERM when its budget ends (the loop saves a checkpoint), then released with
   `bundle --half` as OUT/train_run/model.pt beside its metrics.jsonl and train.log.
5. distill_run: the mobile student (`python -m encodecmae_hear distill`, the bundled
   default as teacher, batch 64) at the widths mobile-quarter and mobile-tiny side by
   side, on the same data, stopped and released the same way as
   OUT/distill_run/<width>/model.pt.

Unused time of a stage goes to the next. --stages runs some of them (a rerun after a
fix), the budget shared among those in proportion to their shares. Output folder:
--out, else $OUT, else runs/gpu-check. Without CUDA, or with --cpu-smoke, the same
stages run at toy sizes (tiny preset, seconds of audio, a few steps on CPU) in well
under a minute: that is how the tests run this script.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from encodecmae_hear import files
from encodecmae_hear.train.provenance import git_commit
from gpu_check import runs as gpu_runs
from gpu_check import stages as gpu_stages
from gpu_check.summary import summary

ROOT = Path(__file__).resolve().parent.parent

STAGES = ("embed", "embed_files", "train_speed", "train_run", "distill_run")
TRAINING_RUNS = ("train_run", "distill_run")  # in this process, through gpu_check/runs.py


def save(out: Path, results: dict) -> None:
    files.write_json(out / "results.json", results, indent=1)
    files.write_text(out / "summary.md", summary(results))


def child_stage(name: str, out: Path, smoke: bool, allotted: float) -> dict:
    """Runs stage `name` in a subprocess that writes its figures case by case to a stage
    file; a hang is killed at the end of the allotted time, what it wrote is kept."""
    stage_file = out / "logs" / f"{name}.json"
    stage_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "gpu_check", "--stage", name, "--stage-file", str(stage_file),
               "--deadline", str(time.time() + allotted), *(["--cpu-smoke"] if smoke else [])]
    env = gpu_runs.child_env()
    with open(out / "logs" / f"{name}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            returncode = proc.wait(timeout=allotted + 10)  # the stage stops itself at the deadline
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            returncode = None
    record = json.loads(stage_file.read_text()) if stage_file.is_file() else {"results": []}
    if returncode is None:
        record["status"] = "partial" if record["results"] else "timeout"
        record["error"] = f"killed after {allotted + 10:.0f} s"
    elif returncode != 0:
        record["status"] = "failed"
        record["error"] = gpu_runs.tail(out / "logs" / f"{name}.log")
    return record


def run_all(args) -> dict:
    smoke = args.cpu_smoke or not torch.cuda.is_available()
    out = Path(args.out or os.environ.get("OUT") or "runs/gpu-check").resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    sizes = gpu_stages.SMOKE if smoke else gpu_stages.GPU
    budget = args.budget or sizes["budget"]
    chosen = [name for name in STAGES if name in args.stages.split(",")]
    total_share = sum(sizes[name]["share"] for name in chosen)
    shares = {name: budget * sizes[name]["share"] / total_share for name in chosen}
    results = {"mode": "cpu-smoke" if smoke else "gpu", "budget_s": budget,
               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "finished": None, "machine": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                             "cpus": os.cpu_count(), "git_commit": git_commit()},
               "stages": {name: {"status": "pending" if name in chosen else "not run"}
                          for name in STAGES}}
    save(out, results)
    carry = 0.0
    for name in chosen:
        allotted = shares[name] + carry
        start = time.perf_counter()
        print(f"gpu-check: {name} (up to {allotted:.0f} s) ...", flush=True)
        try:
            if name in TRAINING_RUNS:
                data = str(Path(args.data).resolve()) if args.data else None
                record = getattr(gpu_runs, name)(out, smoke, allotted, data, args.work,
                                                 results["machine"].get("device", "unknown"))
            else:
                record = child_stage(name, out, smoke, allotted)
        except Exception as err:  # a failing stage must not lose the others' figures
            record = {"status": "failed", "error": f"{type(err).__name__}: {err}", "results": []}
        seconds = time.perf_counter() - start
        record = {"status": "ok", **record, "seconds": round(seconds, 1), "allotted_s": round(allotted)}
        device = record.pop("device", None)
        if device and not results["machine"].get("device"):
            results["machine"]["device"] = device
        results["stages"][name] = record
        carry = allotted - seconds  # an overrun is taken from the next stage
        save(out, results)
        print(f"gpu-check: {name} {record['status']} in {seconds:.0f} s", flush=True)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    save(out, results)
    print(f"gpu-check: {out / 'results.json'}, {out / 'summary.md'}")
    return results


def stage_list(text: str) -> str:
    unknown = set(text.split(",")) - set(STAGES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(sorted(unknown))}; "
                                         f"the stages are {', '.join(STAGES)}")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="output folder (default: $OUT, else runs/gpu-check)")
    parser.add_argument("--data", default=None,
                        help="training data of stages 4 and 5 (e.g. the packed corpus' shards); "
                             "default: generated audio")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all stages (default: 510 on a GPU, 150 for --cpu-smoke)")
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on CPU (automatic without CUDA)")
    parser.add_argument("--work", default=None,
                        help="where the training runs' scratch folder goes "
                             "(default: the system's temporary folder)")
    parser.add_argument("--stages", default=",".join(STAGES), type=stage_list,
                        help=f"comma list of the stages to run (default: all, {','.join(STAGES)})")
    parser.add_argument("--stage", choices=[s for s in STAGES if s not in TRAINING_RUNS],
                        help=argparse.SUPPRESS)
    parser.add_argument("--stage-file", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:  # a child: one stage, figures written case by case
        gpu_stages.run_stage(args.stage, Path(args.stage_file), args.deadline, args.cpu_smoke)
        return 0
    results = run_all(args)
    finished = ("ok", "partial", "not run")
    return 0 if all(s["status"] in finished for s in results["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
