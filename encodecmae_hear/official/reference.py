"""The reference implementation's inference rules, reproduced with our model, so that
official checkpoints can be checked against the reference's outputs.

The reference (`extract_features_from_array` of habla-liaa/encodecmae) cuts a clip into
4 s chunks at 24 kHz, drops (v2) a last chunk of <= 2048 samples, runs each chunk unpadded,
and masks frames at or after `valid` as padded keys, where

* v2 code: valid = min(N - b, 96000) // 320 for item b of a batch, N the clip length
  (a reused loop variable: the chunk offset is never subtracted). For one clip of
  <= 4 s this masks the last partial frame; a longer clip masks nothing.
* v1 code (tag v.1.0.0): valid = len(chunk) // 320 for every chunk, and no chunk is
  dropped.

Our own API (`EncodecMAE.encode`, hear.py) masks frame i when i >= ceil(length / 320) of
the chunk's real audio, keeps every tail and is batch-independent; the two agree on
clips whose chunks are all whole multiples of 320 samples and longer than 2048.
"""
from __future__ import annotations

import torch

from encodecmae_hear.model.config import CHUNK_SAMPLES, HOP_LENGTH

MIN_CHUNK = 2048  # the reference drops a last chunk of this many samples or fewer


def reference_lengths(num_samples: int, chunk_samples: int, layout: str = "v2") -> int:
    """The sample length to pass to `EncodecMAE.encode` for one chunk so that its
    padding mask equals the reference's (a whole number of frames)."""
    source = min(num_samples, CHUNK_SAMPLES) if layout == "v2" else chunk_samples
    return (source // HOP_LENGTH) * HOP_LENGTH


@torch.no_grad()
def reference_features(model, wav: torch.Tensor, layer=-1, layout: str = "v2") -> torch.Tensor:
    """One clip wav (N,) at 24 kHz -> what the reference returns for it alone:
    layer=-1 or an index -> (T, D); layer='all' -> (L, T, D). The last of 'all' is the
    stack output x0 + LN(x1) in v2 and the last layer's x0 in v1."""
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    outputs = []
    for start in range(0, wav.shape[0], CHUNK_SAMPLES):
        chunk = wav[start:start + CHUNK_SAMPLES]
        if layout == "v2" and chunk.shape[0] <= MIN_CHUNK:  # v1 keeps every chunk
            continue
        length = torch.tensor([reference_lengths(wav.shape[0], chunk.shape[0], layout)])
        tokens, padding = model.input_tokens(model.frontend(chunk[None]), length)
        out, per_layer = model.encoder(tokens, padding, return_layers=True)
        layers = per_layer if layout == "v1" and layer == "all" else per_layer[:-1] + [out]
        outputs.append(torch.stack(layers)[:, 0] if layer == "all" else layers[layer][0])
    if not outputs:
        raise ValueError(f"clip of {wav.shape[0]} samples is too short for the reference "
                         f"(needs more than {MIN_CHUNK})")
    return torch.cat(outputs, dim=-2)
