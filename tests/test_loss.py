import math

import torch

from encodecmae_hear.model.config import CODEBOOK_WEIGHTS
from encodecmae_hear.train.objectives import mae_loss


def _setup(frames=10, streams=8, vocab=16):
    targets = torch.randint(0, vocab, (1, frames, streams), generator=torch.Generator().manual_seed(0))
    perfect = torch.full((1, frames, streams, vocab), -30.0).scatter(-1, targets[..., None], 30.0)
    masked = torch.zeros(1, frames, dtype=torch.bool)
    masked[0, :4] = True
    padding = torch.zeros(1, frames, dtype=torch.bool)
    return targets, perfect, masked, padding


def test_masked_and_unmasked_weights():
    targets, logits, masked, padding = _setup()
    logits[masked] = 0.0  # uniform over 16 classes at masked frames, perfect elsewhere
    out = mae_loss(logits, targets, masked, padding, CODEBOOK_WEIGHTS, 0.9)
    assert abs(out["masked_loss"].item() - math.log(16) * sum(CODEBOOK_WEIGHTS)) < 1e-5
    assert out["unmasked_loss"].item() < 1e-6
    assert abs(out["loss"].item() - 0.9 * math.log(16) * sum(CODEBOOK_WEIGHTS)) < 1e-5
    assert out["unmasked_accuracy"].item() == 1.0


def test_codebook_weighting_and_padding():
    targets, logits, masked, padding = _setup()
    logits[:, :, 0] = 0.0  # only codebook 0 is uncertain, everywhere
    padding[0, 8:] = True
    logits[0, 8:] = 0.0  # padded frames are wrong everywhere but must not count
    out = mae_loss(logits, targets, masked, padding, CODEBOOK_WEIGHTS, 0.9)
    expected = CODEBOOK_WEIGHTS[0] * math.log(16)
    assert abs(out["masked_loss"].item() - expected) < 1e-5
    assert abs(out["unmasked_loss"].item() - expected) < 1e-5
    assert abs(out["masked_loss_s0"].item() - math.log(16)) < 1e-5


def test_length_mismatch_is_cut_to_the_shorter():
    targets, logits, masked, padding = _setup(frames=10)
    out = mae_loss(logits, targets[:, :9], masked, padding, CODEBOOK_WEIGHTS)
    assert out["loss"].item() < 1e-6
