"""Training from a folder of audio (scanned once into the run folder, reused on resume),
one-line errors for what a user gets wrong, the data-loader worker default, and the
warning when the targets come from an untrained EnCodec."""
import json
import os

import pytest
import soundfile as sf

from encodecmae_hear.checkpoint import read_checkpoint
from encodecmae_hear.cli import main
from encodecmae_hear.model.encodec import ENV_VAR
from encodecmae_hear.train import data as data_module
from encodecmae_hear.train.data import ShardSource, default_workers
from encodecmae_hear.train.loop import Process, TrainConfig
from encodecmae_hear.train.manifest import read_manifest, write_shards
from encodecmae_hear.train.run import fit_to_data
from tests.train_helpers import (
    CORPUS,
    metrics,
    one_thread,  # noqa: F401 (autouse fixture)
    run_cli,
    tiny_args,
    tones,
    write_corpus,
    write_manifest,
)


def folder_args(data, out, steps: int, *extra) -> list[str]:
    """tiny_args without --workers: the default worker count is part of what is tested."""
    args = tiny_args(data, out, steps, *extra)
    i = args.index("--workers")
    return args[:i] + args[i + 2:]


def one_error_line(capsys, command: str = "pretrain") -> str:
    """The whole stderr of a failed command: one line, no traceback."""
    err = capsys.readouterr().err
    assert err.startswith(f"{command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory):
    """The 6 test files, half of them two folders down (the scan is recursive)."""
    root = tmp_path_factory.mktemp("folder") / "audio"
    files = write_corpus(root, CORPUS[:3]) + write_corpus(root / "sub" / "deeper", CORPUS[3:])
    (root / "sub" / "notes.txt").write_text("not audio")
    return root, files


def test_pretrain_from_a_folder_scans_it_once_and_resume_reuses_the_scan(audio_folder, tmp_path):
    root, files = audio_folder
    out = tmp_path / "run"
    args = ("--targets", "mel-kmeans", "--clusters", "8", "--kmeans-clips", "6")
    log = run_cli("pretrain", *folder_args(root, out, 2, *args))
    manifest = out / "manifest.jsonl"
    assert sorted(r["path"] for r in read_manifest(manifest)) == sorted(str(f.resolve()) for f in files)
    assert [r["step"] for r in metrics(out)] == [1, 2]
    payload = read_checkpoint(out / "step-000000002.pt")
    assert payload["provenance"]["corpus"]["data"] == str(root)
    workers = payload["provenance"]["train_config"]["workers"]
    assert workers == default_workers() and f"data loader: {workers} worker processes" in log
    assert "no EnCodec weights" not in log  # mel-kmeans targets need none

    scanned = manifest.read_bytes()
    added = root / "added.wav"
    sf.write(added, tones(24000, 2.0, 1, 7), 24000)
    try:
        log = run_cli("pretrain", *folder_args(root, out, 3, *args, "--resume"))
    finally:
        added.unlink()
    assert manifest.read_bytes() == scanned  # the file added since is not in the run's data
    assert f"data: {manifest}, scanned from {root}" in log
    assert [r["step"] for r in metrics(out)] == [1, 2, 3]


def test_a_new_run_scans_again_where_an_earlier_start_failed(tmp_path, capsys):
    root = tmp_path / "audio"
    write_corpus(root, [("a.wav", 24000, 1.0, 1)])
    out = tmp_path / "run"
    args = ["pretrain", "--data", str(root), "--out", str(out), "--preset", "tiny",
            "--batch-size", "4", "--crop-seconds", "1", "--workers", "0"]
    assert main(args) == 2
    assert "gives 1 crops of 1 s per epoch (1 files" in one_error_line(capsys)
    write_corpus(root, [(f"{n}.wav", 24000, 1.0, 1) for n in "bc"])
    assert main(args) == 2  # still too few, but now counted from a new scan
    assert "gives 3 crops of 1 s per epoch (3 files" in one_error_line(capsys)
    assert len(read_manifest(out / "manifest.jsonl")) == 3


@pytest.fixture
def tiny_corpora(tmp_path):
    """Folders and manifests a user could get wrong, by name."""
    one_clip = write_corpus(tmp_path / "one", [("a.wav", 24000, 1.0, 1)])
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.wav").write_bytes(b"RIFF not really")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "bad.jsonl").write_text('{"path": "a.wav", "duration": 1}\nnot json\n')
    (tmp_path / "ghost.jsonl").write_text(json.dumps({"path": str(tmp_path / "gone.wav"),
                                                      "duration": 10.0}) + "\n")
    corpus = write_corpus(tmp_path / "six")
    write_shards(read_manifest(write_manifest(tmp_path / "six.jsonl", corpus)), tmp_path / "shards",
                 per_shard=3)
    return tmp_path, one_clip


# (what --data is, extra options, what the one line must say)
PRETRAIN_ERRORS = [
    ("empty", [], "no audio files (.wav"),
    ("junk", [], "none of the 1 audio files under"),
    ("nowhere", [], "no such file or folder"),
    ("empty.jsonl", [], "lists no audio files"),
    ("bad.jsonl", [], "bad.jsonl:2: not a JSON line"),
    ("ghost.jsonl", ["--batch-size", "1", "--targets", "mel-kmeans"], "no readable audio"),
    ("ghost.jsonl", ["--batch-size", "1", "--targets", "encodec-untrained"],
     "no readable audio to fit the EnCodec codebooks"),
    ("six.jsonl", ["--batch-size", "1"], "the official EnCodec weights encodec_24khz-d7cc33bc.th are needed"),
    ("one", ["--batch-size", "4"], "fewer than one micro-batch of 4 crops x 1 processes"),
    ("one", ["--batch-size", "1", "--targets", "mel-kmeans"],
     "k-means of 512 clusters needs at least 512 frames; 1 crops of the corpus gave 74: add audio"),
    ("one", ["--batch-size", "1", "--targets", "encodec-untrained"],
     "needs at least 1024 frames (~14 s of audio); 1 crops gave 75"),
    ("shards", ["--batch-size", "2", "--workers", "3"], "2 tar shards cannot feed 1 processes x 3"),
    ("six.jsonl", ["--batch-size", "3", "--micro-batch", "2"], "whole number of accumulation steps"),
    ("six.jsonl", ["--crop-seconds", "0.1"], "--crop-seconds must be at least 0.2"),
    ("six.jsonl", ["--steps", "0"], "--steps must be positive"),
]


@pytest.mark.parametrize("data, extra, expected", PRETRAIN_ERRORS,
                         ids=[f"{d}{''.join(e[:2])}" for d, e, _ in PRETRAIN_ERRORS])
def test_what_a_user_gets_wrong_ends_in_one_line(tiny_corpora, capsys, data, extra, expected):
    root, _ = tiny_corpora
    args = ["pretrain", "--data", str(root / data), "--out", str(root / "run"), "--preset", "tiny",
            "--crop-seconds", "1", "--workers", "0", "--steps", "1", *extra]
    assert main(args) == 2
    assert expected in one_error_line(capsys)
    assert not list((root / "run").glob("step-*.pt"))


def test_manifest_and_selftrain_errors_end_in_one_line(tiny_corpora, capsys):
    root, _ = tiny_corpora
    assert main(["manifest", str(root / "empty"), "-o", str(root / "m.jsonl")]) == 2
    assert "no audio files" in one_error_line(capsys, "manifest")
    assert not (root / "m.jsonl").exists()  # no empty manifest left for training to trip on
    assert main(["manifest", str(root / "junk"), "-o", str(root / "m.jsonl")]) == 2
    assert "none of the 1 audio files" in one_error_line(capsys, "manifest")
    assert main(["manifest", str(root / "one"), "-o", str(root / "m.txt")]) == 2
    assert "must end in .jsonl" in one_error_line(capsys, "manifest")
    assert main(["selftrain", "--from", str(root / "none.pt"), "--data", str(root / "one"),
                 "--out", str(root / "st")]) == 2
    assert "none.pt" in one_error_line(capsys, "selftrain")


def test_untrained_encodec_targets_are_announced_with_what_to_do(tiny_corpora, capsys, monkeypatch):
    root, _ = tiny_corpora
    monkeypatch.delenv(ENV_VAR, raising=False)
    out = root / "warned"
    args = ["pretrain", "--data", str(root / "one"), "--out", str(out), "--preset", "tiny",
            "--batch-size", "1", "--crop-seconds", "1", "--workers", "0", "--targets", "encodec-untrained"]
    assert main(args) == 2  # one 1 s clip is too little to fit codebooks on, after the warning
    printed = capsys.readouterr().out
    warning = next(line for line in printed.splitlines() if line.startswith("warning: --targets encodec-untrained"))
    for words in ("encodec-untrained-kmeans", "--targets mel-kmeans", "not the paper's"):
        assert words in warning
    assert warning in (out / "train.log").read_text()
    # With the paper's targets and weights named (here a missing file) there is no warning,
    # and the file is looked for.
    monkeypatch.setenv(ENV_VAR, str(root / "encodec_24khz.th"))
    assert main([*args[:4], str(root / "named"), *args[5:-2]]) == 2
    captured = capsys.readouterr()
    assert "warning: --targets" not in captured.out and "encodec_24khz.th" in captured.err


@pytest.mark.parametrize("cpus, local, expected", [(2, None, 1), (1, None, 0), (16, None, 8),
                                                   (16, "8", 1), (16, "4", 3), (64, "2", 8)])
def test_worker_default_shares_the_cpus_among_the_processes_of_a_node(monkeypatch, cpus, local, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert data_module.default_workers() == expected
    assert TrainConfig(out_dir="").workers == expected


def test_worker_default_is_capped_by_the_shards_but_an_explicit_count_is_not(tiny_corpora):
    root, _ = tiny_corpora
    source = ShardSource(root / "shards")  # 2 shards
    cfg = TrainConfig(out_dir="", batch_size=2, workers=8)
    assert fit_to_data(cfg, source, Process(), workers_given=False).workers == 2
    assert fit_to_data(cfg, source, Process(rank=0, world=2), workers_given=False).workers == 1
    with pytest.raises(Exception, match="pass --workers 2"):
        fit_to_data(cfg, source, Process(), workers_given=True)
