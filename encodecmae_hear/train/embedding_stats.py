"""`embedding-stats`: per-channel statistics of a model's embeddings on pretraining audio,
stored in the checkpoint so that `load_model` hands out standardised embeddings.

heareval's downstream predictor takes embeddings as they come (its default grid has no
input normalisation), and the blocks that `concat` and `input+concat` join differ in
offset and scale. Each block (the encoder input and every layer) is therefore
standardised channel by channel, (x - mean) / std, with the mean and std of its frames
over corpus crops measured here: numbers from pretraining audio, never from a task.

With --scene-dims K it also measures scene whitening (scene_whitening.py) for the
checkpoint's HEAR layer option (or --scene-layer), on --scene-crops corpus crops of
--scene-seconds; --scene-only keeps the statistics the checkpoint already holds.

    python -m encodecmae_hear embedding-stats checkpoints/default.pt --data ../corpus/packed
    python -m encodecmae_hear embedding-stats checkpoints/default.pt --data ../corpus/packed --scene-dims 512
"""
from __future__ import annotations

import argparse

import torch

from encodecmae_hear import files
from encodecmae_hear.checkpoint import model_from_payload, read_checkpoint, write_payload
from encodecmae_hear.errors import UserError
from encodecmae_hear.train.data import open_source
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.scene_whitening import measure_scene_whitening

# A channel that hardly varies on the corpus gets at least this share of its block's
# median std, so that small changes in it on other audio are not amplified without bound.
STD_FLOOR = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint to measure; rewritten in place (atomically) "
                                           "unless -o is given")
    parser.add_argument("--data", required=True,
                        help="pretraining audio: tar shards folder or manifest (as `pretrain --data`)")
    parser.add_argument("-o", "--output", default=None, help="write the result here instead")
    parser.add_argument("--crops", type=int, default=256, help="4 s crops to measure")
    parser.add_argument("--seed", type=int, default=0, help="which crops")
    parser.add_argument("--batch", type=int, default=16, help="crops per forward pass")
    parser.add_argument("--scene-dims", type=int, default=0,
                        help="also measure scene whitening keeping this many axes (0: none)")
    parser.add_argument("--scene-crops", type=int, default=1024, help="crops for scene whitening")
    parser.add_argument("--scene-layer", default=None,
                        help="HEAR layer option to whiten (default: the checkpoint's recommended one)")
    parser.add_argument("--scene-only", action="store_true",
                        help="keep the embedding statistics the checkpoint holds; add scene whitening")
    parser.add_argument("--scene-seconds", type=float, default=1.0,
                        help="length of those crops (the scale of a HEAR scene clip)")


@torch.no_grad()
def measure(mae, crops: list[tuple[torch.Tensor, int]], batch: int = 16) -> dict:
    """crops [(wav (N,) at 24 kHz, valid samples)] -> {"mean", "std"}: (layers + 1, D)
    float32, row 0 for the encoder input, row i for layer i, over all valid frames."""
    mae.eval()
    sums = None  # (2, L+1, D): sum and sum of squares over valid frames
    count = 0
    for start in range(0, len(crops), batch):
        part = crops[start:start + batch]
        wav = torch.stack([w for w, _ in part])
        lengths = torch.tensor([n for _, n in part])
        blocks = torch.stack(mae.encode(wav, lengths, with_input=True))  # (L+1, B, T, D)
        padding = mae.padding_mask(lengths, blocks.shape[2], wav.shape[0], wav.device)
        frames = blocks[:, ~padding].double()  # (L+1, valid frames, D)
        moments = torch.stack([frames.sum(1), (frames ** 2).sum(1)])
        sums = moments if sums is None else sums + moments
        count += frames.shape[1]
    if count < 2:
        raise ValueError(f"embedding statistics need at least 2 frames, got {count}")
    mean = sums[0] / count
    std = ((sums[1] / count - mean ** 2).clamp_min(0) * count / (count - 1)).sqrt()
    floor = (STD_FLOOR * std.median(dim=1, keepdim=True).values).clamp_min(1e-8)
    return {"mean": mean.float(), "std": torch.maximum(std, floor).float(), "frames": count}


def run(args: argparse.Namespace) -> int:
    if args.crops < 1:
        raise UserError(f"--crops must be >= 1, got {args.crops}")
    if args.scene_dims < 0 or (args.scene_dims and args.scene_crops < 2) or args.scene_seconds <= 0:
        raise UserError(f"--scene-dims must be >= 0, --scene-crops >= 2 and --scene-seconds > 0; got "
                        f"{args.scene_dims}, {args.scene_crops}, {args.scene_seconds}")
    payload = read_checkpoint(args.checkpoint)  # this project's format: rewritten below
    mae = model_from_payload(payload, args.checkpoint)
    input_sha = files.sha256_of(args.checkpoint)
    if args.scene_only:
        if not args.scene_dims:
            raise UserError("--scene-only adds scene whitening: give the axes to keep with --scene-dims K")
        if payload["embedding_stats"] is None:
            raise UserError(f"--scene-only keeps the embedding statistics a checkpoint holds, and "
                            f"{args.checkpoint} holds none: run without --scene-only")
        stats = payload["embedding_stats"]
        payload["embedding_stats"] = {"mean": stats["mean"], "std": stats["std"]}
        record = dict(payload["provenance"].get("embedding_stats", {}))
    else:
        crops = open_source(args.data, args.seed).sample(args.crops, args.seed)
        stats = measure(mae, crops, args.batch)
        payload["embedding_stats"] = {"mean": stats["mean"], "std": stats["std"]}
        record = {**base_record(), "data": str(args.data), "crops": len(crops), "frames": stats["frames"],
                  "seed": args.seed, "input_sha256": input_sha}
        print(f"{args.checkpoint}: embedding statistics of {stats['frames']} frames from {len(crops)} "
              f"crops of {args.data}")
    if args.scene_dims:
        layer = args.scene_layer or payload["provenance"].get("hear_layer", {}).get("layer", "last")
        clips = [wav[:valid] for wav, valid in
                 open_source(args.data, args.seed, args.scene_seconds).sample(args.scene_crops, args.seed)
                 if valid == len(wav)]
        whitening = measure_scene_whitening(mae, payload["embedding_stats"], layer, clips, args.scene_dims,
                                            args.batch)
        payload["embedding_stats"].update(whitening)
        record["scene_whitening"] = {**base_record(), "data": str(args.data), "crops": len(clips),
                                     "seconds": args.scene_seconds, "seed": args.seed,
                                     "dims": int(whitening["scene_projection"].shape[0]),
                                     "layer": whitening["scene_layer"], "input_sha256": input_sha}
        print(f"scene whitening: {record['scene_whitening']['dims']} axes from {len(clips)} crops "
              f"of {args.scene_seconds:g} s, layer {whitening['scene_layer']!r}")
    payload["provenance"] = {**payload["provenance"], "embedding_stats": record}
    out = args.output or args.checkpoint
    write_payload(payload, out)
    print(f"-> {out}")
    return 0
