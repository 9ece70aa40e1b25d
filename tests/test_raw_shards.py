"""Raw training shards (train/raw_shards.py) and their source (data.RawSource): crops are
the decoded, resampled audio to int16 precision, at the seeded offsets; short files are
padded; damaged files are skipped when packing and a lost shard only drops its crops."""
import numpy as np
import pytest
import soundfile as sf
import torch

from encodecmae_hear.cli import main
from encodecmae_hear.train.data import RawSource, collate, data_kind, make_loader, open_source
from encodecmae_hear.train.manifest import describe
from encodecmae_hear.train.raw_shards import RAW_INDEX, decode_24k_mono, read_index, write_raw_shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw-corpus")
    rng = np.random.default_rng(0)
    specs = [("a.wav", 16000, 2, 9.0), ("b.flac", 44100, 1, 6.5), ("c.ogg", 48000, 2, 2.0),
             ("d.wav", 24000, 1, 13.0)]
    records = []
    for name, rate, channels, seconds in specs:
        audio = (0.3 * rng.standard_normal((int(rate * seconds), channels))).clip(-1, 1).astype(np.float32)
        sf.write(root / name, audio, rate)
        records.append(describe(root / name, 0.2)[0])
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    records.append({"path": str(root / "broken.wav"), "duration": 5.0})
    out = root / "raw"
    done = write_raw_shards(records, out, shard_seconds=12.0)  # small shards: files span several
    return records, out, done


def test_packing_skips_what_does_not_decode_and_states_its_size(corpus):
    records, out, done = corpus
    assert done["files"] == 4 and [p for p, _ in done["skipped"]] == [records[-1]["path"]]
    assert done["shards"] == 3  # 9 s | 6.5 + 2 s | 13 s (a file longer than a shard fills one)
    index = read_index(out)
    assert index["length"].sum() == sum(decode_24k_mono(r["path"]).size for r in records[:4])
    assert done["bytes"] == pytest.approx(2 * index["length"].sum(), abs=128 * done["shards"])  # int16
    assert done["hours"] == pytest.approx(index["length"].sum() / 24000 / 3600)


def test_a_crop_is_the_decoded_audio_at_its_offset(corpus):
    records, out, _ = corpus
    source = RawSource(out, seed=3)
    assert data_kind(out) == "raw" and isinstance(open_source(out, 3), RawSource)
    assert len(source) == 2 + 1 + 1 + 3  # duration // 4 s per file, at least 1
    decoded = {r["path"]: decode_24k_mono(r["path"]) for r in records[:4]}
    for entry in range(len(source)):
        crop = source[(5, entry)]
        wav, valid = crop
        full = decoded[crop.key]
        start = int(crop.start)
        assert wav.shape == (96000,) and valid == min(96000, full.size)
        np.testing.assert_allclose(wav[:valid].numpy(), full[start:start + valid], atol=1 / 32768 + 1e-7)
        assert torch.all(wav[valid:] == 0)
        again = source[(5, entry)]
        assert torch.equal(again[0], wav) and again.start == crop.start  # seeded
    starts = {source[(epoch, 0)].start for epoch in range(8)}
    assert len(starts) > 1  # offsets change with the epoch


def test_the_loader_reads_raw_shards_and_a_lost_shard_only_drops_its_crops(corpus, tmp_path):
    records, out, _ = corpus
    source = RawSource(out, seed=1)
    batch = next(iter(make_loader(source, 4, 0, 1, 1, 0, num_workers=1, prefetch=2)))
    assert batch["wav"].shape == (4, 96000) and not batch["failed"]
    copy = tmp_path / "raw"
    copy.mkdir()
    for f in out.iterdir():
        if f.name != "raw-000002.npy":  # d.wav's shard is lost
            (copy / f.name).write_bytes(f.read_bytes())
    lost = RawSource(copy, seed=1)
    items = [lost[(0, e)] for e in range(len(lost))]
    batch = collate(items)
    assert batch["wav"].shape[0] == 4 and len(batch["failed"]) == 3
    assert all(records[3]["path"] in why for why in batch["failed"])


def test_manifest_writes_raw_shards(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "x.wav", np.zeros((48000, 1), np.float32) + 0.25, 48000)
    assert main(["manifest", str(audio), "-o", str(tmp_path / "m.jsonl"),
                 "--raw-shards", str(tmp_path / "raw")]) == 0
    assert (tmp_path / "raw" / RAW_INDEX).is_file()
    wav, valid = RawSource(tmp_path / "raw")[(0, 0)]
    inside = wav[1000:valid - 1000]  # away from the resampler's edges
    assert valid == 24000 and torch.allclose(inside, torch.full_like(inside, 0.25), atol=2e-3)
