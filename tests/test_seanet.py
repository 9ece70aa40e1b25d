"""The channels-last SEANet encoder computes what EnCodec's own encoder computes."""
import pytest
import torch
from encodec.modules.seanet import SEANetEncoder

from encodecmae_hear.model.encodec import build_encodec, fold_weight_norm
from encodecmae_hear.model.precision import bf16_encodec
from encodecmae_hear.model.seanet import ChannelsLastEncoder, channels_last_encoder

CLOSE = dict(rtol=1e-5, atol=1e-6)


def small_seanet(**options) -> SEANetEncoder:
    torch.manual_seed(0)
    encoder = SEANetEncoder(dimension=16, n_filters=4, ratios=[4, 2], lstm=1, **options)
    with torch.no_grad():  # untrained biases are zero: give them values, so a lost bias shows
        for name, p in encoder.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return fold_weight_norm(encoder)


@pytest.fixture(scope="module")
def encodec_encoder():
    return fold_weight_norm(build_encodec().encoder)


@pytest.mark.parametrize("samples", [96_000, 24_321, 333, 5])
def test_equals_encodec_at_any_length(encodec_encoder, samples):
    # 24,321 samples: the last stride is not full (extra right padding); 5 samples: shorter
    # than the first kernel's reflect padding (EnCodec extends with zeros first)
    wav = 0.1 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(samples))
    with torch.no_grad():
        want = encodec_encoder(wav)
        got = channels_last_encoder(encodec_encoder)(wav)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, **CLOSE)


@pytest.mark.parametrize("options", [
    dict(causal=True, pad_mode="reflect"),
    dict(causal=False, pad_mode="reflect"),  # centred, odd strides pad asymmetrically
    dict(causal=False, pad_mode="constant"),
    dict(causal=True, n_residual_layers=2, true_skip=True),  # dilation 2, identity shortcut
])
def test_equals_seanet_of_every_layout(options):
    encoder = small_seanet(**options)
    wav = 0.1 * torch.randn(3, 1, 4001, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(channels_last_encoder(encoder)(wav), encoder(wav), **CLOSE)


def test_any_conv_group_gives_the_same_latents(encodec_encoder):
    fast = channels_last_encoder(encodec_encoder)
    wav = 0.1 * torch.randn(3, 1, 12_000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        together = fast(wav)
        for group in (1, 2):
            torch.testing.assert_close(fast(wav, conv_group=group), together, **CLOSE)
        alone = fast(wav[1:2])
    torch.testing.assert_close(together[1:2], alone, **CLOSE)


def test_activations_stay_channels_last(encodec_encoder):
    fast = channels_last_encoder(encodec_encoder)
    seen = []
    for layer in fast.convs:
        layer.register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        fast(0.1 * torch.randn(1, 1, 8000))
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) and x.stride(1) == 1 for x in seen)


def test_bf16_encoder_is_channels_last_and_close_to_float32(encodec_encoder):
    encoder = build_encodec().encoder
    fast = bf16_encodec(encoder)
    assert isinstance(fast, ChannelsLastEncoder) and next(fast.parameters()).dtype == torch.bfloat16
    assert next(encoder.parameters()).dtype == torch.float32  # the caller's module unchanged
    wav = 0.1 * torch.randn(1, 1, 24_000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want = fast(wav.bfloat16()).float(), encodec_encoder(wav)
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.9999


def test_refuses_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match="fold"):
        channels_last_encoder(SEANetEncoder(dimension=16, n_filters=4, ratios=[4, 2]))
    grouped = SEANetEncoder(dimension=16, n_filters=4, ratios=[4, 2], norm="time_group_norm")
    with pytest.raises(TypeError, match="time_group_norm|GroupNorm|48 kHz"):
        channels_last_encoder(grouped)
