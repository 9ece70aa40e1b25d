"""Command-line options and run-folder handling shared by `pretrain` and `selftrain`."""
from __future__ import annotations

import datetime
from pathlib import Path

from tqdm import tqdm

from encodecmae_hear.errors import UserError
from encodecmae_hear.train.data import open_source
from encodecmae_hear.train.loop import Process, TrainConfig, init_process
from encodecmae_hear.train.state import latest_checkpoint, list_checkpoints


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
                        help="manifest .jsonl (see `manifest`), or a folder / glob of .tar shards")
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
    parser.add_argument("--workers", type=int, default=d.workers, help="data-loader processes")
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
    return TrainConfig(
        out_dir=args.out, steps=args.steps, batch_size=args.batch_size, micro_batch=args.micro_batch,
        crop_seconds=args.crop_seconds,
        lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        schedule=args.schedule, grad_clip=args.grad_clip, precision=args.precision,
        compile=args.compile, seed=args.seed, workers=args.workers, prefetch=args.prefetch,
        checkpoint_every=args.checkpoint_every, keep=args.keep, log_every=args.log_every)


def start_run(args):
    """What every training command does first: process group, log, config, data, resume
    state. -> (proc, log, cfg, source, resume)."""
    proc = init_process()
    log = run_logger(args.out, proc)
    cfg = config_from_args(args)
    source = open_source(args.data, cfg.seed, cfg.crop_seconds)
    return proc, log, cfg, source, find_resume(args, proc, log)
