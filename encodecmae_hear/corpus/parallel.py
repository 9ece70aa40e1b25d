"""The corpus build's per-file work in several processes (`corpus --jobs N`).

Workers are forked, so the items (which hold closures: a package member to read, a
voice to speak, a piece to render) reach them without pickling; only each call's result
travels back, in input order. Every file is written atomically and every worker runs
torch on one thread, as the single-process build does, so the decoded audio is the same
whatever the number of processes (libsndfile picks each Ogg stream's serial number at
random, so the bytes are not).
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

import torch

_WORK: tuple[Callable, Sequence] | None = None  # set in the parent just before forking


def _one_thread() -> None:
    # A forked child must not enter the parent's OpenMP thread pool (its threads are not
    # copied, so the first parallel torch op would wait for them forever); one thread
    # runs every op inline.
    torch.set_num_threads(1)


def _call(index: int):
    function, items = _WORK
    return function(items[index])


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_in_order(function: Callable, items: Sequence, jobs: int) -> Iterator:
    """function(item) for every item, in order; jobs > 1 runs them in forked workers."""
    global _WORK
    if jobs <= 1 or len(items) < 2:
        yield from map(function, items)
        return
    _WORK = (function, items)
    try:
        with multiprocessing.get_context("fork").Pool(jobs, initializer=_one_thread) as pool:
            yield from pool.imap(_call, range(len(items)), chunksize=4)
    finally:
        _WORK = None
