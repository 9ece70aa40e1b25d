"""`embed`'s input and output around the model: files decoded and resampled in DataLoader
worker processes, embeddings copied back from the device without waiting, and outputs
written by a background thread.

* `decoded_files` yields (item, mono audio at the HEAR rate, None) or (item, None, why
  it failed) for each item, in order; `workers` processes decode ahead (0: in this
  process). On CUDA the audio comes in pinned memory, so that its copy to the device
  need not block.
* `to_host` starts the copies of a call's embeddings to the CPU; on CUDA into pinned
  memory without blocking, with an event that the writer waits for.
* `Writer` runs write jobs in one thread, in order, at most `ahead` behind; an error
  there (a full disk) is raised in the caller at its next submit or at close.
"""
from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, Dataset

from encodecmae_hear.audio import check_audio, load_audio
from encodecmae_hear.errors import one_line

MAX_WORKERS = 8     # decoding processes by default: enough to feed one GPU with short clips
PREFETCH_FILES = 8  # files each worker decodes ahead


def decode(item, sample_rate: int):
    """-> (item, mono audio (n_samples,) at `sample_rate`, None) or (item, None, why it failed)."""
    try:
        audio = load_audio(item.source, sample_rate)
    except OSError as err:  # missing, no permission, an I/O error: errno's words
        return item, None, f"cannot read: {err.strerror or err}"
    except ValueError as err:  # a FIFO or a folder; a sample rate out of range
        return item, None, str(err)
    except MemoryError:
        return item, None, "out of memory decoding it"
    except Exception as err:  # soundfile raises LibsndfileError (a RuntimeError), TypeError
        why = getattr(err, "error_string", None) or str(err)  # libsndfile's words, not the path again
        return item, None, f"cannot decode: {one_line(why, 300)}"
    try:
        check_audio(audio[None], sample_rate)  # the HEAR API's own input check, per file
    except ValueError as err:
        return item, None, str(err)
    return item, audio, None


class DecodedFiles(Dataset):
    """items[i] -> decode(items[i], sample_rate), in whichever process asks."""

    def __init__(self, items: list, sample_rate: int):
        self.items, self.sample_rate = items, sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return decode(self.items[index], self.sample_rate)


def as_is(sample):
    return sample


def default_workers(device: torch.device, world: int = 1) -> int:
    """Decoding processes per embedding process: on CUDA the CPUs it may use, less one
    for itself, at most MAX_WORKERS; on CPU none, as the model's threads already use
    every core (2 cores, 10 s clips: one worker made the command 1.2x slower,
    docs/RESULTS.md)."""
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_WORKERS, cpus // max(world, 1) - 1))


def decoded_files(items: list, sample_rate: int, workers: int, pin_memory: bool):
    """Yields decode(item) for each item in order, decoded by `workers` processes."""
    workers = min(workers, len(items))
    loader = DataLoader(DecodedFiles(items, sample_rate), batch_size=None, collate_fn=as_is,
                        num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=PREFETCH_FILES if workers else None)
    yield from loader


def to_host(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.cuda.Event | None]:
    """Device tensors -> (their CPU copies, None), or on CUDA (pinned copies still being
    filled, the event that marks them done)."""
    if not tensors or tensors[0].device.type != "cuda":
        return [t.cpu() for t in tensors], None
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
            for t in tensors]
    done = torch.cuda.Event()
    done.record()
    return host, done


class Writer:
    """Runs write jobs in one background thread, in the order given."""

    def __init__(self, ahead: int = 4):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-writer")
        self.pending: collections.deque = collections.deque()
        self.ahead = ahead

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while self.pending and (len(self.pending) > self.ahead or self.pending[0].done()):
            self.pending.popleft().result()  # the writer's error, raised here

    def close(self) -> None:
        """Waits for every job; raises the first error."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        """After an error or Ctrl-C: drops the jobs not started (atomic writes: what is
        on disk stays whole, a re-run writes the rest)."""
        self.pending.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
