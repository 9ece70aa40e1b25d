"""Provenance records stored in checkpoints: what, from where, by which code."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess

import torch

from encodecmae_hear.paths import SOURCE_TREE


def git_commit() -> str:
    """The source checkout's commit (with '+dirty' for local changes), or 'unknown'
    (also for an installed wheel: git must not answer for a checkout around the venv)."""
    root = SOURCE_TREE
    if root is None:
        return "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def base_record(**fields) -> dict:
    record = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    record.update(fields)
    return record
