"""Command-line options and run-folder handling shared by `pretrain` and `selftrain`:
the options, the resume lookup, the training data (a folder of audio is scanned once
into OUT/manifest.jsonl) and the checks that turn a corpus too small for the batch, or
too few shards for the loader, into one-line errors before any work is done."""
from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import torch.distributed as dist
from tqdm import tqdm

from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.files import claim_folder
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import FRAME_RATE, ModelConfig
from encodecmae_hear.train.data import ManifestSource, ShardSource, data_kind, default_workers, open_source
from encodecmae_hear.train.loop import Process, TrainConfig, init_process, split_batch, train
from encodecmae_hear.train.manifest import save_manifest, scan
from encodecmae_hear.train.state import latest_checkpoint, list_checkpoints

SCANNED_MANIFEST = "manifest.jsonl"  # in the run folder, when --data is a folder of audio
MIN_CROP_SECONDS = ModelConfig.mask_span / FRAME_RATE  # a crop holds one mask span (0.2 s)


def run_logger(run_dir, proc: Process):
    """Rank 0 prints (above the progress bar) and appends to run_dir/train.log."""
    path = Path(run_dir) / "train.log"

    def log(message: str) -> None:
        if not proc.main:  # other ranks report their problems only, to the console
            if message.startswith("warning"):
                tqdm.write(f"[rank {proc.rank}] {message}")
            return
        tqdm.write(message)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {message}\n")
    return log


def add_training_arguments(parser, steps: int) -> None:
    """Options of the loop, shared by `pretrain` and `selftrain`."""
    d = TrainConfig(out_dir="")
    parser.add_argument("--data", required=True,
                        help="a folder of audio files (searched recursively; scanned once into "
                             f"OUT/{SCANNED_MANIFEST}), a manifest .jsonl (see `manifest`), or tar "
                             "shards (a folder of .tar files or a glob pattern)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, model.pt")
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps in total")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="global batch (processes x micro-batch x accumulation)")
    parser.add_argument("--micro-batch", type=int, default=0,
                        help="crops per process per forward pass (0: no accumulation)")
    parser.add_argument("--crop-seconds", type=float, default=d.crop_seconds,
                        help="length of the random training crops (the paper: 4 s)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--schedule", choices=("constant", "cosine"), default=d.schedule)
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help="0 disables")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default=d.precision)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader processes per training process; if not given: the CPUs "
                             "this process may use, shared by the processes on this node, less one, "
                             f"at most 8, and at most the tar shards per process ({default_workers()} here)")
    parser.add_argument("--prefetch", type=int, default=d.prefetch, help="batches per worker in flight")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--keep", type=int, default=d.keep, help="step checkpoints to keep")
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest readable checkpoint in --out (if any)")


def find_resume(args, proc: Process, log=print) -> dict | None:
    """The payload to resume from (with --resume), refusing to overwrite a run without it."""
    if not args.resume:
        if list_checkpoints(args.out):
            raise UserError(f"{args.out} already holds checkpoints: pass --resume to continue "
                             f"that run, or choose another --out")
        return None
    found = latest_checkpoint(args.out, log=log)
    if found is None:
        log(f"--resume: no checkpoint in {args.out} yet; starting a new run")
        return None
    log(f"resuming from {found[0]}")
    return found[1]


def config_from_args(args) -> TrainConfig:
    positive = {"--steps": args.steps, "--batch-size": args.batch_size, "--crop-seconds": args.crop_seconds,
                "--lr": args.lr, "--checkpoint-every": args.checkpoint_every, "--log-every": args.log_every}
    for option, value in positive.items():
        if not value > 0:
            raise UserError(f"{option} must be positive, got {value}")
    if args.crop_seconds < MIN_CROP_SECONDS:
        raise UserError(f"--crop-seconds must be at least {MIN_CROP_SECONDS:g} (one mask span), "
                        f"got {args.crop_seconds:g}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    return TrainConfig(
        out_dir=args.out, steps=args.steps, batch_size=args.batch_size, micro_batch=args.micro_batch,
        crop_seconds=args.crop_seconds,
        lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        schedule=args.schedule, grad_clip=args.grad_clip, precision=args.precision,
        compile=args.compile, seed=args.seed,
        workers=default_workers() if args.workers is None else args.workers, prefetch=args.prefetch,
        checkpoint_every=args.checkpoint_every, keep=args.keep, log_every=args.log_every)


