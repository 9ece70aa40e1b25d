"""`embed`: embeddings of your own audio files, through the HEAR API, at any scale.

    python -m encodecmae_hear embed recordings/ --out embeddings/
    python -m encodecmae_hear embed corpus.jsonl --out emb/ --scene --shard-size 10000
    torchrun --nproc_per_node=8 -m encodecmae_hear embed corpus.jsonl --out emb/ --device cuda

Every file is decoded with soundfile, its channels averaged, resampled with the
project's resampler to the model's HEAR rate (`audio.load_audio`, in DataLoader worker
processes: embed_io.py), then embedded through the HEAR path (`HearModel.embed_sounds`,
the windows of up to --batch files in shared forwards): for each file what
`get_timestamp_embeddings` (or `get_scene_embeddings` with --scene) gives for that
audio alone, within float rounding. A background thread writes the outputs. Outputs mirror the input tree under --out, in heareval's names:
`a.wav.embedding.npy` (n_frames, E) float32 and `a.wav.timestamps.npy` (n_frames,)
frame centres in ms; with --scene only `a.wav.embedding.npy` (E,). With --shard-size N,
N inputs per `shard-000000.npz` instead (see `shard_arrays`).

Re-running skips finished outputs, so a killed job continues where it stopped. Files
that cannot be decoded or embedded are listed (stderr, `failed.txt`) and skipped, and so
is what the folder walker skipped (FIFOs, link loops, broken links: walk.py); names are
written as `files.shown` prints them (one line each, even when not UTF-8). One run at a
time writes to --out (files.claim_folder: a second run there ends at once, naming the
first); the temporary files a killed run left are removed when the next one starts.
Under torchrun (WORLD_SIZE, RANK) each process takes its share of the inputs
(embed_plan.py) and the outputs are those one process writes (within float rounding:
the files that share a forward differ).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from encodecmae_hear import files
from encodecmae_hear.walk import Found
from encodecmae_hear.checkpoint import resolve_checkpoint
from encodecmae_hear.commands import embed_io
from encodecmae_hear.commands import embed_plan as plan
from encodecmae_hear.errors import UserError
from encodecmae_hear.files import shown
from encodecmae_hear.hear import DTYPES, frame_timestamps, load_model

CALL_SECONDS = 3600.0  # a HEAR call takes files until they hold this much audio (or --batch files)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively) or manifests (.jsonl, "
                             "a \"path\" per line); any sample rate and channel count")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder; re-running with the same settings resumes")
    parser.add_argument("--model", default=None,
                        help="checkpoint path or name; None: the bundled checkpoints/default.pt")
    parser.add_argument("--layer", default=None,
                        help="layer option of load_model: last, an index, mean, concat, "
                             "input+concat; None: the checkpoint's recommendation")
    parser.add_argument("--scene", action="store_true",
                        help="one (E,) vector per file, the mean over time, instead of frames")
    parser.add_argument("--shard-size", type=int, default=0, metavar="N",
                        help="write N inputs per shard-NNNNNN.npz instead of one file per input "
                             "(a shard is held in memory until it is written); 0: no shards")
    parser.add_argument("--batch", type=int, default=64, metavar="N",
                        help="files per HEAR call (of any lengths; at most an hour of audio): "
                             "their 4 s windows share forwards, which keeps a GPU busy with "
                             "short clips; also the share size between processes")
    parser.add_argument("--windows", type=int, default=None, metavar="N",
                        help="4 s windows per forward (load_model's chunk_batch_size; on CPU "
                             "at most one per thread); None: 64 on CUDA, 16 on CPU")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes that decode and resample the files ahead of the model; "
                             "0: in this process; None: on CUDA the CPUs less one (per torchrun "
                             f"process), at most {embed_io.MAX_WORKERS}; on CPU 0")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N; None: cuda if available. Under torchrun "
                             "cuda means cuda:LOCAL_RANK")
    parser.add_argument("--follow-outside", action="store_true",
                        help="follow links to folders outside the given folders (by default "
                             "they are skipped and listed in failed.txt)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="dtype option of load_model (the outputs stay float32): bf16 runs "
                             "the Transformer under bf16 autocast, and the EnCodec frontend in bf16 "
                             "where the hardware has it; int8 (CPU) the encoder's Linear layers "
                             "in dynamic int8 (one window per forward); None: bf16 on CUDA, "
                             "fp32 on CPU")


def pick_device(name: str | None, local_rank: int) -> torch.device:
    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def shard_arrays(unit, results: dict, failed: dict, scene: bool, width: int) -> dict:
    """A shard's arrays: `names` (n,) of the embedded inputs in order; `embeddings`
    (n, E) with --scene, else all frames one after another (sum of T, E) with
    `timestamps` (sum of T,) and `offsets` (n + 1,): input i is rows offsets[i]:offsets[i+1];
    `failed` (names of this shard's inputs that could not be embedded)."""
    done = [item for item in unit if item in results]
    arrays = {"names": np.array([item.name for item in done], dtype=str)}
    rows = [results[item][0] for item in done]
    if scene:
        arrays["embeddings"] = np.stack(rows) if rows else np.zeros((0, width), np.float32)
    else:
        arrays["embeddings"] = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
        arrays["timestamps"] = np.concatenate([results[i][1] for i in done]) if rows \
            else np.zeros(0, np.float32)
        arrays["offsets"] = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    arrays["failed"] = np.array([item.name for item in unit if item in failed], dtype=str)
    return arrays


class Embedder:
    """Takes decoded files in order; up to --batch of them (at most CALL_SECONDS of
    audio) go through the HEAR path in one call, their windows sharing forwards; a
    finished unit goes to the writer."""

    def __init__(self, args, model, out: Path, bar, writer: embed_io.Writer):
        self.args, self.model, self.out, self.bar, self.writer = args, model, out, bar, writer
        self.group: list = []    # (item, audio (n_samples,)) waiting for one call
        self.group_samples = 0
        self.results: dict = {}  # item -> (embedding on the CPU, copy event or None), until written
        self.failed: dict = {}   # item -> why
        self.embedded, self.seconds = 0, 0.0

    def add(self, item, audio, reason) -> None:
        if reason is not None:
            self.failed[item] = reason
            self.bar.write(f"embed: failed: {shown(item.source)}: {reason}", file=sys.stderr)
            self.bar.update(1)
            return
        self.group.append((item, audio))
        self.group_samples += audio.shape[0]
        if len(self.group) == self.args.batch or self.group_samples >= CALL_SECONDS * self.model.sample_rate:
            self.flush()

    def flush(self) -> None:
        if not self.group:
            return
        device = self.model.device
        sounds = [audio.to(device, non_blocking=True) for _, audio in self.group]  # pinned on CUDA
        embeddings, copied = embed_io.to_host(self.model.embed_sounds(sounds, scene=self.args.scene))
        for (item, _), embedding in zip(self.group, embeddings):
            self.results[item] = (embedding, copied)
        self.embedded += len(self.group)
        self.seconds += self.group_samples / self.model.sample_rate
        self.bar.update(len(self.group))
        self.group, self.group_samples = [], 0

    def write_unit(self, index: int, unit: list) -> None:
        self.flush()
        members = set(unit)
        failed = {item: why for item, why in self.failed.items() if item in members}
        self.writer.submit(write_outputs, self.out, index, unit, self.results, failed, self.args,
                           self.model.timestamp_embedding_size)
        self.results = {}


def write_outputs(out: Path, index: int, unit: list, results: dict, failed: dict, args, width: int) -> None:
    """The writer's job: one unit's outputs, each file atomically (files.py)."""
    arrays = {}
    for item, (embedding, copied) in results.items():
        if copied is not None:
            copied.synchronize()  # the copy from the device has landed
        embedding = embedding.numpy()
        arrays[item] = (embedding, None if args.scene else frame_timestamps(len(embedding)).numpy())
    if args.shard_size:
        files.write_npz(plan.shard_path(out, index), shard_arrays(unit, arrays, failed, args.scene, width))
        return
    for item, (embedding, timestamps) in arrays.items():
        paths = plan.output_paths(out, item, args.scene)
        if timestamps is not None:
            files.write_npy(paths[0], timestamps)
        files.write_npy(paths[-1], embedding)


def open_model(args, local_rank: int):
    """-> (HearModel on its device, checkpoint path)."""
    device = pick_device(args.device, local_rank)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    windows = args.windows or (64 if device.type == "cuda" else 16)  # CPU: capped at one per thread
    path = resolve_checkpoint(args.model or "")
    try:
        model = load_model(str(path), layer=args.layer, dtype=args.dtype, chunk_batch_size=windows).to(device)
    except ValueError as err:
        raise UserError(str(err)) from None
    return model, path


def run(args: argparse.Namespace) -> int:
    if args.batch < 1 or args.shard_size < 0:
        raise UserError(f"--batch must be >= 1 and --shard-size >= 0; got {args.batch} and {args.shard_size}")
    if (args.windows is not None and args.windows < 1) or (args.workers is not None and args.workers < 0):
        raise UserError(f"--windows must be >= 1 and --workers >= 0; got {args.windows} and {args.workers}")
    rank, world, local_rank = (int(os.environ.get(name, default)) for name, default in
                               (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # torchrun's
    items, scan_skipped = plan.collect_inputs(args.inputs, args.follow_outside)
    model, path = open_model(args, local_rank)
    out = args.out
    with files.sole_writer(out):
        return _embed(args, items, scan_skipped, model, path, rank, world)


def _embed(args, items, scan_skipped, model, path, rank: int, world: int) -> int:
    out = args.out
    plan.check_settings(out, {
        "model_sha256": files.sha256_of(path), "layer": model.layer, "standardise": model.standardise,
        "sample_rate": model.sample_rate, "embedding_size": model.timestamp_embedding_size,
        "scene": args.scene, "shard_size": args.shard_size, "dtype": args.dtype,
    }, notes={"model": str(path)})

    def to_compute(index, unit) -> list:  # a shard is done as a whole, files one by one
        if args.shard_size:
            return [] if plan.shard_path(out, index).exists() else unit
        return [item for item in unit if not plan.output_paths(out, item, args.scene)[-1].exists()]

    mine = dict(plan.units(items, args.shard_size or args.batch, rank, world))
    todo = {index: work for index, unit in mine.items() if (work := to_compute(index, unit))}
    jobs = [(index, item) for index, work in todo.items() for item in work]
    total = sum(map(len, mine.values()))
    skipped = total - len(jobs)

    label = f"embed rank {rank}/{world}" if world > 1 else "embed"
    bar = tqdm(total=total, initial=skipped, desc=label, unit="file", disable=not sys.stderr.isatty())
    if args.workers is None:
        args.workers = embed_io.default_workers(model.device, world)
    writer = embed_io.Writer()
    job = Embedder(args, model, out, bar, writer)
    start = time.perf_counter()
    decoded = embed_io.decoded_files([item for _, item in jobs], model.sample_rate, args.workers,
                                     pin_memory=model.device.type == "cuda")
    try:
        for (index, item), result in zip(jobs, decoded):
            job.add(*result)
            if item is todo[index][-1]:
                job.write_unit(index, mine[index])
            bar.set_postfix_str(f"{job.seconds / 3600 / (time.perf_counter() - start):.3g} audio h/s",
                                refresh=False)
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    finally:
        decoded.close()  # the worker processes end
        bar.close()

    elapsed = time.perf_counter() - start
    failed_list = plan.failed_path(out, rank, world)  # the failures of the last run with work to do
    listed = [(p, f"skipped: {why}") for p, why in scan_skipped] if rank == 0 else []
    if listed:
        print(f"{label}: {walk_summary(scan_skipped)} (listed in {shown(failed_list)})", file=sys.stderr)
    listed += [(item.source, why) for item, why in job.failed.items()]
    if listed and (jobs or not failed_list.exists()):
        files.write_text(failed_list, "".join(f"{shown(p)}\t{why}\n" for p, why in listed))
    elif jobs:
        failed_list.unlink(missing_ok=True)
    rate = job.seconds / 3600 / elapsed if elapsed > 0 else 0.0
    print(f"{label}: {job.embedded} files embedded ({job.seconds / 3600:.3f} h of audio in "
          f"{elapsed:.1f} s, {rate:.3g} audio h/s), {skipped} already done, {len(job.failed)} failed"
          + (f" (listed in {shown(failed_list)})" if job.failed else "") + f" -> {shown(out)}")
    return 1 if job.failed and not (job.embedded or skipped) else 0


def walk_summary(skipped) -> str:
    return Found(skipped=list(skipped)).summary() or ""
