"""Training data: manifest scan, crops, skipped files, resumable order, tar shards."""
import json
import tarfile

import numpy as np
import soundfile as sf
import torch

from encodecmae_hear.cli import main
from encodecmae_hear.train.data import EpochBatchSampler, ManifestSource, ShardSource, make_loader
from encodecmae_hear.train.manifest import read_manifest, write_shards
from tests.train_helpers import tones, write_corpus, write_manifest


def test_manifest_lists_all_formats_and_reports_what_it_skips(tmp_path, capsys):
    files = write_corpus(tmp_path / "audio")
    sf.write(tmp_path / "audio" / "g.mp3", tones(24000, 2.0, 1, 9), 24000)
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    sf.write(tmp_path / "audio" / "blip.wav", np.zeros(100, np.float32), 24000)  # 4 ms
    (tmp_path / "audio" / "notes.txt").write_text("not audio, not listed")
    out = tmp_path / "m.jsonl"
    assert main(["manifest", str(tmp_path / "audio"), "-o", str(out)]) == 0
    records = read_manifest(out)
    names = sorted(r["path"].rsplit("/", 1)[1] for r in records)
    assert names == sorted([f.name for f in files] + ["g.mp3"])
    c = next(r for r in records if r["path"].endswith("c.ogg"))
    assert (c["sample_rate"], c["channels"], round(c["duration"], 2)) == (44100, 1, 9.0)
    printed = capsys.readouterr().out
    assert "skipped 2" in printed and "unreadable" in printed and "shorter than" in printed
    skipped = (tmp_path / "m.jsonl.skipped.txt").read_text()
    assert "broken.wav" in skipped and "blip.wav" in skipped


def test_crops_are_4s_mono_24k_padded_and_duration_weighted(tmp_path):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(int(16000 * 1.5))).astype(np.float32)
    sf.write(tmp_path / "cancel.wav", np.stack([x, -x], 1), 16000)  # mixdown is silence
    sf.write(tmp_path / "long.flac", tones(44100, 9.0, 1, 1), 44100)
    source = ManifestSource(write_manifest(tmp_path / "m.jsonl",
                                           [tmp_path / "cancel.wav", tmp_path / "long.flac"]))
    assert len(source) == 1 + 2  # 1.5 s -> once, 9 s -> 9 // 4 = twice per epoch
    wav, valid = source[(0, 0)]
    assert wav.shape == (96000,) and valid == 36000  # 1.5 s at 24 kHz, zero-padded
    assert wav.abs().max() < 1e-3  # L + R cancel (up to 16-bit rounding)
    wav, valid = source[(0, 1)]
    assert valid == 96000 and 0.05 < wav.std() < 1
    # The crop offset is a function of (seed, epoch, entry): same key, same crop.
    assert torch.equal(source[(3, 2)][0], source[(3, 2)][0])
    assert not torch.equal(source[(3, 2)][0], source[(4, 2)][0])


def test_unreadable_file_is_dropped_from_its_batch_not_fatal(tmp_path):
    files = write_corpus(tmp_path / "audio")
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    files[3].write_bytes(b"\x00garbage" * 100)  # corrupted after the scan
    source = ManifestSource(manifest)
    loader = make_loader(source, micro=len(source), rank=0, world=1, seed=0, start=0, num_workers=0)
    batch = next(iter(loader))
    assert len(batch["failed"]) == 1 and "d.wav" in batch["failed"][0]
    assert batch["wav"].shape == (len(source) - 1, 96000)
    assert batch["lengths"].shape == (len(source) - 1,)


def test_batches_do_not_depend_on_workers_and_resume_mid_epoch(tmp_path):
    files = write_corpus(tmp_path / "audio")
    source = ManifestSource(write_manifest(tmp_path / "m.jsonl", files), seed=3, crop_seconds=1.0)

    def take(start, n, workers):
        loader = make_loader(source, 2, 0, 1, 3, start, num_workers=workers)
        it = iter(loader)
        return [next(it)["wav"] for _ in range(n)]

    straight = take(0, 8, workers=0)
    for a, b in zip(straight[5:], take(5, 3, workers=2)):
        assert torch.equal(a, b)


def test_sampler_splits_global_batches_across_ranks():
    single = EpochBatchSampler(24, micro=4, rank=0, world=1, seed=1)
    ranks = [EpochBatchSampler(24, micro=2, rank=r, world=2, seed=1) for r in range(2)]
    s, r0, r1 = iter(single), iter(ranks[0]), iter(ranks[1])
    for _ in range(9):  # across epoch boundaries (6 global batches per epoch)
        assert next(s) == next(r0) + next(r1)
    assert single.position(13) == {"epoch": 2, "batch_in_epoch": 1, "micro_batches": 13}


