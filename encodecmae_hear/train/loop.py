"""The training loop, shared by pretraining and self-training (one process per GPU).

    for step in range(start, steps):
        for each of `accum` micro-batches:  out = model(wav); loss = objective(out)
        clip gradients; AdamW step; log; checkpoint every N steps and on SIGTERM/SIGINT

Launch with `python -m encodecmae_hear pretrain ...` on one device, or with
`torchrun --nproc_per_node=G -m encodecmae_hear pretrain ...` for DDP (rank 0 writes
checkpoints and logs). What is random per step (crops, masks) is seeded by the step,
so a run stopped and resumed reaches the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from encodecmae_hear import files
from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.model.config import CHUNK_SECONDS, SAMPLE_RATE
from encodecmae_hear.train.data import default_workers, gpu_process_threads, make_loader
from encodecmae_hear.train.state import checkpoint_path, prune_checkpoints, rng_state, set_rng_state


@dataclass
class TrainConfig:
    out_dir: str
    steps: int = 500_000
    batch_size: int = 128         # global batch: processes x micro-batch x accumulation
    micro_batch: int = 0          # per process and forward pass; 0 = batch_size / processes
    crop_seconds: float = CHUNK_SECONDS
    lr: float = 1e-4
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 1000
    schedule: str = "constant"    # the reference's; or "cosine" down to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0        # max global grad norm; 0 disables
    precision: str = "auto"       # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    seed: int = 42
    workers: int = dataclasses.field(default_factory=default_workers)  # data-loader processes per process
    prefetch: int = 4
    checkpoint_every: int = 1000
    keep: int = 3
    log_every: int = 10


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class Process:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_process() -> Process:
    """Reads torchrun's environment; starts the process group once (nccl or gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=1))
    return Process(rank, world, local_rank, device)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    low = cfg.lr * cfg.min_lr_ratio
    return low + 0.5 * (cfg.lr - low) * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return name


class StopSignal:
    """SIGTERM/SIGINT ask the loop to checkpoint and stop; a second SIGINT interrupts."""

    def __init__(self):
        self.received = None
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name


class MetricsLog:
    """JSONL (always) and TensorBoard (when installed) on rank 0."""

    def __init__(self, run_dir: Path, resume_step: int, enabled: bool):
        self.enabled, self.path, self.tb = enabled, run_dir / "metrics.jsonl", None
        if not enabled:
            return
        if self.path.exists():  # drop records of steps that the resumed run redoes
            kept = [line for line in self.path.read_text().splitlines()
                    if _step_of(line) <= resume_step]
            files.write_text(self.path, "".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: needs tensorboard
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            pass

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):  # a line cut short by a kill
        return float("inf")


def split_batch(batch_size: int, micro_batch: int, world: int) -> tuple[int, int]:
    """Global batch -> (micro-batch per process, accumulation steps)."""
    micro = micro_batch or batch_size // world
    accum = batch_size // (micro * world) if micro >= 1 else 0
    if micro < 1 or accum * micro * world != batch_size:
        raise ValueError(f"batch size {batch_size} is not processes ({world}) x "
                         f"micro-batch ({micro}) x a whole number of accumulation steps")
    return micro, accum


def batch_inputs(batch: dict, crop_samples: int, device) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """-> (wav, lengths, loss weight) on `device`, and the batch as the objective's `crops`.
    A batch whose files all failed becomes one silent crop of weight 0 and no file
    (key None), so that every process still runs a pass (DDP in step)."""
    wav, lengths, weight = batch["wav"], batch["lengths"], 1.0
    if wav.shape[0] == 0:
        wav, lengths, weight = torch.zeros(1, crop_samples), torch.tensor([crop_samples]), 0.0
        batch = {**batch, "keys": [None], "starts": torch.zeros(1, dtype=torch.float64)}
    return wav.to(device, non_blocking=True), lengths.to(device, non_blocking=True), weight, batch


@dataclass
class Agreement:
    metrics: dict          # the step's metrics, means over processes (the global batch's)
    loss_finite: bool      # on every process
    stop: bool             # some process was asked to stop
    failed_files: int      # unreadable files skipped this step, on all processes


