"""`pretrain-mobile`: self-supervised pretraining of the mobile encoder (SPEC section 10).

    python -m encodecmae_hear pretrain-mobile --objective cbow --data corpus.jsonl --out runs/m

Audio2Vec CBoW / skip-gram or TemporalGap (train/mobile_objectives.py) through the same
loop, data and checkpoints as EnCodecMAE. Re-running with --resume continues; the run's
objective and slicing come from its checkpoint then. The finished `model.pt` is a plain
MobileModel checkpoint (the head is kept) for `encodecmae_hear.mobile_hear`.
"""
from __future__ import annotations

import argparse

import torch

from encodecmae_hear.errors import UserError
from encodecmae_hear.model.mobile import HOP, MOBILE_PRESETS, SAMPLE_RATE, MobileConfig, mobile_preset
from encodecmae_hear.train.mobile_objectives import DEFAULT_SLICE_FRAMES, MOBILE_OBJECTIVES, build_task
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.run import add_training_arguments, start_run, train_and_release


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objective", choices=MOBILE_OBJECTIVES, required=True,
                        help="cbow: centre slice from its neighbours; skipgram: neighbours from the "
                             "centre slice; temporalgap: the gap between two slices")
    parser.add_argument("--preset", choices=MOBILE_PRESETS, default="mobile-half",
                        help="encoder width (full 1.0, half 0.5, quarter 0.25, tiny 0.125)")
    parser.add_argument("--slice-frames", type=int, default=DEFAULT_SLICE_FRAMES,
                        help="slice length in 10 ms mel frames (a multiple of 4)")
    parser.add_argument("--context", type=int, default=2,
                        help="Audio2Vec: slices on each side of the centre one")
    add_training_arguments(parser, steps=100_000)
    parser.set_defaults(lr=1e-3, warmup_steps=500, schedule="cosine", batch_size=64)


def run(args: argparse.Namespace) -> int:
    proc, log, cfg, source, resume = start_run(args)
    slice_frames = args.slice_frames
    if resume is not None:
        config = MobileConfig.from_dict(resume["config"])
        if config.head != args.objective:
            raise UserError(f"{args.out} was trained with --objective {config.head}; pass the same")
        slice_frames = resume["provenance"].get("slice_frames", slice_frames)
    else:
        config = mobile_preset(args.preset, head=args.objective, context=args.context)
    torch.manual_seed(cfg.seed + 1)
    try:
        task, objective = build_task(config, slice_frames)
    except ValueError as err:
        raise UserError(str(err)) from None
    crop_frames = int(cfg.crop_seconds * SAMPLE_RATE) // HOP
    if crop_frames < task.slices_needed:
        raise UserError(f"--crop-seconds {cfg.crop_seconds} gives {crop_frames} mel frames; "
                        f"{args.objective} with these slices needs {task.slices_needed}")
    if resume is not None:
        task.load_state_dict(resume["model"], strict=True)
    size = resume["provenance"].get("preset", args.preset) if resume else args.preset
    provenance = base_record(
        trained=True, **objective.provenance(), preset=size, slice_frames=slice_frames,
        corpus={"data": str(args.data), "hours": source.hours},
        notes=f"mobile encoder ({size}), self-supervised {args.objective} pretraining")
    return train_and_release(task, objective, source, cfg, proc, log, provenance=provenance,
                             resume=resume)
