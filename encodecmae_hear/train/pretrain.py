"""`pretrain`: EnCodecMAE pretraining (SPEC section 3) with EnCodec RVQ codes as targets.

    python -m encodecmae_hear pretrain --data corpus.jsonl --out runs/base --preset base
    torchrun --nproc_per_node=2 -m encodecmae_hear pretrain --data ... --out ...

Targets come from the official EnCodec 24 kHz weights (provenance targets =
"encodec-official"): a file given with --encodec-weights or $ENCODECMAE_ENCODEC_WEIGHTS,
else the torch hub cache, else downloaded there by the URL of the `encodec` package, its
sha256 checked on every use (hub/encodec_weights.py). When they cannot be had the run
stops and says how to go on. Only `--targets encodec-untrained` builds EnCodec untrained
and k-means-initialises its 8 codebooks on a sample of the corpus
("encodec-untrained-kmeans"). The tokenizer is stored in every checkpoint, so a resumed
run keeps the same targets.

An untrained EnCodec's codes follow the waveform's fine structure (phase) more than its
spectrum, so a mel-frontend model cannot predict them from context and learns little
beyond their frequencies. Where the official weights are missing, `--targets
mel-kmeans` gives a learnable target instead: the id of the nearest of --clusters
k-means centroids of the log-mel frame (one stream; centroids fitted on corpus crops
and stored in the training state). `--teachers crepe,resemblyzer,vad` adds one stream
per pretrained teacher (train/teachers): the k-means ids of its frame features, weighted
by `--teacher-weights` beside the mel stream's 1; `--teacher-cache DIR` reads those
features from a cache that `cache-teachers` computed once for the corpus.
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.distributed as dist

from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import FRONTENDS, HOP_LENGTH, PRESETS, ModelConfig, preset
from encodecmae_hear.hub.encodec_weights import EncodecWeightsError, encodec_weights
from encodecmae_hear.model.encodec import CODEBOOK_SIZE, ENV_VAR, EncodecTokenizer, build_encodec
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.objectives import EncodecTargets, FrontendFeatures, KMeansTargets, teacher_kmeans
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.run import add_training_arguments, start_run, train_and_release
from encodecmae_hear.train.teachers import TEACHERS, parse_teachers
from encodecmae_hear.train.teachers.streams import chosen_teachers, teacher_streams

UNTRAINED_TARGETS_WARNING = (
    "warning: --targets encodec-untrained: the targets will be the codes of an untrained "
    "EnCodec whose codebooks are k-means-fitted on this corpus (targets "
    "\"encodec-untrained-kmeans\"), not the paper's EnCodec codes, and a mel-frontend model "
    "learns little from them; --targets mel-kmeans gives learnable targets (docs/TRAINING.md)")
# --targets -> the objective a run keeps (a resumed run must ask for the same)
OBJECTIVES = {"encodec": "encodec", "encodec-untrained": "encodec", "mel-kmeans": "kmeans"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="base", help="model size")
    parser.add_argument("--frontend", choices=FRONTENDS, default="mel256", help="input features")
    parser.add_argument("--encodec-weights", default=None,
                        help=f"official EnCodec 24 kHz weights (file); default: ${ENV_VAR}, else the "
                             f"torch hub cache, else downloaded there (sha256 checked)")
    parser.add_argument("--codebook-clips", type=int, default=128,
                        help="4 s crops to k-means-initialise untrained EnCodec codebooks on")
    parser.add_argument("--codebook-iters", type=int, default=20, help="k-means iterations per codebook")
    parser.add_argument("--targets", choices=tuple(OBJECTIVES), default="encodec",
                        help="EnCodec RVQ codes of the official EnCodec (the paper's), of an untrained "
                             "EnCodec with k-means-fitted codebooks, or k-means ids of the log-mel frames")
    parser.add_argument("--clusters", type=int, default=512, help="mel-kmeans: number of clusters")
    parser.add_argument("--kmeans-clips", type=int, default=256, help="mel-kmeans: crops to fit on")
    parser.add_argument("--teachers", default="",
                        help=f"mel-kmeans: more target streams, k-means ids of pretrained teachers' "
                             f"frame features, comma-separated from {','.join(TEACHERS)} "
                             f"(pip install 'encodecmae_hear[teachers]')")
    parser.add_argument("--teacher-weights", default="",
                        help="loss weight of each teacher stream, comma-separated, or one for all "
                             "(default 1; the mel stream's is 1)")
    parser.add_argument("--teacher-cache", default=None,
                        help="read the teachers' features from this folder, written once for the "
                             "corpus by `cache-teachers`, instead of computing them for every crop")
    add_training_arguments(parser, steps=500_000)


def fit_codebooks(tokenizer: EncodecTokenizer, source, clips: int, iters: int, seed: int,
                  proc, log) -> None:
    """k-means on rank 0, then every rank takes rank 0's codebooks."""
    if proc.main:
        crops = source.sample(clips, seed)
        if not crops:
            raise UserError("no readable audio to fit the EnCodec codebooks on")
        frames = len(crops) * math.ceil(crops[0][0].shape[0] / HOP_LENGTH)
        if frames < CODEBOOK_SIZE:
            raise UserError(f"fitting the EnCodec codebooks needs at least {CODEBOOK_SIZE} frames "
                            f"(~14 s of audio); {len(crops)} crops gave {frames}: raise "
                            f"--codebook-clips, add audio, or use --targets mel-kmeans")
        log(f"fitting EnCodec codebooks (k-means, 8 x 1024) on {len(crops)} crops ...")
        tokenizer.fit_codebooks(torch.stack([wav for wav, _ in crops]), kmeans_iters=iters, seed=seed)
    if proc.world > 1:
        for buffer in tokenizer.quantizer.buffers():
            moved = buffer.to(proc.device)
            dist.broadcast(moved, src=0)
            buffer.copy_(moved.cpu())