def training_data(args, resume: dict | None, proc: Process, log) -> tuple[str, str]:
    """--data as (a manifest or shards, its kind: data.data_kind), decided once here. A
    folder of audio files is scanned by rank 0 into OUT/manifest.jsonl; a resumed run
    reuses that file, so its data stay the same."""
    kind = data_kind(args.data)
    if kind != "audio":
        return args.data, kind
    manifest = Path(args.out) / SCANNED_MANIFEST
    if resume is not None and manifest.is_file():
        log(f"data: {manifest}, scanned from {args.data} when the run started "
            f"(delete it to scan the folder again)")
        return str(manifest), "manifest"
    if proc.main:
        log(f"data: scanning {args.data} for audio files ...")
        records, skipped = scan([args.data])
        for line in save_manifest(manifest, records, skipped):
            log(line)
    if proc.world > 1:  # the other ranks read what rank 0 wrote
        dist.barrier()
    return str(manifest), "manifest"


def fit_to_data(cfg: TrainConfig, source, proc: Process, workers_given: bool) -> TrainConfig:
    """Checks that the corpus fills a micro-batch and the shards feed every loader worker;
    without --workers, fewer workers are used where there are too few shards."""
    try:
        micro, _ = split_batch(cfg.batch_size, cfg.micro_batch, proc.world)
    except ValueError as err:
        raise UserError(f"{err}: choose --batch-size and --micro-batch to fit") from None
    if isinstance(source, ManifestSource) and len(source) < micro * proc.world:
        raise UserError(
            f"the corpus gives {len(source)} crops of {cfg.crop_seconds:g} s per epoch "
            f"({len(source.paths)} files, {source.hours * 3600:.1f} s of audio), fewer than one "
            f"micro-batch of {micro} crops x {proc.world} processes: add audio, or lower "
            f"--batch-size or --micro-batch")
    if isinstance(source, ShardSource):
        fit = len(source.shards) // proc.world  # workers per process with a shard each
        if fit == 0 or (workers_given and cfg.workers > fit):
            raise UserError(f"{len(source.shards)} tar shards cannot feed {proc.world} processes x "
                            f"{max(1, cfg.workers)} loader workers: pass --workers {max(fit, 1)}, "
                            f"or write more shards")
        cfg = dataclasses.replace(cfg, workers=min(cfg.workers, fit))
    return cfg


def start_run(args):
    """What every training command does first: process group, log, config, resume state,
    data. -> (proc, log, cfg, source, resume). The run folder is this run's alone until
    the process ends (files.claim_folder: the processes of one torchrun job share it)."""
    proc = init_process()
    claim_folder(args.out)
    log = run_logger(args.out, proc)
    cfg = config_from_args(args)
    resume = find_resume(args, proc, log)
    data, kind = training_data(args, resume, proc, log)
    source = open_source(data, cfg.seed, cfg.crop_seconds, kind=kind)
    cfg = fit_to_data(cfg, source, proc, workers_given=args.workers is not None)
    if proc.main:
        log(f"data loader: {cfg.workers} worker processes per training process")
    return proc, log, cfg, source, resume


def train_and_release(model, objective, source, cfg: TrainConfig, proc: Process, log, *,
                      provenance: dict, resume: dict | None, tokenizer=None) -> int:
    """Runs the loop; when it finishes, rank 0 writes OUT/model.pt. Returns the command's
    exit status: 0, or 143 / 130 after SIGTERM / SIGINT (the run resumes with --resume)."""
    status = train(model, objective, source, cfg, provenance=provenance, tokenizer=tokenizer,
                   resume=resume, log=log, proc=proc)
    if status != "done":
        return 143 if status == "SIGTERM" else 130
    if proc.main:
        release = Path(cfg.out_dir) / "model.pt"
        save_checkpoint(release, model, tokenizer=tokenizer,
                        provenance={**provenance, "steps": cfg.steps,
                                    "samples_seen": cfg.steps * cfg.batch_size})
        log(f"done: {release}")
    return 0
