"""Architecture facts of SPEC section 2: sizes, frames, positions, ResiDual, masking."""
import json
import math
from pathlib import Path

import pytest
import torch

from encodecmae_hear.model.config import CODEBOOK_WEIGHTS, ModelConfig, preset
from encodecmae_hear.model.frontend import EncodecFrontend, MelFrontend
from encodecmae_hear.model.mae import EncodecMAE, span_mask
from encodecmae_hear.model.params import breakdown, count_parameters, encoder_paper_count
from encodecmae_hear.model.transformer import (MASK_VALUE, MultiHeadAttention, SinusoidalPositions, TransformerStack,
                                               attention_products)

REFERENCE_COUNTS = json.loads((Path(__file__).parent / "fixtures" / "official"
                               / "reference_param_counts.json").read_text())


def test_paper_sizes_follow_from_the_counting_rule():
    # The rule (FFN per layer, plus final norm) matched against real unshared modules,
    # built on the meta device: shapes without memory.
    for name, paper_millions in (("small", 43), ("base", 86)):
        cfg = preset(name)
        with torch.device("meta"):
            stack = TransformerStack(cfg.dim, cfg.encoder_layers, cfg.encoder_heads, cfg.ff_dim,
                                     share_ffn=False)
        assert all(p.is_meta for p in stack.parameters())
        assert count_parameters(stack) == encoder_paper_count(cfg)
        assert math.floor(encoder_paper_count(cfg) / 1e6) == paper_millions
    assert round(encoder_paper_count(preset("small")) / 1e6, 2) == 43.29
    assert round(encoder_paper_count(preset("base")) / 1e6, 2) == 86.59
    # Large: the same rule gives 251.5M, not the paper's 261M (see README).
    assert round(encoder_paper_count(preset("large")) / 1e6, 1) == 251.5


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_stored_parameter_counts_match_the_released_reference_models(size):
    # The reference's own counts (EnCodec frontend, shared FFN) at their published
    # precision; the model is built on the meta device (no 230M real parameters).
    with torch.device("meta"):
        model = EncodecMAE(preset(size, "encodec"))
    assert all(p.is_meta for p in model.parameters())  # nothing allocated
    counts = breakdown(model)
    released = REFERENCE_COUNTS["released"][size]
    assert set(released) == {"total", "frontend", "decoder", "head"}
    for part, (millions, decimals) in released.items():
        assert round(counts[part] / 1e6, decimals) == millions, (part, counts[part])
    if size == "base":  # SPEC: the stored encoder of Base, FFN shared
        assert round(counts["encoder"] / 1e6, 1) == 29.9


def test_shared_ffn_is_one_module_per_stack():
    model = EncodecMAE(preset("tiny"))
    ffns = {id(layer.ffn) for layer in model.encoder.layers}
    assert len(ffns) == 1
    unshared = EncodecMAE(preset("tiny", share_ffn=False))
    assert len({id(layer.ffn) for layer in unshared.encoder.layers}) == unshared.config.encoder_layers


def test_large_attention_uses_85_dim_heads():
    att = MultiHeadAttention(1024, 12)
    assert att.wq.weight.shape == (1020, 1024) and att.wo.weight.shape == (1024, 1020)


