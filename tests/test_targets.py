"""EnCodec target tokenizer: k-means-initialised codebooks, local weights, no network."""
import pytest
import torch

from encodecmae_hear.model.encodec import EncodecTokenizer, build_encodec, build_tokenizer
from tests.conftest import tone_mix


@pytest.fixture(scope="module")
def fitted():
    tokenizer = build_tokenizer()
    audio = tone_mix(4.0, 24000, seed=1, n=4)  # 4 x 300 frames >= 1024
    tokenizer.fit_codebooks(audio, kmeans_iters=3, seed=0)
    return tokenizer


def test_untrained_tokenizer_refuses_to_emit_codes():
    tokenizer = build_tokenizer()
    assert not tokenizer.initialised
    with pytest.raises(RuntimeError, match="not initialised"):
        tokenizer(torch.zeros(1, 24000))


def test_codes_shape_range_and_use_of_every_codebook(fitted):
    assert fitted.initialised
    codes = fitted(tone_mix(2.0, 24000, seed=2, n=2))
    assert codes.shape == (2, 150, 8) and codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < 1024
    assert codes[..., 0].unique().numel() > 50


def test_codes_are_the_nearest_centroid_of_each_residual(fitted):
    wav = tone_mix(1.0, 24000, seed=3)
    latents = fitted.latents(wav)[0].T  # (T, 128)
    codes = fitted(wav)[0]  # (T, 8)
    residual = latents.clone()
    for k, layer in enumerate(fitted.quantizer.vq.layers[:8]):
        embed = layer._codebook.embed
        nearest = torch.cdist(residual, embed).argmin(1)
        assert (nearest == codes[:, k]).float().mean() > 0.99
        residual = residual - embed[codes[:, k]]


def test_fitting_is_deterministic(fitted):
    again = build_tokenizer()
    again.fit_codebooks(tone_mix(4.0, 24000, seed=1, n=4), kmeans_iters=3, seed=0)
    for a, b in zip(again.quantizer.vq.layers[:8], fitted.quantizer.vq.layers[:8]):
        torch.testing.assert_close(a._codebook.embed, b._codebook.embed)


def test_training_mode_never_updates_codebooks(fitted):
    before = fitted.quantizer.vq.layers[0]._codebook.embed.clone()
    fitted.train()
    fitted(tone_mix(1.0, 24000, seed=5))
    assert not fitted.training
    assert torch.equal(before, fitted.quantizer.vq.layers[0]._codebook.embed)


def test_local_encodec_weights_file(tmp_path, fitted):
    model = build_encodec()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(model.state_dict(), path)
    loaded = build_encodec(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    foreign = tmp_path / "foreign.th"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an EnCodec 24 kHz state dict"):
        build_encodec(foreign)
    with pytest.raises(FileNotFoundError, match="encodec_24khz-d7cc33bc.th"):
        build_encodec(tmp_path / "absent.th")
    assert isinstance(EncodecTokenizer(loaded), EncodecTokenizer)
