"""`embed`: a folder of the user's audio -> files of embeddings equal to what the HEAR
API gives for the same decoded audio; resumable, shared between processes, bad files
listed and skipped."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from encodecmae_hear import embed_file, files
from encodecmae_hear.cli import main
from encodecmae_hear.hear import HearModel, get_scene_embeddings, get_timestamp_embeddings, load_model
from tests.train_helpers import ROOT

# (name, sample rate, seconds, channels): every rate, mono and stereo, nesting, lengths
# of one window and of two (c.wav)
TREE = [("a.wav", 16000, 1.3, 1), ("a2.wav", 48000, 1.3, 2), ("b.flac", 22050, 2.0, 2),
        ("sub/c.wav", 44100, 5.0, 2), ("sub/deeper/d.flac", 48000, 0.9, 1)]
CORRUPT = "sub/corrupt.wav"


def noise_tones(sample_rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """(n, channels): a different tone mixture in every channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sample_rate * seconds)))[:, None] / sample_rate
    freqs = 100 + 3000 * rng.random((3, channels))
    x = sum(np.sin(2 * np.pi * f * t + 6.28 * rng.random(channels)) for f in freqs) / 6
    return (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)


def write_tree(root: Path, tree=TREE) -> Path:
    for seed, (name, rate, seconds, channels) in enumerate(tree):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, noise_tones(rate, seconds, channels, seed), rate)
    (root / "sub").mkdir(exist_ok=True)
    (root / CORRUPT).write_bytes(b"RIFF\x00\x00 this is not a wav file")
    (root / "sub" / "notes.txt").write_text("not audio: ignored")
    return root


def hear_input(path: Path, sample_rate: int = 48000) -> torch.Tensor:
    """The same rule, computed apart from the package: soundfile, mean of channels,
    torchaudio's resampler. -> (1, n_samples)"""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(data).mean(1)
    return torchaudio.functional.resample(mono, rate, sample_rate)[None]


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file below `out` (not the failure lists) -> its bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(("failed", "."))}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def embedded(tree, tiny_checkpoint, tmp_path_factory):
    """The folder embedded once with the defaults; -> (out, exit status)."""
    out = tmp_path_factory.mktemp("out")
    return out, main(["embed", str(tree), "--out", str(out), "--model", str(tiny_checkpoint),
                      "--device", "cpu"])


