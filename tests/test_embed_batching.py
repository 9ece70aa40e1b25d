"""`embed` batches across files: the 4 s windows of many sounds share a forward. A
sound's embedding must not depend on what it shares a forward with, in which order, in
which process, or who decoded it. On a CPU the HEAR path runs one window per thread at
a time, so these tests raise that limit (or the thread count), so that windows of
sounds of different lengths really meet in one forward, and compare file by file."""
from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
import torch

from encodecmae_hear import embed_file, hear
from encodecmae_hear.cli import main
from encodecmae_hear.commands import embed_io
from encodecmae_hear.hear import get_scene_embeddings, get_timestamp_embeddings, load_model
from tests.test_embed import TREE, outputs, run_embed, write_tree

TIGHT = dict(rtol=1e-5, atol=1e-5)  # fp32: float rounding of other batch shapes, nothing more
SECONDS = (0.5, 1.3, 4.0, 5.0, 9.7, 0.9, 2.2)  # one to three windows, full and partial


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("audio"))


@pytest.fixture
def shared_forwards(monkeypatch):
    """Up to 8 windows per forward on this CPU, and a record of every forward's
    valid lengths, so that a test can show that sounds really shared one."""
    monkeypatch.setattr(hear, "CPU_WINDOWS_PER_THREAD", 8)
    forwards = []
    encode_windows = hear.HearModel.encode_windows

    def recording(self, wav, lengths):
        forwards.append(lengths.tolist())
        return encode_windows(self, wav, lengths)

    monkeypatch.setattr(hear.HearModel, "encode_windows", recording)
    return forwards


def sounds() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [(0.2 * torch.randn(round(s * 48000), generator=gen)).clamp(-1, 1) for s in SECONDS]


def mixed(forwards: list) -> bool:
    """Whether some forward held windows with different amounts of audio."""
    return any(len(set(lengths)) > 1 for lengths in forwards)


@pytest.mark.parametrize("scene", [False, True])
def test_a_sound_embeds_the_same_whatever_shares_its_forward(model, shared_forwards, scene):
    audio = sounds()
    alone = [(get_scene_embeddings if scene else lambda a, m: get_timestamp_embeddings(a, m)[0])(s[None], model)[0]
             for s in audio]
    shared_forwards.clear()
    together = model.embed_sounds(audio, scene=scene)
    assert mixed(shared_forwards)
    order = list(range(len(audio)))
    random.Random(1).shuffle(order)
    shuffled = dict(zip(order, model.embed_sounds([audio[i] for i in order], scene=scene)))
    pairs = [e for i in range(0, len(audio), 2) for e in model.embed_sounds(audio[i:i + 2], scene=scene)]
    for i, want in enumerate(alone):
        assert together[i].shape == want.shape, SECONDS[i]
        for got in (together[i], shuffled[i], pairs[i]):
            np.testing.assert_allclose(got.numpy(), want.numpy(), err_msg=f"{SECONDS[i]} s", **TIGHT)


def test_the_command_gives_each_file_the_same_in_any_grouping(tree, tiny_checkpoint, model, tmp_path,
                                                             shared_forwards):
    runs = {}
    for batch in ("1", "16"):
        shared_forwards.clear()
        out = tmp_path / batch
        assert main(["embed", str(tree), "--out", str(out), "--model", str(tiny_checkpoint),
                     "--batch", batch, "--workers", "0"]) == 0
        # --batch 1: a forward per file; 16: all six windows of the five files in one
        assert len(shared_forwards) == (len(TREE) if batch == "1" else 1) and mixed(shared_forwards)
        runs[batch] = out
    for name, *_ in TREE:
        want = embed_file(tree / name, model)[0].numpy()  # today's per-file path
        for out in runs.values():
            np.testing.assert_allclose(np.load(out / f"{name}.embedding.npy"), want, err_msg=name, **TIGHT)
            np.testing.assert_array_equal(np.load(out / f"{name}.timestamps.npy"),
                                          np.load(runs["1"] / f"{name}.timestamps.npy"))


def test_worker_processes_decode_what_this_process_decodes(tree, tiny_checkpoint, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    decode = embed_io.decode

    def noting(item, sample_rate):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return decode(item, sample_rate)

    monkeypatch.setattr(embed_io, "decode", noting)  # forked workers inherit it
    for workers in ("0", "2"):
        assert main(["embed", str(tree), "--out", str(tmp_path / workers), "--model", str(tiny_checkpoint),
                     "--workers", workers]) == 0
    seen = pids.read_text().split()
    assert len(seen) == 2 * (len(TREE) + 1)  # every file and the corrupt one, once per run
    assert set(seen[:len(TREE) + 1]) == {str(os.getpid())}
    assert len(set(seen[len(TREE) + 1:]) - {str(os.getpid())}) == 2  # two other processes
    zero, two = outputs(tmp_path / "0"), outputs(tmp_path / "2")
    assert zero.keys() == two.keys() and len(zero) == 2 * len(TREE) + 1
    for name in zero:
        if name.endswith(".npy"):
            np.testing.assert_allclose(np.load(tmp_path / "2" / name), np.load(tmp_path / "0" / name),
                                       rtol=1e-6, atol=1e-6)
    assert (tmp_path / "0" / "failed.txt").read_text() == (tmp_path / "2" / "failed.txt").read_text()


def test_two_processes_grouping_differently_write_what_one_process_writes(tree, tiny_checkpoint, tmp_path):
    """One process: every file in one call (--batch 8). torchrun, 2 ranks: calls of two
    files, taken turn about. 4 threads: forwards of 4 windows, mixing files."""
    args = ["-m", "encodecmae_hear", "embed", tree, "--model", tiny_checkpoint, "--device", "cpu"]
    threads = {"OMP_NUM_THREADS": "4"}
    one = run_embed(*args, "--out", tmp_path / "one", "--batch", "8", env=threads)
    two = run_embed("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    *args, "--out", tmp_path / "two", "--batch", "2", env=threads)
    for proc in (one, two):
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-3000:]
    shares = dict(map(int, m) for m in re.findall(r"embed rank (\d)/2: (\d+) files embedded", log))
    assert shares == {0: 3, 1: 2}  # [a, a2] [d] and [b, c]
    single, pair = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert single.keys() == pair.keys() and len(single) == 2 * len(TREE) + 1
    assert single.pop("embed.json") == pair.pop("embed.json")
    for name in single:
        np.testing.assert_allclose(np.load(tmp_path / "two" / name), np.load(tmp_path / "one" / name),
                                   err_msg=name, **TIGHT)
