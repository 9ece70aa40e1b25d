"""`pretrain`: EnCodecMAE pretraining (SPEC section 3) with EnCodec RVQ codes as targets.

    python -m encodecmae_hear pretrain --data corpus.jsonl --out runs/base --preset base
    torchrun --nproc_per_node=2 -m encodecmae_hear pretrain --data ... --out ...

Targets come from the official EnCodec 24 kHz weights when given (--encodec-weights or
$ENCODECMAE_ENCODEC_WEIGHTS; provenance targets = "encodec-official"). Without them
EnCodec is built untrained and its 8 codebooks are k-means-initialised on a sample of
the corpus ("encodec-untrained-kmeans"); the fitted tokenizer is stored in every
checkpoint, so a resumed run keeps the same targets.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .checkpoint import save_checkpoint
from .config import FRONTENDS, PRESETS, ModelConfig, preset
from .encodec_weights import build_encodec, weights_from_env
from .model import EncodecMAE
from .objectives import EncodecTargets
from .provenance import base_record
from .targets import EncodecTokenizer
from .train import train
from .train_cli import add_training_arguments, start_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="base", help="model size")
    parser.add_argument("--frontend", choices=FRONTENDS, default="mel256", help="input features")
    parser.add_argument("--encodec-weights", default=None,
                        help="official EnCodec 24 kHz weights (file); default: $ENCODECMAE_ENCODEC_WEIGHTS")
    parser.add_argument("--codebook-clips", type=int, default=128,
                        help="4 s crops to k-means-initialise untrained EnCodec codebooks on")
    parser.add_argument("--codebook-iters", type=int, default=20, help="k-means iterations per codebook")
    add_training_arguments(parser, steps=500_000)


def fit_codebooks(tokenizer: EncodecTokenizer, source, clips: int, iters: int, seed: int,
                  proc, log) -> None:
    """k-means on rank 0, then every rank takes rank 0's codebooks."""
    if proc.main:
        crops = source.sample(clips, seed)
        if not crops:
            raise SystemExit("no readable audio to fit the EnCodec codebooks on")
        log(f"fitting EnCodec codebooks (k-means, 8 x 1024) on {len(crops)} crops ...")
        tokenizer.fit_codebooks(torch.stack([wav for wav, _ in crops]), kmeans_iters=iters, seed=seed)
    if proc.world > 1:
        import torch.distributed as dist
        for buffer in tokenizer.quantizer.buffers():
            moved = buffer.to(proc.device)
            dist.broadcast(moved, src=0)
            buffer.copy_(moved.cpu())


def run(args: argparse.Namespace) -> int:
    proc, log, cfg, source, resume = start_run(args)
    weights = args.encodec_weights or weights_from_env()
    torch.manual_seed(cfg.seed)
    encodec = build_encodec(weights if resume is None else None)
    tokenizer = EncodecTokenizer(encodec)
    size = args.preset
    if resume is not None:  # the checkpoint's config wins over --preset / --frontend
        config = ModelConfig.from_dict(resume["config"])
        tokenizer.load_state_dict(resume["tokenizer"])
        kind = resume["provenance"].get("targets", "unknown")
        size = resume["provenance"].get("preset", size)
    else:
        config = preset(args.preset, args.frontend)
        kind = "encodec-official" if weights else "encodec-untrained-kmeans"
        if not tokenizer.initialised:
            fit_codebooks(tokenizer, source, args.codebook_clips, args.codebook_iters, cfg.seed, proc, log)
    torch.manual_seed(cfg.seed + 1)
    share = config.frontend == "encodec"  # the frontend's encoder is the tokenizer's
    model = EncodecMAE(config, encodec_model=encodec if share else None)
    if resume is not None:
        model.load_state_dict(resume["model"], strict=True)
    objective = EncodecTargets(tokenizer, config, kind, share_frontend=share)
    provenance = base_record(
        trained=True, targets=kind, objective=objective.name, preset=size,
        corpus={"data": str(args.data), "hours": source.hours},
        encodec_weights=str(weights) if weights else None,
        notes=f"EnCodecMAE pretraining, {config.frontend} frontend, targets {kind}")
    status = train(model, objective, source, cfg, provenance=provenance, tokenizer=tokenizer,
                   resume=resume, log=log)
    if status != "done":
        return 143 if status == "SIGTERM" else 130
    if proc.main:
        release = Path(args.out) / "model.pt"
        save_checkpoint(release, model, tokenizer=tokenizer,
                        provenance={**provenance, "steps": cfg.steps,
                                    "samples_seen": cfg.steps * cfg.batch_size})
        log(f"done: {release}")
    return 0
