"""A folder of audio from the wild cannot hurt a run (docs/ROBUSTNESS.md is the table).

The battery builds one hostile folder (link loops, a link out of the folder, a FIFO and a
broken link named .wav, names that are not UTF-8 or hold a newline, odd and refused sample
rates, empty, garbage and truncated files, headers that claim hours, NaN and integer-scaled
samples) and runs `embed`, `manifest` and `pretrain --steps 1` over it in subprocesses
under an address-space limit and a time limit. Then the parts one by one: one writer per
output folder, and the one-line endings (bad places, Ctrl-C, closed pipes, convert's
source). The walker and the resampler have tests of their own (test_walk.py,
test_resample.py).
"""
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from encodecmae_hear import files
from encodecmae_hear.cli import main
from encodecmae_hear.errors import UserError
from tests.train_helpers import tiny_args

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 3 << 30  # address space of each command in the battery (bytes)
TIME_LIMIT = 150        # seconds for each command in the battery
EXT = (".wav", ".flac")

# Run a command of the package with an address-space limit; its peak RSS goes to a file.
_LIMITED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from encodecmae_hear.cli import main
try:
    status = main(sys.argv[3:])
finally:
    with open(sys.argv[2], "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
sys.exit(status)
"""


def tone(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def claim_hours_flac(path: Path) -> None:
    """A short FLAC whose STREAMINFO claims 2^35 samples (about 200 hours)."""
    sf.write(path, tone(0.5, 48000), 48000)
    data = bytearray(path.read_bytes())
    field = int.from_bytes(data[18:26], "big")  # rate | channels | bits | 36-bit total
    data[18:26] = ((field & ~((1 << 36) - 1)) | (1 << 35)).to_bytes(8, "big")
    path.write_bytes(bytes(data))


def claim_hours_wav(path: Path) -> None:
    """A short WAV whose RIFF and data sizes claim 4 GB."""
    sf.write(path, tone(0.5, 48000), 48000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[4:8], data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFF8), struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))


def snapshot(root: Path, skip: Path) -> dict:
    """Every entry below root (links not followed) but `skip` -> (mode, size, mtime)."""
    state = {}
    for dirpath, dirnames, names in os.walk(os.fsencode(root)):
        for name in dirnames + names:
            path = os.path.join(dirpath, name)
            if os.fsdecode(path).startswith(str(skip)):
                continue
            info = os.lstat(path)
            state[path] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return state


# name -> (what the battery expects of `embed`: "ok" or words of its failed.txt line)
HOSTILE = {
    "good.wav": "ok",
    "eight channels.wav": "ok",
    "odd rate 44101.wav": "ok",
    "odd rate 1201.wav": "ok",
    "odd rate 383999.wav": "ok",
    "rate 500.wav": "outside what this project resamples",
    "line\nbreak.wav": "ok",
    "folder.wav/inside.flac": "ok",
    "claims hours.wav": "ok",  # libsndfile reads the real 0.5 s
    "claims hours.flac": "damaged: decoding stopped after",
    "empty.wav": "cannot decode",
    "garbage.flac": "cannot decode",
    "truncated.flac": "cannot decode",
    "header only.wav": "audio is empty",
    "nan.wav": "NaN",
    "int scale.wav": "must be in [-1, 1]",
    "one sample.wav": "shorter than one frame",
    "fifo.wav": "not a regular file: a FIFO",
    "dangling.wav": "broken link",
    "sub/loop": "folder already searched",
    "sub/away": "link to a folder outside",
}
NOT_UTF8 = b"caf\xe9 \xff.wav"  # embedded like any other


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """-> (the hostile folder, a folder outside it that a link points to)."""
    base = tmp_path_factory.mktemp("wild")
    root, away = base / "audio", base / "elsewhere"
    (root / "sub").mkdir(parents=True)
    (root / "folder.wav").mkdir()
    away.mkdir()
    sf.write(away / "not mine.wav", tone(1.0, 16000), 16000)
    sf.write(root / "good.wav", tone(1.2, 48000), 48000)
    sf.write(root / "eight channels.wav", tone(1.0, 22050, channels=8), 22050)
    for rate in (44101, 1201, 383999, 500):
        name = f"odd rate {rate}.wav" if rate != 500 else "rate 500.wav"
        sf.write(root / name, tone(1.0, rate), rate)
    sf.write(root / "line\nbreak.wav", tone(0.8, 16000), 16000)
    sf.write(root / "folder.wav" / "inside.flac", tone(0.7, 32000), 32000)
    claim_hours_wav(root / "claims hours.wav")
    claim_hours_flac(root / "claims hours.flac")
    (root / "empty.wav").write_bytes(b"")
    (root / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    sf.write(root / "truncated.flac", tone(2.0, 44100), 44100)
    (root / "truncated.flac").write_bytes((root / "truncated.flac").read_bytes()[:60])
    sf.write(root / "header only.wav", np.zeros((0, 1), np.float32), 48000)
    nan = tone(1.0, 16000)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "int scale.wav", tone(1.0, 16000, amplitude=2000.0), 16000, subtype="FLOAT")
    sf.write(root / "one sample.wav", np.zeros((1, 1), np.float32), 16000)
    os.mkfifo(root / "fifo.wav")
    os.symlink("nowhere.wav", root / "dangling.wav")
    os.symlink("..", root / "sub" / "loop")  # back to the top: followed once
    os.symlink(away, root / "sub" / "away")
    sf.write(os.fsencode(root) + b"/" + NOT_UTF8, tone(1.0, 16000), 16000)
    (root / "notes.txt").write_text("not audio")
    return root, away


def run_limited(*argv, cwd=ROOT) -> tuple[subprocess.CompletedProcess, int, float]:
    """A command under MEMORY_LIMIT and TIME_LIMIT -> (result, peak RSS bytes, seconds)."""
    peak_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"peak-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _LIMITED, str(MEMORY_LIMIT), str(peak_file),
                           *map(str, argv)], env=env, cwd=cwd, capture_output=True, timeout=TIME_LIMIT)
    seconds = time.monotonic() - start
    peak = int(peak_file.read_text()) if peak_file.exists() else -1
    peak_file.unlink(missing_ok=True)
    return done, peak, seconds


def test_the_battery_embed(hostile, tiny_checkpoint, tmp_path):
    root, away = hostile
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = out / "sub" / ".good.wav.embedding.npy.tmp99999"  # left by a killed run
    stale.write_bytes(b"half")
    before = snapshot(root.parent, skip=out) | snapshot(tmp_path, skip=out)
    done, peak, seconds = run_limited("embed", root, "--out", out, "--model", tiny_checkpoint,
                                      "--device", "cpu", "--batch", "4")
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err[-3000:]
    assert "Traceback" not in err and 0 < peak < MEMORY_LIMIT and seconds < TIME_LIMIT
    embedded = {p.relative_to(out).as_posix() for p in out.rglob("*.embedding.npy")}
    expected = {name + ".embedding.npy" for name, what in HOSTILE.items() if what == "ok"}
    expected.add(os.fsdecode(NOT_UTF8) + ".embedding.npy")
    assert embedded == expected
    for name in expected:  # frames of the audio that is really there
        emb = np.load(out / name)
        ts = np.load(out / name.replace(".embedding.npy", ".timestamps.npy"))
        assert emb.shape[0] == ts.shape[0] > 0 and np.isfinite(emb).all()
    hours = np.load(out / "claims hours.wav.timestamps.npy")
    assert hours[-1] <= 500  # ms: the 0.5 s that exist, not the 4 GB claimed
    lines = (out / "failed.txt").read_text(encoding="utf-8").splitlines()
    failures = {name: what for name, what in HOSTILE.items() if what != "ok"}
    assert len(lines) == len(failures)  # one line each, the newline in a name escaped
    for name, what in failures.items():
        line = [ln for ln in lines if ln.split("\t")[0] == files.shown(root / name)]
        assert len(line) == 1 and what in line[0], (name, lines)
    assert "skipped 4 entries while searching folders" in err
    assert not stale.exists()
    assert (snapshot(root.parent, skip=out) | snapshot(tmp_path, skip=out)) == before
    assert not any(files.TEMP_NAME.match(p.name) for p in out.rglob("*"))


def test_the_battery_manifest_and_pretrain(hostile, tmp_path):
    root, away = hostile
    before = snapshot(root.parent, skip=tmp_path)
    manifest = tmp_path / "m.jsonl"
    done, peak, _ = run_limited("manifest", root, "-o", manifest)
    assert done.returncode == 0 and peak < MEMORY_LIMIT, done.stderr[-3000:]
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    listed = {Path(r["path"]).relative_to(root.resolve()).as_posix() for r in records}
    usable = {n for n, what in HOSTILE.items() if what == "ok" and n != "claims hours.flac"}
    # NaN, integer-scaled and one-sample files are audio to the manifest (training drops
    # what it cannot use); the rest is skipped and listed with its reason
    usable |= {"nan.wav", "int scale.wav", os.fsdecode(NOT_UTF8)}
    assert listed == usable
    assert all(Path(r["path"]).is_file() for r in records)  # names that are not UTF-8 too
    skipped = (tmp_path / "m.jsonl.skipped.txt").read_text(encoding="utf-8").splitlines()
    reasons = {line.split("\t")[0]: line.split("\t")[1] for line in skipped}
    assert reasons[files.shown(root / "claims hours.flac")].startswith("damaged: its header claims")
    assert reasons[files.shown(root / "fifo.wav")] == "not a regular file: a FIFO"
    assert reasons[files.shown(root / "rate 500.wav")].startswith("unsupported sample rate")
    assert reasons[files.shown(root / "one sample.wav")].startswith("shorter than")

    run = tmp_path / "run"
    done, peak, seconds = run_limited("pretrain", *tiny_args(root, run, 1, "--targets", "mel-kmeans",
                                                             "--clusters", "4", "--kmeans-clips", "4"))
    log = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0 and peak < MEMORY_LIMIT and seconds < TIME_LIMIT, log[-3000:]
    assert (run / "model.pt").is_file() and "Traceback" not in log
    assert snapshot(root.parent, skip=tmp_path) == before


# One writer per output folder -------------------------------------------------------

_HOLD = """
import sys, time
from encodecmae_hear import files
files.claim_folder(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def hold(folder, **env) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_run_on_one_folder_fails_at_once_naming_the_first(hostile, tmp_path, tiny_checkpoint, capsys):
    first = hold(tmp_path / "out")
    try:
        start = time.monotonic()
        assert main(["embed", str(hostile[0] / "good.wav"), "--out", str(tmp_path / "out"),
                     "--model", str(tiny_checkpoint)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"(pid {first.pid})" in err and "another run" in err
        assert time.monotonic() - start < 30
    finally:
        first.kill()
        first.wait()
    files.claim_folder(tmp_path / "out")  # free again once the first has ended
    files.release_folder(tmp_path / "out")


def test_processes_of_one_torchrun_job_share_a_folder(tmp_path):
    job = {"WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "abc", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    ranks = [hold(tmp_path, **job, RANK="0"), hold(tmp_path, **job, RANK="1")]  # both hold it
    try:
        other = subprocess.run([sys.executable, "-c", _HOLD, str(tmp_path)], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **job, "MASTER_PORT": "29501"},
                               timeout=60)
        assert other.returncode == 1 and "FolderInUse" in other.stderr and "torchrun job abc" in other.stderr
    finally:
        for proc in ranks:
            proc.kill()
            proc.wait()


def test_the_first_claim_removes_temporary_files_of_a_killed_run(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    stale = [tmp_path / ".x.npy.tmp123", tmp_path / "a" / "b" / ".model.pt.tmp9"]
    kept = [tmp_path / "x.npy", tmp_path / ".hidden", tmp_path / "a" / ".x.tmp"]
    for path in stale + kept:
        path.write_bytes(b"1")
    with files.sole_writer(tmp_path):
        assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# One line, whatever happens ---------------------------------------------------------

def one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"{command}: error: ") and err.count("\n") == 1, err
    return err


def test_an_out_that_is_a_file_ends_in_one_line(hostile, tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["embed", str(hostile[0] / "good.wav"), "--out", str(tmp_path / "file"),
                 "--model", str(tiny_checkpoint)]) == 2
    assert "file" in one_line(capsys, "embed")
    assert main(["init", "--preset", "tiny", "-o", str(tmp_path / "file" / "x.pt")]) == 2
    assert "a file stands where a folder is needed" in one_line(capsys, "init")


def test_a_full_disk_ends_in_one_line(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "x.pt"))

    monkeypatch.setattr(files, "torch_save", full)
    assert main(["init", "--preset", "tiny", "-o", str(tmp_path / "x.pt")]) == 2
    assert "the disk is full" in one_line(capsys, "init")


def test_a_write_that_fails_midway_names_its_file(tmp_path):
    with pytest.raises(OSError) as info:
        with files.atomic_open(tmp_path / "x.bin") as f:
            f.write(b"some")
            raise OSError(28, "No space left on device")  # as torch.save raises it
    assert info.value.filename == str(tmp_path / "x.bin") and info.value.errno == 28
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_bad_arguments_end_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--batch", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("embed: error: ") and err.count("\n") == 1


def test_a_manifest_that_is_not_utf8_ends_in_one_line(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'{"path": "a.wav", "duration": 1}\n{"path": "\xff.wav"}\n')
    assert main(["embed", str(manifest), "--out", str(tmp_path / "out")]) == 2
    assert "m.jsonl:2: not UTF-8" in one_line(capsys, "embed")


def test_ctrl_c_ends_in_one_line_with_status_130(tiny_checkpoint, tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    # 20 minutes of audio: still embedding when the interrupt comes, however fast the machine
    sf.write(root / "long.wav", tone(1200.0, 16000), 16000)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # a terminal's Ctrl-C reaches a process whose SIGINT is the default; a test suite run in
    # the background (`make test &`) hands its children an ignored SIGINT instead
    proc = subprocess.Popen([sys.executable, "-m", "encodecmae_hear", "embed", str(root), "--out",
                             str(tmp_path / "out"), "--model", str(tiny_checkpoint)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60  # interrupt once the command has begun its work
    while not (tmp_path / "out" / files.LOCK_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.splitlines()[-1] == "embed: interrupted (Ctrl-C)" and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "encodecmae_hear", "info"], cwd=ROOT, env=env,
                            stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    os.close(read)  # the reader is gone before the command writes
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == ""


@pytest.fixture
def official(tmp_path):
    path = tmp_path / "official.pt"
    path.write_bytes((ROOT / "tests" / "fixtures" / "official" / "mel256.pt").read_bytes())
    return path


def test_convert_refuses_to_write_over_its_source(official, capsys):
    before = official.read_bytes()
    assert main(["convert", str(official), str(official.parent / "." / official.name)]) == 2
    assert "is the source file itself" in one_line(capsys, "convert")
    assert official.read_bytes() == before


@pytest.mark.parametrize("content, says", [
    (b"garbage " * 10, "not a PyTorch checkpoint file"),
    (b"PK\x03\x04" + b"\x00" * 40, "not a readable PyTorch file"),
    (None, "could run code"),
])
def test_convert_reads_through_the_safe_door(tmp_path, content, says, capsys):
    source = tmp_path / "source.pt"
    if content is None:
        torch.save({"state_dict": {}, "hook": os.system}, source)  # code in a pickle
    else:
        source.write_bytes(content)
    assert main(["convert", str(source), str(tmp_path / "out.pt")]) == 2
    assert says in one_line(capsys, "convert")
    assert not (tmp_path / "out.pt").exists()


def test_an_onnx_file_is_not_said_to_run_code(tmp_path, capsys):
    onnx = tmp_path / "student.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch" + bytes(64))  # how an ONNX protobuf begins
    assert main(["info", str(onnx)]) == 2
    err = one_line(capsys, "info")
    assert "ONNX" in err and "run code" not in err


def test_missing_task_folders_end_in_one_line(tmp_path, capsys):
    assert main(["hear-embed", "--tasks-dir", str(tmp_path / "tasks"), "--runs", str(tmp_path / "runs")]) == 2
    err = one_line(capsys, "hear-embed")
    assert "does not exist" in err and "synth-tasks" in err and "MISSING" not in err


def test_user_error_is_the_folder_in_use_error():
    assert issubclass(files.FolderInUse, UserError)