def agree_across_processes(totals: dict[str, torch.Tensor], stop_requested: bool,
                           failed_files: int, world: int) -> Agreement:
    """The one collective of a step: an all-reduce (sum) of the metrics, the stop requests
    and the skipped files, so that all processes log the global batch's metrics and take
    the same decision."""
    names = sorted(totals)
    loss = totals["loss"]
    values = torch.stack([*(totals[k].float() for k in names), loss.new_tensor(float(stop_requested)),
                          loss.new_tensor(float(failed_files))])
    if world > 1:
        dist.all_reduce(values)
    metrics = {k: values[i] / world for i, k in enumerate(names)}
    return Agreement(metrics, math.isfinite(float(metrics["loss"])), float(values[-2]) > 0,
                     int(values[-1]))


def save_step(run_dir: Path, step: int, cfg: TrainConfig, model, optimizer, scaler, objective,
              tokenizer, provenance: dict, data_position: dict, skipped_files: int) -> None:
    """Step checkpoint with everything a bit-for-bit resume needs; keeps the last `keep`."""
    training = {"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng_state(), "data": data_position, "objective": objective.state_dict(),
                "skipped_files": skipped_files}
    record = {**provenance, "steps": step, "samples_seen": step * cfg.batch_size}
    save_checkpoint(checkpoint_path(run_dir, step), model, tokenizer=tokenizer,
                    provenance=record, training=training)
    prune_checkpoints(run_dir, cfg.keep)


@dataclass
class Optimisation:
    """What one run steps with: the optimizer, its loss scaler and where it stands."""
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list
    step: int = 0
    skipped_files: int = 0


def start_optimisation(model, cfg: TrainConfig, precision: str, device, resume: dict | None,
                       log) -> Optimisation:
    """AdamW over the trainable parameters (and the fp16 loss scaler), from a resumed run's
    state, step and random state when there is one."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    run = Optimisation(optimizer, scaler, params)
    if resume is not None:
        state = resume["training"]
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        run.step, run.skipped_files = state["step"], state.get("skipped_files", 0)
        set_rng_state(state["rng"])
        log(f"resumed at step {run.step}")
    return run


def distribute_and_compile(model, cfg: TrainConfig, proc: Process):
    """The module the steps run: DDP around `model` with several processes; with
    cfg.compile the model's compiled parts in place (state-dict keys stay)."""
    net = model
    if proc.world > 1:
        ids = [proc.local_rank] if proc.device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:  # masking and gathers stay eager
        for name in getattr(model, "compiled_parts", ("encoder", "decoder")):
            if getattr(model, name, None) is not None:
                getattr(model, name).compile(dynamic=getattr(model, "compile_dynamic", True))
    return net


def accumulate(net, objective, batches, run: Optimisation, cfg: TrainConfig, proc: Process,
               accum: int, autocast, mask_rng: torch.Generator, log) -> tuple[dict, int]:
    """Forward and backward passes over `accum` micro-batches; -> (mean metrics, files
    that could not be read)."""
    crop_samples = int(cfg.crop_seconds * SAMPLE_RATE)
    totals: dict[str, torch.Tensor] = {}
    failed = 0
    for micro_step in range(accum):
        batch = next(batches)
        for name in batch["failed"]:
            log(f"warning: skipped unreadable audio: {name}")
        failed += len(batch["failed"])
        wav, lengths, weight, crops = batch_inputs(batch, crop_samples, proc.device)
        # Masks are seeded by the global micro-batch index: G processes x A accumulation
        # steps see the same masks (and crops) as one process with G x A accumulation.
        mask_rng.manual_seed(cfg.seed * 1_000_003 + (run.step * accum + micro_step) * proc.world + proc.rank)
        last = micro_step == accum - 1
        with nullcontext() if last or proc.world == 1 else net.no_sync():
            with autocast:
                out = net(wav, lengths, generator=mask_rng)
            targets = objective.targets(wav, lengths, out, crops=crops)
            metrics = objective.loss(out, targets)
            run.scaler.scale(metrics["loss"] * (weight / accum)).backward()
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value.detach().float() / accum
    return totals, failed


