"""HEAR rules (SPEC section 6) for encodecmae_hear.mobile_hear on a tiny mobile model:
shapes, 25 frames/s timestamps in ms, batch independence, windows equal to one pass, errors,
and the real hear-validator."""
import subprocess

import pytest
import torch

from encodecmae_hear import mobile_hear
from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.mobile_hear import MobileHear, get_scene_embeddings, get_timestamp_embeddings
from encodecmae_hear.model.mobile import MobileModel, mobile_preset
from tests.conftest import tone_mix
from tests.test_validator import validator_exe


def expected_frames(n_samples, sample_rate=16000):
    """Frames whose centre, (j + 0.5) / 25 s, lies inside the audio."""
    duration = n_samples / sample_rate
    return sum(1 for j in range(int(duration * 25) + 2) if (j + 0.5) / 25 <= duration)


@pytest.fixture(scope="module")
def tiny_mobile():
    torch.manual_seed(0)
    model = MobileModel(mobile_preset("mobile-tiny", head="distill", distill_dims=(24, 8))).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def hear_model(tiny_mobile):
    return MobileHear(tiny_mobile, output="encoder")


@pytest.mark.parametrize("seconds", [0.02, 0.05, 1.07, 1.98, 4.0, 9.1])
def test_shapes_dtypes_and_timestamps(hear_model, seconds):
    audio = tone_mix(seconds, 16000, n=2)
    emb, ts = get_timestamp_embeddings(audio, hear_model)
    frames = expected_frames(audio.shape[1])
    assert emb.shape == (2, frames, 64) == (2, frames, hear_model.timestamp_embedding_size)
    assert ts.shape == (2, frames) and emb.dtype == ts.dtype == torch.float32
    assert torch.all((torch.diff(ts, dim=1) - 40.0).abs() < 1e-3)
    assert ts[0, 0].item() == pytest.approx(20.0)
    assert ts[0, -1].item() <= 1000 * seconds < ts[0, -1].item() + 40
    scene = get_scene_embeddings(audio, hear_model)
    torch.testing.assert_close(scene, emb.mean(1))
    assert hear_model.sample_rate == 16000 and isinstance(hear_model.scene_embedding_size, int)


def test_frames_are_the_encoder_output_of_one_pass(tiny_mobile, hear_model):
    audio = tone_mix(9.1, 16000, seed=1)
    emb, _ = get_timestamp_embeddings(audio, hear_model)
    with torch.no_grad():
        whole = tiny_mobile.frames(audio)
    torch.testing.assert_close(emb[0], whole[0, :emb.shape[1]], atol=1e-5, rtol=1e-5)
    windows, _ = get_timestamp_embeddings(audio, MobileHear(tiny_mobile, "encoder", chunk_seconds=1.0))
    torch.testing.assert_close(windows, emb, atol=1e-5, rtol=1e-5)  # 1 s windows with context


def test_batch_independence(hear_model):
    batch = tone_mix(5.5, 16000, seed=2, n=3)
    emb, _ = get_timestamp_embeddings(batch, hear_model)
    for i in range(3):
        assert torch.equal(emb[i], get_timestamp_embeddings(batch[i:i + 1], hear_model)[0][0])


def test_a_distilled_student_returns_its_teacher_prediction(tiny_mobile):
    hear = MobileHear(tiny_mobile)  # default output of a distill head
    assert hear.output == "distill" and hear.timestamp_embedding_size == 32
    audio = tone_mix(2.0, 16000, seed=3)
    emb, _ = get_timestamp_embeddings(audio, hear)
    with torch.no_grad():
        expected = torch.cat(tiny_mobile.head(tiny_mobile.frames(audio)), -1)[:, :50]
    torch.testing.assert_close(emb, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="output 'distill' needs a distilled student"):
        MobileHear(MobileModel(mobile_preset("mobile-tiny")), output="distill")


@pytest.mark.parametrize("audio, message", [
    (torch.zeros(2, 300), "shorter than one frame: 300 samples at 16000 Hz; need at least 320 \\(20 ms\\)"),
    (torch.zeros(16000), "must have shape \\(n_sounds, n_samples\\)"),
    (torch.full((1, 16000), float("nan")), "NaN or infinite"),
    (torch.zeros(1, 16000, dtype=torch.int16), "floating point"),
])
def test_bad_input_is_refused_with_what_was_expected(hear_model, audio, message):
    with pytest.raises(ValueError, match=message):
        get_timestamp_embeddings(audio, hear_model)


def test_load_model_needs_a_mobile_file(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="architecture 'encodecmae', not 'mobile'"):
        mobile_hear.load_model(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def mobile_checkpoint(tmp_path_factory, tiny_mobile):
    path = tmp_path_factory.mktemp("mobile") / "student.pt"
    save_checkpoint(path, tiny_mobile, provenance={"trained": False, "notes": "test"})
    return path


def test_load_model_reads_a_checkpoint(mobile_checkpoint, tiny_mobile):
    model = mobile_hear.load_model(str(mobile_checkpoint), output="encoder")
    assert model.provenance["notes"] == "test" and model.timestamp_embedding_size == 64
    audio = tone_mix(1.0, 16000, seed=4)
    with torch.no_grad():
        expected = tiny_mobile.frames(audio)[:, :25]
    torch.testing.assert_close(model.embed(audio), expected, atol=1e-5, rtol=1e-5)


def test_hear_validator_accepts_a_mobile_checkpoint(mobile_checkpoint):
    result = subprocess.run([validator_exe(), "encodecmae_hear.mobile_hear", "--model",
                             str(mobile_checkpoint), "--device", "cpu"],
                            capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Looks good!" in output and "Model sample rate is: 16000" in output
    assert "Max timestamp 3980.0" in output  # 4 s clip: 100 frames, last centre 3980 ms
