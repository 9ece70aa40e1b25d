"""`input-block`: give a mobile checkpoint the input block of model/mobile_input.py (its own
log-mel and chroma, standardised and weighted, in front of its HEAR embedding), measuring
the block's per-channel statistics on pretraining audio, never on a task.

    python -m encodecmae_hear input-block checkpoints/mobile-student.pt --data ../corpus/packed \
        --weight 1 --pitch salience --scene-std frames

The learnt weights are untouched: the same student, a wider HEAR embedding. --weight 0
removes the block again. --pitch chooses the block's pitch channels (the chroma, the
pitch-class salience, or both), --scene-std adds a standard deviation over time to the
scene embedding: of the block's channels or of every channel.
"""
from __future__ import annotations

import argparse
import math

import torch

from encodecmae_hear import files
from encodecmae_hear.checkpoint import model_from_payload, read_checkpoint, write_payload
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.mobile import ARCHITECTURE, MobileModel
from encodecmae_hear.model.mobile_input import PITCH_PARTS
from encodecmae_hear.train.data import open_source
from encodecmae_hear.train.mobile_objectives import to_16k
from encodecmae_hear.train.provenance import base_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a mobile checkpoint; rewritten in place (atomically) "
                                           "unless -o is given")
    parser.add_argument("--data", required=True,
                        help="pretraining audio: tar shards folder or manifest (as `distill --data`)")
    parser.add_argument("--weight", type=float, required=True,
                        help="what each standardised channel of the block is multiplied by (0: no block)")
    parser.add_argument("--pitch", choices=PITCH_PARTS, default="chroma",
                        help="the block's 12 pitch-class channels: the 64 ms chroma, the salience "
                             "(harmonic sums at the semitone grid, 128 ms), or both (default: chroma)")
    parser.add_argument("--scene-std", choices=("none", "block", "frames"), default="none",
                        help="scene embeddings also carry the standard deviation over time of the "
                             "block's channels or of every channel (default: none, the mean alone)")
    parser.add_argument("-o", "--output", default=None, help="write the result here instead")
    parser.add_argument("--crops", type=int, default=256, help="4 s crops to measure")
    parser.add_argument("--seed", type=int, default=0, help="which crops")


@torch.no_grad()
def measure(model: MobileModel, crops: list[tuple[torch.Tensor, int]]) -> dict:
    """crops [(wav (N,) at 24 kHz, valid samples)] -> the block's unstandardised
    channels' mean and std (width,) over the student frames inside the valid audio."""
    frames = []
    for wav, valid in crops:
        wav16, length = to_16k(wav[None].float(), torch.tensor([valid]))
        wav16 = model.padded(wav16)
        block = model.input_block.features(wav16, model.frontend(wav16))[0]
        frames.append(block[: int(length) // model.config.frame_hop])
    x = torch.cat(frames).double()
    if x.shape[0] < 2:
        raise UserError(f"input block statistics need at least 2 frames of audio, got {x.shape[0]}")
    return {"mean": x.mean(0).float(), "std": x.std(0).float(), "frames": x.shape[0]}


def run(args: argparse.Namespace) -> int:
    if args.crops < 1 or not 0 <= args.weight < math.inf:
        raise UserError(f"--crops must be >= 1 and --weight a finite number >= 0; got {args.crops} "
                        f"and {args.weight}")
    scene_std = "" if args.scene_std == "none" else args.scene_std
    if args.weight == 0 and (args.pitch != "chroma" or scene_std == "block"):
        raise UserError("--pitch and --scene-std block describe the input block; --weight 0 removes it")
    payload = read_checkpoint(args.checkpoint)
    if payload["config"].get("architecture") != ARCHITECTURE:
        raise UserError(f"{args.checkpoint} is not a mobile checkpoint; the input block belongs to "
                        f"the mobile encoders (pretrain-mobile, distill)")
    old = model_from_payload(payload, args.checkpoint)
    model = MobileModel(old.config.replace(input_block=args.weight, input_block_pitch=args.pitch,
                                           scene_std=scene_std))
    # the learnt weights from the checkpoint, the block's buffers (if any) fresh from `model`
    learnt = {k: v for k, v in old.state_dict().items() if not k.startswith("input_block.")}
    model.load_state_dict({**model.state_dict(), **learnt}, strict=True)
    record = {**base_record(), "weight": args.weight, "pitch": args.pitch, "scene_std": scene_std,
              "input_sha256": files.sha256_of(args.checkpoint)}
    if model.input_block is not None:
        crops = open_source(args.data, args.seed).sample(args.crops, args.seed)
        stats = measure(model.eval(), crops)
        model.input_block.set_stats(stats["mean"], stats["std"])
        record.update(data=str(args.data), crops=len(crops), frames=stats["frames"], seed=args.seed)
        print(f"{args.checkpoint}: input block statistics of {stats['frames']} frames from "
              f"{len(crops)} crops of {args.data}, weight {args.weight:g}")
    half = any(v.dtype == torch.float16 for v in payload["model"].values())
    state = model.state_dict()
    payload["model"] = {k: v.half() if half and v.is_floating_point() else v for k, v in state.items()}
    payload["config"] = model.config.to_dict()
    payload["provenance"] = {**payload["provenance"], "input_block": record}
    out = args.output or args.checkpoint
    write_payload(payload, out)
    print(f"-> {out}")
    return 0