def test_outputs_mirror_the_tree_and_equal_the_hear_api(embedded, tree, model):
    out, status = embedded
    assert status == 0
    expected = {f"{name}{suffix}" for name, *_ in TREE
                for suffix in (".embedding.npy", ".timestamps.npy")} | {"embed.json"}
    assert set(outputs(out)) == expected
    for name, rate, seconds, _ in TREE:
        emb = np.load(out / f"{name}.embedding.npy")
        ts = np.load(out / f"{name}.timestamps.npy")
        want_emb, want_ts = get_timestamp_embeddings(hear_input(tree / name), model)
        assert emb.dtype == np.float32 and emb.shape == tuple(want_emb.shape[1:]), name
        assert emb.shape[0] == round(seconds * 75)
        np.testing.assert_array_equal(ts, want_ts[0].numpy())
        np.testing.assert_allclose(emb, want_emb[0].numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
    settings = json.loads((out / "embed.json").read_text())
    assert settings["scene"] is False and settings["embedding_size"] == emb.shape[1]


def test_a_corrupt_file_is_listed_and_skipped(embedded, tree):
    out, _ = embedded
    lines = (out / "failed.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tree / CORRUPT}\tcannot decode")


def test_embed_file_equals_the_command(embedded, tree, model):
    out, _ = embedded
    for name, *_ in TREE:
        emb, ts = embed_file(tree / name, model)
        written = np.load(out / f"{name}.embedding.npy")  # embedded beside other files
        np.testing.assert_allclose(emb.numpy(), written, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ts.numpy(), np.load(out / f"{name}.timestamps.npy"))
    scene = embed_file(tree / "b.flac", model, scene=True)
    assert scene.shape == (model.scene_embedding_size,)


def test_scene_gives_one_vector_per_file(tree, tiny_checkpoint, model, tmp_path):
    assert main(["embed", str(tree / "sub"), "--out", str(tmp_path), "--model", str(tiny_checkpoint),
                 "--scene", "--batch", "1"]) == 0
    names = [name[len("sub/"):] for name, *_ in TREE if name.startswith("sub/")]
    assert set(outputs(tmp_path)) == {f"{n}.embedding.npy" for n in names} | {"embed.json"}
    for name in names:
        vector = np.load(tmp_path / f"{name}.embedding.npy")
        assert vector.shape == (model.scene_embedding_size,)
        want = get_scene_embeddings(hear_input(tree / "sub" / name), model)[0].numpy()
        np.testing.assert_allclose(vector, want, rtol=1e-4, atol=1e-4)


def test_shards_hold_the_same_embeddings_as_single_files(embedded, tree, tiny_checkpoint, tmp_path):
    single, _ = embedded
    assert main(["embed", str(tree), "--out", str(tmp_path), "--model", str(tiny_checkpoint),
                 "--shard-size", "4", "--batch", "3"]) == 0
    assert sorted(p.name for p in tmp_path.glob("shard-*.npz")) == ["shard-000000.npz", "shard-000001.npz"]
    names, failed = [], []
    for shard in sorted(tmp_path.glob("shard-*.npz")):
        with np.load(shard) as z:
            offsets = z["offsets"]
            assert offsets[0] == 0 and offsets[-1] == len(z["embeddings"]) == len(z["timestamps"])
            for i, name in enumerate(z["names"]):
                rows = slice(offsets[i], offsets[i + 1])
                np.testing.assert_array_equal(z["embeddings"][rows], np.load(single / f"{name}.embedding.npy"))
                np.testing.assert_array_equal(z["timestamps"][rows], np.load(single / f"{name}.timestamps.npy"))
            names += list(z["names"])
            failed += list(z["failed"])
    assert names == sorted(name for name, *_ in TREE) and failed == [CORRUPT]


def test_a_rerun_skips_finished_files(embedded, tree, tiny_checkpoint, tmp_path, capsys):
    original, _ = embedded
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    for name in ("embed.json", "b.flac.embedding.npy", "b.flac.timestamps.npy",
                 "sub/c.wav.embedding.npy", "sub/c.wav.timestamps.npy"):
        (out / name).write_bytes((original / name).read_bytes())
    marker = np.full((3, 3), 7.0, np.float32)  # a recomputed file would lose this
    np.save(out / "b.flac.embedding.npy", marker)
    capsys.readouterr()
    assert main(["embed", str(tree), "--out", str(out), "--model", str(tiny_checkpoint)]) == 0
    assert "3 files embedded" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out / "b.flac.embedding.npy"), marker)
    done = outputs(out)
    for name, data in outputs(original).items():
        if name != "b.flac.embedding.npy":
            assert done[name] == data, name


def test_files_of_any_lengths_share_a_call_of_batch_files(tree, tiny_checkpoint, tmp_path, monkeypatch):
    calls = []
    embed_sounds = HearModel.embed_sounds

    def recording(self, sounds, scene=False):
        calls.append(sorted(s.shape[0] for s in sounds))
        return embed_sounds(self, sounds, scene)

    monkeypatch.setattr(HearModel, "embed_sounds", recording)
    lengths = sorted(round(seconds * 48000) for _, _, seconds, _ in TREE)
    for batch, want in (("16", [lengths]), ("2", None), ("1", [[n] for n in lengths])):
        calls.clear()
        assert main(["embed", str(tree), "--out", str(tmp_path / batch), "--model", str(tiny_checkpoint),
                     "--batch", batch, "--workers", "0"]) == 0
        if want is None:  # in order of names, two by two: [a, a2], [b, c], [d]
            assert [len(c) for c in calls] == [2, 2, 1]
        else:
            assert sorted(calls) == sorted(want)