def test_attention_runs_a_fused_sdpa_kernel_with_a_padding_mask():
    """The head-minor q, k, v are made contiguous, so SDPA takes its fused CPU kernel
    (flash) rather than the unfused math path; and the output is the same attention."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=64, heads=4).eval()
    x = torch.randn(2, 30, 64)
    padded = torch.zeros(2, 30, dtype=torch.bool)
    padded[1, 20:] = True
    with torch.no_grad(), torch.profiler.profile() as prof:
        out = attention(x, padded)
    ops = {event.key for event in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_scaled_dot_product_attention_math" not in ops
    with torch.no_grad():  # written out: head h owns channels h, h + H, ... (head-minor)
        q, k, v = (w(x).view(2, 30, 16, 4).permute(0, 3, 1, 2)
                   for w in (attention.wq, attention.wk, attention.wv))
        logits = q @ k.transpose(-1, -2) / math.sqrt(16)
        logits = logits.masked_fill(padded[:, None, None, :], float("-inf"))
        heads = (logits.softmax(-1) @ v).permute(0, 2, 3, 1).reshape(2, 30, 64)
        expected = attention.wo(heads)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seconds, ec_frames, mel_frames", [(4.0, 300, 300), (1.3, 98, 97)])
def test_frame_counts(tiny_encodec, seconds, ec_frames, mel_frames):
    wav = torch.randn(1, int(seconds * 24000)) * 0.1
    assert tiny_encodec.frontend(wav).shape == (1, ec_frames, 128)
    assert EncodecFrontend.num_frames(wav.shape[1]) == ec_frames
    assert MelFrontend()(wav).shape == (1, mel_frames, 256)
    assert MelFrontend.num_frames(wav.shape[1]) == mel_frames


def test_mel_frontend_is_kaldi_fbank_of_each_waveform_normalised():
    """The batched frontend against torchaudio's Kaldi fbank, one waveform at a time
    (the reference's call): noise, a quiet one, half silence, a tone; also under autocast."""
    from torchaudio.compliance.kaldi import fbank
    torch.manual_seed(0)
    wav = torch.randn(4, 24000) * 0.1
    wav[1] *= 1e-3
    wav[2, :12000] = 0
    wav[3] = 0.5 * torch.sin(2 * torch.pi * 440 * torch.arange(24000) / 24000)
    expected = torch.stack([fbank(w[None], sample_frequency=24000, num_mel_bins=256, frame_length=26.56,
                                  frame_shift=13.28, window_type="hanning", low_freq=20, high_freq=0,
                                  htk_compat=True, use_energy=False, dither=0.0)
                            for w in wav])
    expected = (expected + 6.12) / 4.82
    torch.testing.assert_close(MelFrontend()(wav), expected, atol=1e-3, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = MelFrontend()(wav)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected, atol=1e-3, rtol=0)
    assert MelFrontend().state_dict() == {}  # derived constants: no checkpoint keys


def test_sinusoidal_positions():
    pos = SinusoidalPositions(8)
    with torch.no_grad():
        pos.scale.fill_(2.0)
    out = pos(torch.zeros(1, 5, 8))[0]
    for p in range(5):
        for i in range(4):
            angle = p / 10000 ** (2 * i / 8)
            assert out[p, 2 * i].item() == pytest.approx(2 * math.sin(angle), abs=1e-5)
            assert out[p, 2 * i + 1].item() == pytest.approx(2 * math.cos(angle), abs=1e-5)


def _manual_attention(att: MultiHeadAttention, x, padding):
    """Written out with explicit softmax: channel c of each projection is head c mod H."""
    b, t, _ = x.shape
    h, hd = att.heads, att.head_dim
    q = (x @ att.wq.weight.T).view(b, t, hd, h)
    k = (x @ att.wk.weight.T).view(b, t, hd, h)
    v = (x @ att.wv.weight.T).view(b, t, hd, h)
    logits = torch.einsum("bqdh,bkdh->bhqk", q, k) * hd ** -0.5
    logits = logits + padding[:, None, None, :].float() * -1e9
    out = torch.einsum("bhqk,bkdh->bqdh", logits.softmax(-1), v).reshape(b, t, hd * h)
    return out @ att.wo.weight.T


def test_residual_stack_matches_the_written_out_equations():
    torch.manual_seed(0)
    stack = TransformerStack(16, 3, 4, 32, share_ffn=True)
    x = torch.randn(2, 7, 16)
    padding = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    x0 = x1 = x
    for layer in stack.layers:
        att = _manual_attention(layer.attention, x0, padding)
        x0, x1 = layer.norm1(x0 + att), x1 + att
        ff = layer.ffn(x0)
        x0, x1 = layer.norm2(x0 + ff), x1 + ff
    expected = x0 + stack.final_norm(x1)
    torch.testing.assert_close(stack(x, padding), expected, atol=1e-5, rtol=1e-5)


def test_span_mask_counts_spans_and_seed():
    lengths = torch.tensor([300, 211, 40, 14])
    mask = span_mask(lengths, 300, 0.5, 15, torch.Generator().manual_seed(3))
    assert mask.sum(1).tolist() == [150, 105, 20, 7]
    for row, length in zip(mask, lengths):
        assert not row[length:].any()
    again = span_mask(lengths, 300, 0.5, 15, torch.Generator().manual_seed(3))
    other = span_mask(lengths, 300, 0.5, 15, torch.Generator().manual_seed(4))
    assert torch.equal(mask, again) and not torch.equal(mask, other)
    # Masked frames come in runs: far fewer runs than masked frames in a long sequence.
    runs = int((mask[0, 1:] & ~mask[0, :-1]).sum() + mask[0, 0])
    assert runs <= 150 / 15 + 1


class _FixedFeatures(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, wav):
        return self.features


def test_prediction_ignores_masked_frames():
    """MAE property: the encoder sees only visible frames, the decoder zeros at masked ones."""
    torch.manual_seed(0)
    model = EncodecMAE(preset("tiny")).eval()
    feats = torch.randn(2, 60, 256)
    model.frontend = _FixedFeatures(feats)
    wav = torch.zeros(2, 60 * 320)
    out = model(wav, generator=torch.Generator().manual_seed(7))
    changed = feats.clone()
    changed[out["masked"]] += 5.0
    model.frontend = _FixedFeatures(changed)
    out2 = model(wav, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out["masked"], out2["masked"])
    torch.testing.assert_close(out["logits"], out2["logits"])
    changed[~out["masked"]] += 5.0  # visible frames do matter
    out3 = model(wav, generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(out["logits"], out3["logits"])


def test_codebook_weights_and_config_round_trip():
    assert CODEBOOK_WEIGHTS == (0.22407463, 0.1759858, 0.14499009, 0.12150037,
                                0.10315603, 0.08831368, 0.07608274, 0.06589669)
    cfg = preset("base", "encodec")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.masked_loss_weight == 0.9 and cfg.mask_prop == 0.5 and cfg.mask_span == 15
    with pytest.raises(ValueError, match="frontend"):
        preset("base", "spectrogram")
    with pytest.raises(ValueError, match="unknown config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def test_encodec_frontend_folds_weight_norm_without_changing_outputs_or_keys():
    torch.manual_seed(0)
    model = EncodecMAE(preset("tiny", "encodec")).eval()
    keys = list(model.state_dict())
    assert any(k.endswith("weight_g") for k in keys)  # EnCodec's weight norm, as checkpoints store it
    wav = 0.1 * torch.randn(2, 20_000)
    with torch.no_grad():
        hooked = model.frontend.encoder(wav[:, None]).transpose(1, 2)  # weight recomputed per call
        # the same network in channels-last memory (seanet.py): equal to float rounding
        torch.testing.assert_close(model.frontend(wav), hooked, rtol=1e-5, atol=1e-6)
        folded = model.frontend.folded_encoder()
        assert not any(name.endswith(("weight_g", "weight_v")) for name, _ in folded.named_parameters())
        assert list(model.state_dict()) == keys and model.frontend.folded_encoder() is folded
        # New weights (a load, an in-place edit) give a new folded copy.
        model.frontend.encoder.model[0].conv.conv.weight_g.mul_(2)
        assert model.frontend.folded_encoder() is not folded
        changed = model.frontend.encoder(wav[:, None]).transpose(1, 2)
        assert not torch.allclose(changed, hooked, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(model.frontend(wav), changed, rtol=1e-5, atol=1e-6)


def test_encodec_frontend_built_under_inference_mode_still_runs():
    with torch.inference_mode():
        torch.manual_seed(0)
        model = EncodecMAE(preset("tiny", "encodec")).eval()
        wav = 0.1 * torch.randn(1, 8_000)
        assert model.frontend.folded_encoder() is model.frontend.encoder  # no version counters
        torch.testing.assert_close(model.frontend(wav), model.frontend.encoder(wav[:, None]).transpose(1, 2))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_attention_products_compute_what_the_fused_kernel_computes(dtype, tolerance):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=gen) for _ in range(3))
    padded = torch.zeros(2, 40, dtype=torch.bool)
    padded[1, 25:] = True  # the second item's last 15 keys are padding
    bias = padded[:, None, None, :].float() * MASK_VALUE
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    got = attention_products(q, k, v, bias, dtype)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)
    moved = v.clone()
    moved[1, :, 25:] += 100.0  # values behind padded keys change nothing
    torch.testing.assert_close(attention_products(q, k, moved, bias, dtype), got, atol=0, rtol=0)
