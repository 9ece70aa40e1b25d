"""`init`: write an untrained checkpoint of a preset (the seed of a training run, or a
placeholder default model that says plainly that it is untrained)."""
from __future__ import annotations

import argparse

import torch

from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.model.config import FRONTENDS, PRESETS, preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.provenance import base_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="checkpoint file to write")
    parser.add_argument("--preset", choices=PRESETS, default="mini", help="model size")
    parser.add_argument("--frontend", choices=FRONTENDS, default="mel256", help="input features")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--half", action="store_true", help="store weights as float16")


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    model = EncodecMAE(preset(args.preset, args.frontend))
    provenance = base_record(
        trained=False, steps=0, targets=None, corpus=None,
        notes=f"UNTRAINED: random initialisation of preset {args.preset!r} "
              f"({args.frontend} frontend), seed {args.seed}")
    save_checkpoint(args.output, model, provenance=provenance, half=args.half)
    print(f"wrote untrained {args.preset}/{args.frontend} checkpoint to {args.output}")
    return 0
