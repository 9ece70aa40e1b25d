"""What a training run needs to continue bit-for-bit, stored as plain data.

Checkpoints load with `weights_only=True`, so everything here is tensors, numbers,
strings, lists and dicts: RNG states become tensors / lists, the data position is a
count of micro-batches (the data order is a function of it, see data.py).

A run folder holds `step-000001000.pt` files; the newest *readable* one is resumed
from, and all but the last `keep` are deleted after each save.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from encodecmae_hear.checkpoint import CheckpointError, read_checkpoint

CKPT_PATTERN = re.compile(r"^step-(\d{9})\.pt$")


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal),
                   "gauss": py_gauss if py_gauss is None else float(py_gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / f"step-{step:09d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    """Step checkpoints in `run_dir`, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if CKPT_PATTERN.match(p.name))


def latest_checkpoint(run_dir, log=print) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads, with its payload; damaged ones are reported."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            payload = read_checkpoint(path)
        except CheckpointError as err:
            log(f"warning: skipping unreadable checkpoint: {err}")
            continue
        if not payload["training"]:
            log(f"warning: {path} has no training state; skipping it")
            continue
        return path, payload
    return None


def prune_checkpoints(run_dir, keep: int) -> None:
    """Deletes all but the newest `keep` step checkpoints (and stale temp files)."""
    for path in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
    for tmp in Path(run_dir).glob(".step-*.pt.tmp*"):
        tmp.unlink(missing_ok=True)
