"""What the HEAR 2021 tools (hearvalidator 2021.0.6, heareval 2021.1.3) need on today's
Python and torch. Everything lives here; the tools themselves are installed unmodified.

1. TensorFlow: both tools import it at module level. `hear_shims/tensorflow` is a
   stand-in that answers their only uses for PyTorch models. `make install` puts its
   folder at the *end* of the venv's sys.path (a .pth file), so a real TensorFlow wins.
2. torch >= 2.6 loads with weights_only=True by default; heareval's predictions runner
   reads Lightning checkpoints holding other objects: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
   (heareval's own files, written in the same run, only).
3. heareval sets `trainer.fit_loop.current_epoch` to the best validation epoch before
   testing, to pick that epoch's event post-processing (hear-eval-kit issue #432).
   pytorch-lightning 1.9 keeps the epoch in `fit_loop.epoch_progress`, so the
   assignment had no effect; `patch_lightning` makes it a real setter.
4. Seeds: heareval always calls `seed_everything(42)` before downstream training, so
   repeated runs are identical. With $ENCODECMAE_HEAR_SEED=k, `patch_seed` makes that
   call seed 42 + k (k = 0 is heareval's own run).

Run a tool through this module: `python -m encodecmae_hear.evaluate.compat MODULE ARGS...`,
e.g. `python -m encodecmae_hear.evaluate.compat heareval.predictions.runner embeddings/...`.
"""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent / "shims"
SEED_ENV = "ENCODECMAE_HEAR_SEED"


def runner_env(base: dict | None = None) -> dict:
    """Environment for a HEAR tool subprocess."""
    env = dict(os.environ if base is None else base)
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(SHIM_DIR)]))
    return env


def patch_lightning() -> None:
    from pytorch_lightning.loops.fit_loop import FitLoop

    if isinstance(getattr(FitLoop, "current_epoch", None), property):
        return

    def get_epoch(loop):
        return loop.epoch_progress.current.completed

    def set_epoch(loop, epoch):
        loop.epoch_progress.current.completed = epoch

    FitLoop.current_epoch = property(get_epoch, set_epoch)


def patch_seed(offset: int) -> None:
    import heareval.predictions.task_predictions as tp

    seed_everything = tp.seed_everything

    def shifted(seed=None, *args, **kwargs):
        return seed_everything(None if seed is None else seed + offset, *args, **kwargs)

    tp.seed_everything = shifted


def command(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args...` with the shims in place."""
    return [sys.executable, "-m", "encodecmae_hear.evaluate.compat", module, *map(str, args)]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m encodecmae_hear.evaluate.compat MODULE [ARGS...]")
    module = sys.argv[1]
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    if str(SHIM_DIR) not in sys.path:
        sys.path.append(str(SHIM_DIR))
    if module.startswith("heareval"):
        patch_lightning()
    if module.startswith("heareval.predictions") and os.environ.get(SEED_ENV):
        patch_seed(int(os.environ[SEED_ENV]))
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
