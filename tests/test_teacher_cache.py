"""The teacher cache (train/teachers/cache.py, cache_build.py): crops read from it against
the teachers run on the crops themselves, the loader's keys and starts, resuming an
interrupted `cache-teachers`, the errors a wrong cache gives, and `pretrain
--teacher-cache` end to end with resume."""
from __future__ import annotations

import json
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from encodecmae_hear.cli import main
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import SAMPLE_RATE, preset
from encodecmae_hear.train.data import ManifestSource, ShardSource, make_loader, read_crop
from encodecmae_hear.train.manifest import read_manifest, write_shards
from encodecmae_hear.train.objectives import FrontendFeatures, KMeansStream, KMeansTargets, assign
from encodecmae_hear.train.teachers import cache_build, load_teacher
from encodecmae_hear.train.teachers.cache import HEADER, TeacherCache, piece_files
from encodecmae_hear.train.teachers.pitch import CENTS_PER_BIN
from tests.train_helpers import (
    cli,
    metrics,
    one_thread,  # noqa: F401 (autouse fixture)
    run_cli,
    tiny_args,
    write_corpus,
    write_manifest,
)

HOP = 318  # mel256 frame hop in 24 kHz samples
SWEEP_CENTS_PER_S = 2400.0  # two octaves in a second: 32 cents per mel frame


def sweep(seconds: float, sr: int, f0: float = 110.0) -> np.ndarray:
    """An exponential sine sweep up from f0 at SWEEP_CENTS_PER_S, peak 0.5."""
    t = np.arange(int(seconds * sr)) / sr
    rate = SWEEP_CENTS_PER_S / 1200 * math.log(2)
    return (0.5 * np.sin(2 * np.pi * f0 * (np.exp(rate * t) - 1) / rate)).astype(np.float32)


