"""A study: which part of a mobile student's HEAR embedding holds a scene task's labels?
fold_probe.py's linear probe (C = 0.1, each fold held out in turn) on the scene
embeddings of a student with an input block, taken whole and part by part: the block
(log-mel, then its pitch part: chroma, salience or both), the learnt channels after it
and, where the config adds it, the std over time. Prints figures; not heareval.

    python -m studies.input_block_probe --model checkpoints/mobile-student.pt \
        --task ../valid_tasks/valid_pitch_class --task ../valid_tasks/valid_instrument
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from encodecmae_hear import mobile_hear
from encodecmae_hear.model.mobile import input_block_width
from encodecmae_hear.model.mobile_input import MEL_CHANNELS
from studies.fold_probe import fold_accuracy, task_clips


def parts(model) -> dict[str, slice]:
    """The scene embedding's parts: names -> column slices."""
    block, frames = input_block_width(model.config), model.timestamp_embedding_size
    out = {"all": slice(None), "block": slice(0, block), "mel": slice(0, MEL_CHANNELS),
           model.config.input_block_pitch: slice(MEL_CHANNELS, block), "learnt": slice(block, frames)}
    if model.config.scene_std:
        out[f"{model.config.scene_std} std"] = slice(frames, None)
    return out


def scene_embeddings(model, task: Path):
    wavs, labels, folds = task_clips(task, 16000)
    return mobile_hear.get_scene_embeddings(torch.stack(wavs), model).numpy(), labels, folds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a mobile checkpoint with an input block")
    parser.add_argument("--task", action="append", required=True, help="a k-fold scene task folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = mobile_hear.load_model(args.model)
    if model.config.input_block <= 0:
        raise SystemExit(f"{args.model} has no input block (python -m encodecmae_hear input-block)")
    for task in args.task:
        x, labels, folds = scene_embeddings(model, Path(task))
        scores = {name: 100 * fold_accuracy(x[:, part], labels, folds, C=0.1)
                  for name, part in parts(model).items()}
        print(f"{Path(task).name}: " + ", ".join(f"{name} {score:.1f} %" for name, score in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