def optimizer_step(run: Optimisation, cfg: TrainConfig, totals: dict, failed: int, stop: StopSignal,
                   proc: Process, lr: float, run_dir: Path) -> tuple[Agreement, torch.Tensor]:
    """Clips, agrees with the other processes on the metrics and on stopping, refuses a
    non-finite loss, then steps. -> (the agreement, the gradient norm before clipping)."""
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip or float("inf"))
    agreed = agree_across_processes(totals, stop.received is not None, failed, proc.world)
    run.skipped_files += agreed.failed_files
    if not agreed.loss_finite:
        stop.close()
        raise NonFiniteLoss(f"loss is {float(agreed.metrics['loss'])} at step {run.step} (lr {lr:.3g}); "
                            f"the last checkpoint in {run_dir} is intact. Lower the lr, "
                            f"raise warmup, or try --precision fp32 / bf16")
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return agreed, grad_norm


def train(model, objective, source, cfg: TrainConfig, *, provenance: dict, tokenizer=None,
          resume: dict | None = None, log=print, proc: Process | None = None) -> str:
    """Trains `model` on `source` until cfg.steps or a stop signal, in the process group
    `proc` (built here when not given). Returns "done" or the name of the signal that
    stopped it."""
    proc = proc or init_process()
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    micro, accum = split_batch(cfg.batch_size, cfg.micro_batch, proc.world)
    precision = resolve_precision(cfg.precision, proc.device)
    model.to(proc.device).train()
    objective.to(proc.device)
    run = start_optimisation(model, cfg, precision, proc.device, resume, log)
    net = distribute_and_compile(model, cfg, proc)
    autocast = torch.autocast(proc.device.type, dtype=torch.bfloat16 if precision == "bf16"
                              else torch.float16, enabled=precision in ("bf16", "fp16"))
    batches = iter(make_loader(source, micro, proc.rank, proc.world, cfg.seed, run.step * accum,
                               cfg.workers, cfg.prefetch, pin_memory=proc.device.type == "cuda"))
    if proc.device.type == "cuda":
        torch.set_num_threads(gpu_process_threads(cfg.workers))
    stop = StopSignal()
    metrics_log = MetricsLog(run_dir, run.step, proc.main)
    mask_rng = torch.Generator()
    provenance = {**provenance, "precision": precision, "world_size": proc.world,
                  "train_config": dataclasses.asdict(cfg)}

    bar = tqdm(total=cfg.steps, initial=run.step, disable=not proc.main, unit="step",
               dynamic_ncols=True, mininterval=2.0)
    window_start, window_steps, status = time.perf_counter(), 0, "done"
    while run.step < cfg.steps:
        lr = lr_at(run.step, cfg)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        totals, failed = accumulate(net, objective, batches, run, cfg, proc, accum, autocast, mask_rng, log)
        agreed, grad_norm = optimizer_step(run, cfg, totals, failed, stop, proc, lr, run_dir)
        window_steps += 1
        bar.update(1)
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            seconds = time.perf_counter() - window_start
            record = {"step": run.step, "lr": lr, "grad_norm": float(grad_norm),
                      **{k: float(v) for k, v in agreed.metrics.items()},
                      "steps_per_s": window_steps / seconds,
                      "samples_per_s": window_steps * cfg.batch_size / seconds,
                      "audio_hours_seen": run.step * cfg.batch_size * cfg.crop_seconds / 3600,
                      "skipped_files": run.skipped_files, "time": time.time()}
            metrics_log.write(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record.get('masked_accuracy', 0):.3f}",
                            sps=f"{record['samples_per_s']:.1f}", refresh=False)
            window_start, window_steps = time.perf_counter(), 0
        if agreed.stop:
            status = stop.received or "SIGTERM"
            log(f"{status}: saving step {run.step} and stopping")
        if proc.main and (agreed.stop or run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps):
            position = {"micro_batches_per_process": run.step * accum, "micro_batch": micro,
                        "world_size": proc.world, "seed": cfg.seed}
            save_step(run_dir, run.step, cfg, model, run.optimizer, run.scaler, objective, tokenizer,
                      provenance, position, run.skipped_files)
        if agreed.stop:
            break
    bar.close()
    stop.close()
    metrics_log.close()
    if proc.world > 1:
        dist.barrier()
    return status