def cents(posteriors: torch.Tensor) -> torch.Tensor:
    """(T, 360) CREPE posteriors -> (T,) pitch in cents above bin 0: the posterior-weighted
    mean of the 9 bins around the argmax (CREPE's own decoding)."""
    peak = posteriors.argmax(-1)  # (T,)
    bins = (peak[:, None] + torch.arange(-4, 5)).clamp(0, posteriors.shape[1] - 1)  # (T, 9)
    weights = posteriors.gather(1, bins)
    return (weights * bins).sum(1) / weights.sum(1) * CENTS_PER_BIN


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Sweeps at 24 and 48 kHz (stored as float, so the loader reads exact samples) and
    two tone mixtures; a manifest of them, and tar shards of them."""
    folder = tmp_path_factory.mktemp("cache_corpus")
    sf.write(folder / "sweep24.wav", sweep(2.0, 24_000), 24_000, subtype="FLOAT")
    sf.write(folder / "sweep48.wav", sweep(2.0, 48_000), 48_000, subtype="FLOAT")
    files = [folder / "sweep24.wav", folder / "sweep48.wav"]
    files += write_corpus(folder / "mix", [("m0.wav", 24000, 2.5, 1), ("m1.flac", 16000, 1.5, 2)])
    manifest = write_manifest(folder / "m.jsonl", files)
    write_shards(read_manifest(manifest), folder / "shards", per_shard=2)
    return folder


@pytest.fixture(scope="module")
def cache(corpus):
    """crepe and vad features of the manifest, in pieces of 3 files."""
    out = corpus / "cache"
    assert main(["cache-teachers", "--data", str(corpus / "m.jsonl"), "--teachers", "crepe,vad",
                 "--out", str(out), "--files-per-piece", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def teachers():
    return {name: load_teacher(name) for name in ("crepe", "vad")}


def cached(cache_dir, teacher, key: str, start: float, num_samples: int) -> torch.Tensor:
    """(T, D) features of a crop read from the cache, through the training interface."""
    source = TeacherCache(cache_dir, "mel256").teacher(teacher.name, teacher.provenance())
    crops = {"keys": [key], "starts": torch.tensor([start], dtype=torch.float64)}
    features, padding = source.last_layer_features(torch.zeros(1, num_samples), None, crops)
    assert not padding.any()
    return features[0]


# ---- cached features against features of the crop ----

@pytest.mark.parametrize("offset", [0, HOP // 2, 100])
def test_cached_crepe_equals_crepe_on_the_crop(cache, corpus, teachers, offset):
    # A crop from sample 40 hops + offset of a sweep. CREPE's 64 ms windows read the same
    # samples in the file as in the crop, except within 32 ms (+ the resampler's kernel)
    # of the crop's edges: 3 frames at each end are left out. Frame-aligned (offset 0),
    # the crop's frames are file frames, so only float16 rounding is left (steps of 2^-11
    # below 1, error at most half a step); between frames the cache blends the two
    # neighbours, whose pitches are 32 cents apart on this sweep, and the decoded pitch
    # must come out between them: within a quarter frame (8 cents) on average, where a
    # crop read one frame off would be 32 cents off.
    key, start = str(corpus / "sweep24.wav"), 40 * HOP + offset
    audio = sf.read(key, dtype="float32")[0]
    crop = torch.from_numpy(audio[start: start + SAMPLE_RATE])
    direct = teachers["crepe"].frame_features(crop[None])[0][3:-3]  # (T, 360)
    read = cached(cache, teachers["crepe"], key, float(start), SAMPLE_RATE)[3:-3]
    if offset == 0:
        assert (read - direct).abs().max() < 2.5e-4 + 1e-6
    error = cents(read) - cents(direct)
    assert error.abs().mean() < 8 and error.abs().max() < 16, error


def test_cached_crepe_of_a_loader_crop_of_a_48khz_file(cache, corpus, teachers):
    # The loader's own crop of a 48 kHz file: its start in 24 kHz samples is fractional
    # for an odd 48 kHz offset, and the cache must still be read at the crop's times.
    key = str(corpus / "sweep48.wav")
    for seed in range(4):
        crop = read_crop(key, np.random.default_rng(seed), SAMPLE_RATE, key=key)
        direct = teachers["crepe"].frame_features(crop[0][None])[0][3:-3]
        read = cached(cache, teachers["crepe"], crop.key, crop.start, SAMPLE_RATE)[3:-3]
        error = cents(read) - cents(direct)
        assert error.abs().mean() < 8 and error.abs().max() < 16, (crop.start, error)


def test_cached_vad_is_the_whole_files_features_at_the_crops_frames(cache, corpus, teachers):
    # Silero VAD carries its LSTM state through the file, so the cache holds the state
    # of the file so far, not of the crop: compare with the teacher run on the whole file.
    # A crop from hop 20 reads file frames 20, 21, ...; a third of a hop later, each frame
    # is 2/3 of its file frame and 1/3 of the next. VAD states lie in [-1, 1] (float16
    # error at most 2^-12).
    key = str(corpus / "mix" / "m0.wav")
    whole = teachers["vad"].frame_features(torch.from_numpy(sf.read(key, dtype="float32")[0])[None])[0]
    n = SAMPLE_RATE
    aligned = cached(cache, teachers["vad"], key, 20.0 * HOP, n)
    frames = aligned.shape[0]
    assert torch.allclose(aligned, whole[20: 20 + frames], atol=2.5e-4)
    between = cached(cache, teachers["vad"], key, 20.0 * HOP + HOP / 3, n)
    expected = whole[20: 20 + frames] * 2 / 3 + whole[21: 21 + frames] / 3
    assert torch.allclose(between, expected, atol=2.5e-4)


def test_kmeans_targets_read_a_cached_stream_with_the_batchs_crops(cache, corpus, teachers):
    source = ManifestSource(corpus / "m.jsonl", seed=1, crop_seconds=1.0)
    batch = next(iter(make_loader(source, 3, 0, 1, 1, 0, num_workers=0)))
    vad = TeacherCache(cache, "mel256").teacher("vad", teachers["vad"].provenance())
    centroids = torch.randn(8, 128)
    mel = FrontendFeatures(preset("tiny", "mel256"))
    objective = KMeansTargets(mel, torch.randn(8, 256), more=(KMeansStream("vad", vad, centroids),))
    ids = objective.targets(batch["wav"], batch["lengths"], {}, crops=batch)[..., 1]  # (B, T)
    for b, (key, start) in enumerate(zip(batch["keys"], batch["starts"].tolist())):
        expected = assign(cached(cache, teachers["vad"], key, start, batch["wav"].shape[1]), centroids)
        assert torch.equal(ids[b], expected)


# ---- the loader's keys and starts ----

def test_manifest_crops_name_their_file_and_start(corpus):
    source = ManifestSource(corpus / "m.jsonl", seed=2, crop_seconds=1.0)
    batches = make_loader(source, 2, 0, 1, 2, 0, num_workers=0)
    seen = set()
    for _, batch in zip(range(4), batches):
        assert batch["starts"].dtype == torch.float64 and len(batch["keys"]) == 2
        for wav, valid, key, start in zip(batch["wav"], batch["lengths"], batch["keys"], batch["starts"]):
            seen.add(key)
            if key.endswith(("sweep24.wav", "m0.wav")):  # 24 kHz: samples verbatim
                audio = sf.read(key, dtype="float32")[0]
                assert float(start).is_integer() and 0 <= start <= len(audio) - valid
                assert np.array_equal(wav[:valid].numpy(), audio[int(start): int(start) + valid])
    assert seen <= {r["path"] for r in read_manifest(corpus / "m.jsonl")} and len(seen) > 1


def test_a_48khz_crop_starts_where_its_samples_are(corpus):
    # The 48 kHz sweep's crop, resampled to 24 kHz, equals the sweep's formula evaluated
    # at (start + n) / 24000 s, also for fractional starts (odd 48 kHz offsets).
    key = str(corpus / "sweep48.wav")
    rate = SWEEP_CENTS_PER_S / 1200 * math.log(2)
    fractional = 0
    for seed in range(6):
        crop = read_crop(key, np.random.default_rng(seed), SAMPLE_RATE, key=key)
        fractional += not crop.start.is_integer()
        t = (crop.start + np.arange(SAMPLE_RATE)) / SAMPLE_RATE
        truth = 0.5 * np.sin(2 * np.pi * 110.0 * (np.exp(rate * t) - 1) / rate)
        inner = slice(50, -50)  # away from the resampler's edges
        assert np.abs(crop[0].numpy()[inner] - truth[inner]).max() < 0.01, crop.start
    assert fractional > 0


def test_shard_crops_name_their_member_and_start(corpus):
    source = ShardSource(corpus / "shards", seed=3, crop_seconds=1.0)
    by_name = {Path(r["path"]).name: r["path"] for r in read_manifest(corpus / "m.jsonl")}
    originals = {}  # shard key -> original file
    for shard in source.shards:
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    stem = m.name.split(".")[0]
                    audio = next(a for a in tar.getnames() if a.startswith(stem) and not a.endswith(".json"))
                    originals[f"{shard.name}:{audio}"] = by_name[json.loads(tar.extractfile(m).read())["path"]]
    batches = make_loader(source, 1, 0, 1, 3, 0, num_workers=0)
    checked = 0
    for _, batch in zip(range(8), batches):
        key, start, valid = batch["keys"][0], float(batch["starts"][0]), int(batch["lengths"][0])
        audio, sr = sf.read(originals[key], dtype="float32")
        if sr == SAMPLE_RATE:
            assert np.array_equal(batch["wav"][0, :valid].numpy(), audio[int(start): int(start) + valid])
            checked += 1
    assert checked >= 2


# ---- building: resume, and what is not finished ----

def test_rerun_skips_finished_pieces_and_redoes_an_interrupted_one(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cache"
    argv = ["cache-teachers", "--data", str(corpus / "m.jsonl"), "--teachers", "vad", "--out", str(out),
            "--files-per-piece", "2"]
    real_write = cache_build.write_piece

    def interrupted(folder, teacher, piece, *args):
        if piece == "files.000001":  # killed while writing: a temporary file is left
            piece_files(folder, teacher, piece)[0].with_name(f".{piece}.npy.tmp99999").write_bytes(b"half")
            raise KeyboardInterrupt
        return real_write(folder, teacher, piece, *args)

    monkeypatch.setattr(cache_build, "write_piece", interrupted)
    assert main(argv) == 130  # Ctrl-C: one line and status 130, what was written kept whole
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(cache_build, "write_piece", real_write)
    first_npy, first_index = piece_files(out, "vad", "files.000000")
    assert first_index.is_file() and not piece_files(out, "vad", "files.000001")[1].exists()
    vad = load_teacher("vad")
    with pytest.raises(UserError, match="unfinished"):
        TeacherCache(out, "mel256").teacher("vad", vad.provenance())
    written = first_npy.stat().st_mtime_ns
    capsys.readouterr()

    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "1 already cached" in said and "complete" in said, said
    assert first_npy.stat().st_mtime_ns == written  # the finished piece was not redone
    source = TeacherCache(out, "mel256").teacher("vad", vad.provenance())
    assert set(source.files) == {r["path"] for r in read_manifest(corpus / "m.jsonl")}
    header = json.loads((out / HEADER).read_text())
    assert header["teachers"]["vad"]["files"] == 4 and header["teachers"]["vad"]["complete"]

    assert main(argv) == 0
    assert "2 already cached" in capsys.readouterr().out
    assert first_npy.stat().st_mtime_ns == written


def test_shards_cache_keys_are_the_loaders(corpus, tmp_path):
    out = tmp_path / "cache"
    assert main(["cache-teachers", "--data", str(corpus / "shards"), "--teachers", "vad", "--out", str(out)]) == 0
    vad = load_teacher("vad")
    source = TeacherCache(out, "mel256").teacher("vad", vad.provenance())
    shards = ShardSource(corpus / "shards", seed=0, crop_seconds=1.0)
    TeacherCache(out, "mel256").check_covers(shards, source)
    batch = next(iter(make_loader(shards, 1, 0, 1, 0, 0, num_workers=0)))
    assert batch["keys"][0] in source.files
    stored, samples = source.file_features(batch["keys"][0])
    assert stored.shape == (1 + (samples - 637) // HOP, 128)  # the mel frames of the whole file
    changed = tmp_path / "changed"
    shutil.copytree(corpus / "shards", changed)
    with open(changed / "shard-000001.tar", "ab") as f:  # same name, other content
        f.write(bytes(10240))
    with pytest.raises(UserError, match="shard .*shard-000001.tar is of another size there"):
        TeacherCache(out, "mel256").check_covers(ShardSource(changed), source)


# ---- errors ----

def test_wrong_cache_errors_name_the_problem(cache, corpus, tmp_path, teachers):
    vad = teachers["vad"].provenance()
    with pytest.raises(UserError, match="no teacher cache at"):
        TeacherCache(tmp_path, "mel256")
    with pytest.raises(UserError, match="mel256 frontend's frames; this run's frontend is encodec"):
        TeacherCache(cache, "encodec")
    source = TeacherCache(cache, "mel256").teacher("vad", vad)
    with pytest.raises(UserError, match="no vad features of absent.wav"):
        source.crop("absent.wav", 0.0, SAMPLE_RATE)
    other = {**vad, "sha256": "0" * 64}
    with pytest.raises(UserError, match=r"installed silero-vad is .* \(sha256 000000000000"):
        TeacherCache(cache, "mel256").teacher("vad", other)
    with pytest.raises(UserError, match=r"install silero-vad==0\.0\.1"):
        patched = tmp_path / "patched"
        patched.mkdir()
        header = json.loads((cache / HEADER).read_text())
        header["teachers"]["vad"]["version"] = "0.0.1"
        (patched / HEADER).write_text(json.dumps(header))
        TeacherCache(patched, "mel256").teacher("vad", vad)
    more = write_corpus(tmp_path / "more", [("x.wav", 24000, 1.0, 1)])
    cached_files = [Path(r["path"]) for r in read_manifest(corpus / "m.jsonl")]
    bigger = write_manifest(tmp_path / "m.jsonl", cached_files + more)
    with pytest.raises(UserError, match="lacks 1 of this run's 5 files, e.g. .*x.wav"):
        TeacherCache(cache, "mel256").check_covers(ManifestSource(bigger), source)
    assert main(["cache-teachers", "--data", str(corpus / "shards"), "--teachers", "vad", "--out", str(cache)]) == 2


# ---- training from the cache ----

def test_pretrain_reads_the_cache_and_resumes(corpus, cache, tmp_path):
    manifest, out = corpus / "m.jsonl", tmp_path / "run"
    extra = ["--targets", "mel-kmeans", "--clusters", "8", "--kmeans-clips", "6", "--teachers", "vad",
             "--checkpoint-every", "2"]
    said = run_cli("pretrain", *tiny_args(manifest, out, 2, *extra, "--teacher-cache", cache))
    assert "read from the teacher cache" in said
    first = torch.load(out / "step-000000002.pt", weights_only=True)
    run_cli("pretrain", *tiny_args(manifest, out, 3, *extra, "--teacher-cache", cache), "--resume")
    last = torch.load(out / "step-000000003.pt", weights_only=True)
    a = first["training"]["objective"]["teacher_centroids"]["vad"]
    assert torch.equal(a, last["training"]["objective"]["teacher_centroids"]["vad"])
    record = last["provenance"]["teachers"][0]
    assert record["cache"]["path"] == str(cache) and record["cache"]["frontend"] == "mel256"
    assert record["cache"]["teacher"]["sha256"] == record["sha256"] and record["cache"]["dtype"] == "float16"
    assert "masked_loss_s1" in metrics(out)[-1] and metrics(out)[-1]["step"] == 3
    wrong = cli("pretrain", *tiny_args(manifest, out, 4, *extra), "--resume")
    told, _ = wrong.communicate(timeout=120)
    assert wrong.returncode == 2 and "pass --teacher-cache to resume it" in told, told


def test_teachers_the_cache_does_not_hold_are_computed_on_the_fly(corpus, cache, tmp_path):
    manifest, out = corpus / "m.jsonl", tmp_path / "run"
    extra = ["--targets", "mel-kmeans", "--clusters", "8", "--kmeans-clips", "6",
             "--teachers", "vad,resemblyzer", "--teacher-cache", cache]
    said = run_cli("pretrain", *tiny_args(manifest, out, 2, *extra))
    assert "teacher resemblyzer" in said and "computed on the fly: the teacher cache does not hold it" in said
    vad, speaker = torch.load(out / "model.pt", weights_only=True)["provenance"]["teachers"]
    assert vad["cache"]["path"] == str(cache) and "cache" not in speaker
    assert "masked_loss_s2" in metrics(out)[-1]


def test_help_names_the_cache_options(capsys):
    for argv, option in ((["cache-teachers", "--help"], "--files-per-piece"),
                         (["pretrain", "--help"], "--teacher-cache")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0 and option in capsys.readouterr().out
