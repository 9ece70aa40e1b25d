"""Fixes that heareval 2021.1.3's prediction runner needs on today's torch and Lightning,
applied the moment heareval imports its prediction module, in heareval's processes only.

`make install` puts this folder on the venv's sys.path and calls `install()` at start-up
(the .pth file that `encodecmae_hear.evaluate.compat.pth_text` writes), so
`python -m heareval.predictions.runner ...` works as HEAR's own docs give it;
`python -m encodecmae_hear.evaluate.compat` calls `install()` itself. Start-up cost: one
finder on sys.meta_path that answers a single module name; it imports nothing, and a
program that never imports `heareval.predictions.task_predictions` is left as it was.

When that module has been imported:

1. Lightning: heareval sets `trainer.fit_loop.current_epoch` to the best validation epoch
   before testing, to pick that epoch's event post-processing (hear-eval-kit issue #432).
   pytorch-lightning 1.9 keeps the epoch in `fit_loop.epoch_progress`, so the assignment
   has no effect and event tasks die with a KeyError in `epoch_best_postprocessing`;
   `patch_lightning` makes `current_epoch` a real setter.
2. torch >= 2.6 loads with weights_only=True by default, and Lightning's checkpoints hold
   other objects. The runner loads only checkpoints that it wrote itself earlier in the
   same run (its best model per grid point), so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set
   for this process (and its data-loader workers). It acts only where `torch.load` is
   called without weights_only, so explicit weights_only=True loads stay safe.
3. Seeds: heareval always calls `seed_everything(42)` before downstream training;
   `install(seed_offset=k)` makes that call seed 42 + k (k = 0: heareval's own runs).
"""
from __future__ import annotations

import os
import sys

TARGET = "heareval.predictions.task_predictions"
FIT_LOOP = "pytorch_lightning.loops.fit_loop"
WEIGHTS_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
APPLIED = "_encodecmae_hear_seed_offset"      # set on the fixed module: fixes go in once


def patch_lightning(fit_loop_class) -> None:
    if isinstance(getattr(fit_loop_class, "current_epoch", None), property):
        return

    def get_epoch(loop):
        return loop.epoch_progress.current.completed

    def set_epoch(loop, epoch):
        loop.epoch_progress.current.completed = epoch

    fit_loop_class.current_epoch = property(get_epoch, set_epoch)


def patch_seed(task_predictions, offset: int) -> None:
    seed_everything = task_predictions.seed_everything

    def shifted(seed=None, *args, **kwargs):
        return seed_everything(None if seed is None else seed + offset, *args, **kwargs)

    task_predictions.seed_everything = shifted


def apply(task_predictions, seed_offset: int) -> None:
    """All three fixes, on heareval's freshly imported prediction module (once)."""
    applied = getattr(task_predictions, APPLIED, None)
    if applied is not None:
        if applied != seed_offset:
            raise RuntimeError(f"{TARGET} is already fixed with seed offset {applied}; "
                               f"cannot change it to {seed_offset}")
        return
    patch_lightning(sys.modules[FIT_LOOP].FitLoop)      # task_predictions imported Lightning
    os.environ[WEIGHTS_ENV] = "1"
    if seed_offset:
        patch_seed(task_predictions, seed_offset)
    setattr(task_predictions, APPLIED, seed_offset)


class PostImportFinder:
    """On sys.meta_path: finds TARGET with the other finders, then runs `apply` once the
    module has executed. Every other name is passed on at once."""

    def __init__(self, seed_offset: int = 0):
        self.seed_offset = seed_offset

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_fix(module):
            exec_module(module)
            apply(module, self.seed_offset)

        spec.loader.exec_module = exec_then_fix        # this spec's own loader object
        return spec


def install(seed_offset: int = 0) -> PostImportFinder:
    """Put the finder first on sys.meta_path (once; a second call updates the offset).
    If heareval's prediction module is already imported, fix it now."""
    finder = next((f for f in sys.meta_path if isinstance(f, PostImportFinder)), None)
    if finder is None:
        finder = PostImportFinder(seed_offset)
        sys.meta_path.insert(0, finder)
    if TARGET in sys.modules:
        apply(sys.modules[TARGET], seed_offset)         # refuses a different offset
    finder.seed_offset = seed_offset
    return finder