def mel_kmeans_objective(args, config, source, cfg, proc, log, resume):
    """KMeansTargets over the frontend's frames, plus one stream per teacher; centroids
    fitted here or resumed. -> objective, teachers' provenance records."""
    teacher = FrontendFeatures(config)
    more, records = teacher_streams(args, config.frontend, source, cfg.seed, proc, log, resume)
    if resume is not None:
        return KMeansTargets(teacher, resume["training"]["objective"]["centroids"],
                             config.masked_loss_weight, resume["provenance"]["kmeans"], more), records
    settings = {"clusters": args.clusters, "clips": args.kmeans_clips, "seed": cfg.seed,
                "algorithm": "MiniBatchKMeans", "features": f"{config.frontend} frontend frames"}
    centroids, settings["frames"] = teacher_kmeans(
        teacher, teacher.out_dim, source, args.clusters, args.kmeans_clips, None,
        cfg.seed, batch=4096, iters=100, proc=proc, log=log)
    return KMeansTargets(teacher, centroids, config.masked_loss_weight, settings, more), records


def run(args: argparse.Namespace) -> int:
    if args.targets == "mel-kmeans" and args.frontend != "mel256":
        raise UserError("--targets mel-kmeans clusters log-mel frames: it needs --frontend mel256")
    if parse_teachers(args.teachers) and args.targets != "mel-kmeans":
        raise UserError("--teachers adds k-means streams beside the mel stream: it needs --targets mel-kmeans")
    if args.teacher_cache and not parse_teachers(args.teachers):
        raise UserError("--teacher-cache holds teachers' features: it needs --teachers")
    proc, log, cfg, source, resume = start_run(args)
    if resume is not None:
        kind = resume["provenance"].get("targets")
        untrained = kind == "encodec-untrained-kmeans"
        if resume["provenance"].get("objective") != OBJECTIVES[args.targets] or \
                (args.targets.startswith("encodec") and untrained != (args.targets == "encodec-untrained")):
            raise UserError(f"{args.out} was trained with targets {kind!r}; pass the same --targets")
    if args.targets == "mel-kmeans":
        config = ModelConfig.from_dict(resume["config"]) if resume else preset(args.preset, args.frontend)
        torch.manual_seed(cfg.seed + 1)
        model = EncodecMAE(config)
        if resume is None:
            _, weights = chosen_teachers(args, resume)
            model.new_head(1 + len(weights), args.clusters, (1.0, *weights))
        else:
            model.load_state_dict(resume["model"], strict=True)
        objective, teachers = mel_kmeans_objective(args, model.config, source, cfg, proc, log, resume)
        tokenizer, kind = None, "kmeans-mel-frames" + "".join(f"+{r['name']}" for r in teachers)
        extra = {"kmeans": objective.settings, **({"teachers": teachers} if teachers else {})}
    else:
        model, objective, tokenizer, kind, extra = encodec_setup(args, cfg, source, proc, log, resume)
    size = resume["provenance"].get("preset", args.preset) if resume else args.preset
    provenance = base_record(
        trained=True, targets=kind, objective=objective.name, preset=size,
        corpus={"data": str(args.data), "hours": source.hours}, **extra,
        notes=f"EnCodecMAE pretraining, {model.config.frontend} frontend, targets {kind}")
    return train_and_release(model, objective, source, cfg, proc, log, provenance=provenance,
                             resume=resume, tokenizer=tokenizer)


def official_encodec(given, proc, log):
    """The official EnCodec weights' path: given, cached or downloaded by rank 0 while the
    other ranks wait, then checked by every rank. Stops in one line when not to be had."""
    try:
        if proc.main:
            path, sha256 = encodec_weights(given, download=True)
            log(f"EnCodec targets from {path} (sha256 {sha256[:12]}...)")
        if proc.world > 1:
            dist.barrier()
        if not proc.main:
            path, sha256 = encodec_weights(given, download=False)
    except EncodecWeightsError as err:
        raise UserError(str(err)) from None
    return path, sha256


def encodec_setup(args, cfg, source, proc, log, resume):
    """The paper's targets: model, EncodecTargets, tokenizer, targets kind, and the
    provenance of the EnCodec weights (file, sha256)."""
    weights = sha256 = None
    if args.targets == "encodec-untrained":
        if proc.main:
            log(UNTRAINED_TARGETS_WARNING)
    elif resume is None:  # a resumed run's tokenizer is in its checkpoint
        weights, sha256 = official_encodec(args.encodec_weights, proc, log)
    torch.manual_seed(cfg.seed)
    encodec = build_encodec(weights)
    tokenizer = EncodecTokenizer(encodec)
    if resume is not None:  # the checkpoint's config wins over --preset / --frontend
        config = ModelConfig.from_dict(resume["config"])
        tokenizer.load_state_dict(resume["tokenizer"])
        kind = resume["provenance"].get("targets", "unknown")
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
    return model, objective, tokenizer, kind, {"encodec_weights": str(weights) if weights else None,
                                               "encodec_weights_sha256": sha256}
