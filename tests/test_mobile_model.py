"""The mobile encoder (model/mobile.py): frontend constants, frame rate and timing, width
multiplier, multiply-accumulates, checkpoint round trip."""
import math

import pytest
import torch

from encodecmae_hear.checkpoint import CheckpointError, load_checkpoint, model_from_payload, save_checkpoint
from encodecmae_hear.model.mobile import (
    MOBILE_PRESETS,
    MobileConfig,
    MobileModel,
    macs_per_second,
    mobile_preset,
)
from encodecmae_hear.model.params import count_parameters


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return MobileModel(mobile_preset("mobile-tiny")).eval()


@pytest.mark.parametrize("n", [640, 641, 16000, 16000 * 3 + 17, 1279])
def test_one_frame_per_40_ms_in_one_pass(tiny, n):
    with torch.no_grad():
        frames = tiny(torch.randn(2, n) * 0.1)
    assert frames.shape == (2, math.ceil(n / 640), tiny.config.dim)
    assert tiny.config.frame_rate == 25.0 and tiny.num_frames(n) == math.ceil(n / 640)
    assert tiny.log_mel(torch.zeros(1, n)).shape == (1, 4 * math.ceil(n / 640), 64)


def test_mel_frame_i_is_centred_on_sample_160i_plus_80(tiny):
    for k in (0, 7, 30):
        wav = torch.zeros(1, 8000)
        wav[0, 160 * k + 80] = 1.0  # a click
        energy = tiny.log_mel(wav)[0].exp().sum(1)  # (T,)
        assert int(energy.argmax()) == k
        assert energy[k - 1 if k else k + 1] == pytest.approx(float(energy[k + 1]), rel=1e-4)


def test_the_dft_convolution_is_a_512_point_stft_of_25_ms_hann_windows(tiny):
    wav = torch.randn(2, 16000) * 0.3
    # torch.stft centres the 400-sample window in its 512-sample frame: 56 more samples of padding
    spec = torch.stft(torch.nn.functional.pad(wav, (176, 176)), 512, 160, 400, torch.hann_window(400),
                      center=False, return_complex=True).abs()  # (B, 257, 100)
    expected = torch.log(spec.transpose(1, 2) @ tiny.frontend.fbank + 1e-3)
    torch.testing.assert_close(tiny.log_mel(wav), expected, atol=2e-5, rtol=0)


def test_mel_bins_span_60_to_7800_hz_on_the_htk_scale(tiny):
    def mel(f):
        return 2595 * math.log10(1 + f / 700)
    edges = torch.linspace(mel(60), mel(7800), 66)
    centres = 700 * (10 ** (edges[1:-1] / 2595) - 1)  # Hz
    for b in (3, 20, 50):
        f = float(centres[b])
        t = torch.arange(16000) / 16000
        spectrum = tiny.log_mel(torch.sin(2 * math.pi * f * t)[None])[0, 20:80].mean(0)
        assert int(spectrum.argmax()) == b


def test_output_frames_depend_only_on_nearby_audio(tiny):
    wav = torch.randn(1, 16000 * 4) * 0.1
    changed = wav.clone()
    changed[0, 32000:32640] += 0.5  # frame 50
    with torch.no_grad():
        diff = (tiny(wav) - tiny(changed)).abs().amax(-1)[0]
    moved = torch.nonzero(diff > 1e-6).flatten()
    assert 50 in moved.tolist() and moved.min() >= 40 and moved.max() <= 60


def encoder_parameters(channels) -> int:
    ins = (1,) + tuple(channels[:-1])
    return sum(9 * i * o + 2 * o for i, o in zip(ins, channels))  # conv without bias, BN


def test_width_multiplier_scales_channels_and_parameters():
    full = MobileModel(mobile_preset("mobile-full"))
    assert full.config.channels == (64, 128, 256, 256, 512, 512)
    assert count_parameters(full) == encoder_parameters(full.config.channels) == 4_501_440
    half = MobileModel(mobile_preset("mobile-half"))
    assert half.config.channels == (32, 64, 128, 128, 256, 256)
    assert 0.24 < count_parameters(half) / count_parameters(full) < 0.26
    assert MobileConfig(width=0.3).channels == (16, 40, 80, 80, 152, 152)  # multiples of 8
    assert set(MOBILE_PRESETS) == {"mobile-full", "mobile-half", "mobile-quarter", "mobile-tiny"}


def test_macs_per_second_count_every_convolution():
    model = MobileModel(mobile_preset("mobile-full"))
    c, expected, (t, f), c_in = model.config.channels, 100 * 257 * (2 * 400 + 64), (100, 64), 1
    for c_out, tp, fp in zip(c, model.config.time_pools, model.config.freq_pools):
        expected += 9 * c_in * c_out * t * f
        c_in, t, f = c_out, t // tp, f // fp
    assert macs_per_second(model) == expected == 615_715_200  # 0.6 GMAC per second of audio


def test_config_round_trip_and_clear_errors():
    config = mobile_preset("mobile-half", head="distill", distill_dims=(256, 128))
    d = config.to_dict()
    assert d["architecture"] == "mobile" and MobileConfig.from_dict(d) == config
    with pytest.raises(ValueError, match="unknown config keys"):
        MobileConfig.from_dict({**d, "heads": 2})
    with pytest.raises(ValueError, match="head must be one of"):
        MobileConfig(head="mae")
    with pytest.raises(ValueError, match="needs distill_dims"):
        MobileConfig(head="distill")
    with pytest.raises(ValueError, match="unknown mobile preset"):
        mobile_preset("mobile-huge")


@pytest.mark.parametrize("head", ["", "cbow", "skipgram", "temporalgap"])
def test_checkpoint_round_trip_rebuilds_the_model(tmp_path, head):
    torch.manual_seed(1)
    model = MobileModel(mobile_preset("mobile-tiny", head=head))
    model.encoder.blocks[0][1].running_mean.normal_()  # BN statistics travel too
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, provenance={"notes": "test"})
    loaded, payload = load_checkpoint(path, architecture="mobile")
    assert type(loaded) is MobileModel and loaded.config == model.config and not loaded.training
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav), model.eval()(wav), rtol=0, atol=0)
    broken = {**payload, "model": {k: v for k, v in payload["model"].items() if "blocks.5" not in k}}
    with pytest.raises(CheckpointError, match="weights do not match"):
        model_from_payload(broken, path)


def test_architectures_are_kept_apart(tmp_path, tiny_checkpoint):
    path = tmp_path / "m.pt"
    save_checkpoint(path, MobileModel(mobile_preset("mobile-tiny")))
    message = "architecture 'mobile', not 'encodecmae'; its HEAR module is encodecmae_hear.mobile_hear"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)  # what the EnCodecMAE HEAR module calls
    with pytest.raises(CheckpointError, match="architecture 'encodecmae', not 'mobile'"):
        load_checkpoint(tiny_checkpoint, architecture="mobile")
    model, _ = load_checkpoint(tiny_checkpoint, architecture=None)  # no key: EnCodecMAE
    assert type(model).__name__ == "EncodecMAE"


def test_info_describes_a_mobile_checkpoint(tmp_path, capsys):
    from encodecmae_hear.cli import main

    model = MobileModel(mobile_preset("mobile-half", head="temporalgap"))
    save_checkpoint(tmp_path / "m.pt", model, provenance={"objective": "temporalgap"})
    assert main(["info", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "architecture: mobile" in out and "objective: temporalgap" in out
    assert f"encoder: {count_parameters(model.encoder):,}" in out
    assert f"total: {count_parameters(model):,}" in out
    assert f"per second of audio: {macs_per_second(model):,}" in out
