"""What the HEAR 2021 tools (hearvalidator 2021.0.6, heareval 2021.1.3) need on today's
Python and torch. The tools themselves are installed unmodified; the fixes live in
`shims/` (`paths.SHIM_DIR`), a folder that goes on the tools' sys.path:

1. TensorFlow: both tools import it at module level. `shims/tensorflow` is a stand-in
   that answers their only uses for PyTorch models.
2. heareval's prediction runner on pytorch-lightning 1.9 and torch >= 2.6 (hear-eval-kit
   issue #432, weights-only loading) and per-seed runs: `shims/encodecmae_hear_fixes.py`,
   a post-import hook that fixes heareval's prediction module when it is imported.

`make install` (tools/install_hear_tools.py) writes `pth_text()` to the venv's
site-packages as PTH_NAME: it puts shims/ at the *end* of sys.path (a real TensorFlow
wins) and installs the hook at start-up, so the tools work as their docs give them:
`hear-validator MODULE`, `python -m heareval.embeddings.runner ...`,
`python -m heareval.predictions.runner ...`.

`python -m encodecmae_hear.evaluate.compat MODULE ARGS...` does the same for one run
where that file is absent, and reseeds heareval's downstream training: with
$ENCODECMAE_HEAR_SEED=k its `seed_everything(42)` seeds 42 + k (k = 0 is heareval's own
run). `evaluate/runner.py` runs every tool this way.
"""
from __future__ import annotations

import importlib
import os
import runpy
import sys

from encodecmae_hear.paths import SHIM_DIR

SEED_ENV = "ENCODECMAE_HEAR_SEED"
FIXES_MODULE = "encodecmae_hear_fixes"        # shims/encodecmae_hear_fixes.py
PTH_NAME = "encodecmae_hear_shims.pth"


def pth_text() -> str:
    """The .pth file for site-packages: a path line (appended to sys.path) and an import
    line (run at start-up; it only puts a finder on sys.meta_path)."""
    return f"{SHIM_DIR}\nimport {FIXES_MODULE}; {FIXES_MODULE}.install()\n"


def command(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args...` with the shims in place."""
    return [sys.executable, "-m", "encodecmae_hear.evaluate.compat", module, *map(str, args)]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m encodecmae_hear.evaluate.compat MODULE [ARGS...]")
    module = sys.argv[1]
    if str(SHIM_DIR) not in sys.path:
        sys.path.append(str(SHIM_DIR))
    fixes = importlib.import_module(FIXES_MODULE)      # found in SHIM_DIR, not the package
    fixes.install(seed_offset=int(os.environ.get(SEED_ENV) or 0))
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