def test_tar_shards_serve_the_same_batches_and_resume(tmp_path):
    files = write_corpus(tmp_path / "audio")
    records = read_manifest(write_manifest(tmp_path / "m.jsonl", files))
    shards = write_shards(records, tmp_path / "shards", per_shard=3)
    assert len(shards) == 2
    meta = json.loads(__import__("tarfile").open(shards[0]).extractfile("000000000.json").read())
    assert meta["duration"] == 1.5
    source = ShardSource(tmp_path / "shards", seed=5, crop_seconds=1.0)

    def take(start, n):
        it = iter(make_loader(source, 2, 0, 1, 5, start, num_workers=2))
        return [next(it) for _ in range(n)]

    straight = take(0, 9)
    assert all(b["wav"].shape == (2, 24000) and not b["failed"] for b in straight)
    for a, b in zip(straight[5:], take(5, 4)):
        assert torch.equal(a["wav"], b["wav"]) and torch.equal(a["lengths"], b["lengths"])


def _source_of(crop: np.ndarray, sources: dict) -> tuple[str, int]:
    """(file name, offset) of the verbatim slice of a source that `crop` is."""
    for name, audio in sources.items():
        for start in np.flatnonzero(audio[: len(audio) - len(crop) + 1] == crop[0]):
            if np.array_equal(audio[start: start + len(crop)], crop):
                return name, int(start)
    raise AssertionError("crop matches no slice of any source file")


def test_two_ranks_read_their_own_shards_crops_of_their_sources_and_survive_a_damaged_one(tmp_path):
    """World size 2: rank r reads exactly the shards i with i % 2 == r, every crop is a
    slice of the file the shard packed (24 kHz mono sources: no resampling), and a
    damaged shard is reported once per epoch by its rank, which goes on with the rest."""
    files = write_corpus(tmp_path / "audio", [(f"{i}.wav", 24000, 1.5 + i, 1) for i in range(8)])
    records = read_manifest(write_manifest(tmp_path / "m.jsonl", files))
    shards = write_shards(records, tmp_path / "shards", per_shard=2)  # 4 shards of 2 files
    packed = []  # shard index -> names of the files it holds
    for shard in shards:
        with tarfile.open(shard) as tar:
            packed.append({json.loads(tar.extractfile(m).read())["path"]
                           for m in tar.getmembers() if m.name.endswith(".json")})
    assert set().union(*packed) == {f.name for f in files}
    shards[3].write_bytes(b"not a tar file " * 64)
    sources = {f.name: sf.read(f, dtype="float32")[0] for f in files}
    crops_per_epoch = {f.name: int(sf.info(f).duration // 1.0) for f in files}

    read = {}
    for rank in (0, 1):
        source = ShardSource(tmp_path / "shards", seed=5, crop_seconds=1.0)
        own = [i for i in range(4) if i % 2 == rank]
        expected = sum(crops_per_epoch[name] for i in own if i != 3 for name in packed[i])
        batches = iter(make_loader(source, 1, rank, 2, 5, 0, num_workers=0))
        epoch = [next(batches) for _ in range(expected + (3 in own))]  # micro-batches of 1
        failed = [name for batch in epoch for name in batch["failed"]]
        assert len(failed) == (3 in own) and all("shard-000003.tar (bad shard:" in f for f in failed)
        names = []
        for batch in epoch:
            for wav, valid in zip(batch["wav"], batch["lengths"]):
                assert valid == 24000
                names.append(_source_of(wav.numpy(), sources)[0])
        assert sorted(names) == sorted(name for i in own if i != 3 for name in packed[i]
                                       for _ in range(crops_per_epoch[name]))
        read[rank] = set(names)
    assert not read[0] & read[1]  # no file is read by both ranks
    assert read[0] | read[1] == set().union(*packed[:3])


def test_cpu_shares_of_loaders_and_the_gpu_training_process(monkeypatch):
    """16 CPUs, two training processes on the node: 8 each, 7 loaders by default; a GPU
    process keeps only the cores its loaders leave, at least one."""
    from encodecmae_hear.train import data
    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert data.cpus_per_process() == 8
    assert data.default_workers() == 7
    assert data.gpu_process_threads(6) == 2
    assert data.gpu_process_threads(12) == 1
