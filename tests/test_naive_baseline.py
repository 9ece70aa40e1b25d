"""`encodecmae_hear.evaluate.naive_baseline`: hearbaseline.naive, unchanged, on 48 kHz task folders."""
import math
import subprocess

import pytest
import torch

from encodecmae_hear.evaluate import naive_baseline
from tests.test_validator import validator_exe


def tone(sample_rate: int, seconds: float = 1.5, hz: float = 440.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (0.3 * torch.sin(2 * math.pi * hz * t)).float()[None]


@pytest.fixture(scope="module")
def model():
    return naive_baseline.load_model()


def test_declares_48k_and_the_baselines_sizes(model):
    assert model.sample_rate == 48000 and model.inner.sample_rate == 44100
    assert model.scene_embedding_size == model.timestamp_embedding_size == 4096


def test_48k_input_matches_the_baseline_fed_44k_audio(model):
    import hearbaseline.naive as naive
    ours = naive_baseline.get_scene_embeddings(tone(48000), model)
    reference = naive.get_scene_embeddings(tone(44100), model.inner)
    assert ours.shape == reference.shape == (1, 4096)
    assert torch.allclose(ours, reference, rtol=1e-3, atol=1e-2 * reference.abs().mean().item())
    other = naive_baseline.get_scene_embeddings(tone(48000, hz=1500.0), model)
    assert (other - reference).abs().mean() > 10 * (ours - reference).abs().mean()


def test_timestamps_stay_in_milliseconds(model):
    embeddings, stamps = naive_baseline.get_timestamp_embeddings(tone(48000, seconds=2.0), model)
    assert embeddings.shape[:2] == stamps.shape and embeddings.shape[2] == 4096
    assert stamps[0, 0] == 0 and stamps[0, -1] == 2000  # 50 ms hop over 2 s, not 48/44.1 of it
    assert torch.allclose(stamps[0].diff(), torch.tensor(50.0))


@pytest.mark.parametrize("bad", [torch.zeros(48000), torch.zeros(1, 48000, dtype=torch.int16)])
def test_bad_audio_is_refused(model, bad):
    with pytest.raises(ValueError, match="48000 Hz"):
        naive_baseline.get_scene_embeddings(bad, model)


def test_hear_validator_accepts_the_adapter():
    result = subprocess.run([validator_exe(), "encodecmae_hear.evaluate.naive_baseline", "--device", "cpu"],
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Looks good!" in output, output[-3000:]