def run_embed(*args, env=None, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def test_a_killed_run_continues_where_it_stopped(tiny_checkpoint, tmp_path):
    many = tmp_path / "many"
    write_tree(many, [(f"clip{i:03d}.wav", 16000, 2.0, 1) for i in range(100)])
    out, reference = tmp_path / "out", tmp_path / "reference"
    args = ["-m", "encodecmae_hear", "embed", many, "--out", out, "--model", tiny_checkpoint, "--batch", "2"]
    proc = run_embed(*args)
    deadline = time.monotonic() + 240
    while not list(out.glob("*.embedding.npy")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    finished = sorted(out.glob("*.embedding.npy"))
    assert 0 < len(finished) < 100, "the run was not killed mid-way"
    for path in finished:  # atomic writes: whatever is there is whole
        assert np.load(path).shape == (150, 64)

    resumed = run_embed(*args)
    log = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, log[-2000:]
    assert f"{100 - len(finished)} files embedded" in log and f"{len(finished)} already done" in log
    assert main(["embed", str(many), "--out", str(reference), "--model", str(tiny_checkpoint)]) == 0
    done, want = outputs(out), outputs(reference)
    assert done.keys() == want.keys() and len(done) == 201
    assert done.pop("embed.json") == want["embed.json"]
    for name in done:  # the same numbers (this process may use another thread count)
        np.testing.assert_allclose(np.load(out / name), np.load(reference / name), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("options", [["--batch", "2"], ["--shard-size", "2", "--batch", "1", "--scene"]])
def test_two_processes_write_what_one_process_writes(tree, tiny_checkpoint, tmp_path, options):
    args = ["-m", "encodecmae_hear", "embed", tree, "--model", tiny_checkpoint, "--device", "cpu", *options]
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_embed(*args, "--out", one)  # one thread, as torchrun gives its workers
    pair = run_embed("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                     *args, "--out", two)
    for proc in (single, pair):
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-3000:]
    shares = dict(map(int, m) for m in re.findall(r"embed rank (\d)/2: (\d+) files embedded", log))
    assert shares.keys() == {0, 1} and 0 < shares[0] < len(TREE) and sum(shares.values()) == len(TREE)
    assert outputs(one) == outputs(two) and len(outputs(one)) > 3
    failed = [p.read_text() for p in sorted(two.glob("failed.rank*.txt"))]
    assert len(failed) == 1 and failed[0] == (one / "failed.txt").read_text()


def test_a_manifest_names_files_below_their_common_folder(tree, tiny_checkpoint, tmp_path):
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(tree / n), "duration": 1}) + "\n"
                                for n in ("sub/deeper/d.flac", "sub/c.wav")))
    assert main(["embed", str(manifest), "--out", str(tmp_path / "out"),
                 "--model", str(tiny_checkpoint), "--scene"]) == 0
    assert set(outputs(tmp_path / "out")) == {"deeper/d.flac.embedding.npy", "c.wav.embedding.npy",
                                              "embed.json"}


def test_bf16_runs_under_autocast_and_stays_close(embedded, tree, tiny_checkpoint, tmp_path):
    single, _ = embedded
    assert main(["embed", str(tree / "sub" / "c.wav"), "--out", str(tmp_path),
                 "--model", str(tiny_checkpoint), "--dtype", "bf16"]) == 0
    emb = np.load(tmp_path / "c.wav.embedding.npy")
    fp32 = np.load(single / "sub" / "c.wav.embedding.npy")
    assert emb.dtype == np.float32 and emb.shape == fp32.shape and not np.array_equal(emb, fp32)
    assert np.abs(emb - fp32).mean() < 0.05 * np.abs(fp32).mean()


def test_only_failures_exit_with_status_1(tree, tiny_checkpoint, tmp_path):
    assert main(["embed", str(tree / CORRUPT), "--out", str(tmp_path), "--model", str(tiny_checkpoint)]) == 1
    assert (tmp_path / "failed.txt").read_text().startswith(str(tree / CORRUPT))


def bad_manifest(tmp_path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"duration": 3.0}\n')
    return path


@pytest.mark.parametrize("argv, says", [
    (["{empty}"], "no audio found in"),
    (["{tmp}/absent"], "audio folder not found"),
    (["{bad}"], ':1: a manifest line needs "path" (write'),
    (["{tree}", "--batch", "0"], "--batch must be >= 1"),
    (["{tree}", "--layer", "7"], "layer 7 out of range"),
    (["{tree}", "--device", "cuda:0"] if not torch.cuda.is_available() else ["{tree}", "--device", "gpu"],
     "--device"),
])
def test_bad_input_ends_in_one_line_and_status_2(argv, says, tree, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    names = {"empty": tmp_path / "empty", "tmp": tmp_path, "bad": bad_manifest(tmp_path), "tree": tree}
    argv = [a.format(**names) for a in argv]
    assert main(["embed", *argv, "--out", str(tmp_path / "out"), "--model", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embed: error: ") and says in err and err.count("\n") == 1


def test_a_rerun_with_other_settings_is_refused(embedded, tree, tiny_checkpoint, capsys):
    out, _ = embedded
    assert main(["embed", str(tree), "--out", str(out), "--model", str(tiny_checkpoint), "--scene"]) == 2
    assert "other settings (scene False -> True)" in capsys.readouterr().err


def test_a_shard_has_the_same_bytes_whenever_it_is_written(tmp_path):
    arrays = {"names": np.array(["a.wav", "sub/b.flac"]), "embeddings": np.eye(2, 3, dtype=np.float32)}
    files.write_npz(tmp_path / "shard.npz", arrays)
    with zipfile.ZipFile(tmp_path / "shard.npz") as archive:
        assert {m.date_time for m in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(tmp_path / "shard.npz") as z:
        assert list(z["names"]) == ["a.wav", "sub/b.flac"] and np.array_equal(z["embeddings"], np.eye(2, 3))
