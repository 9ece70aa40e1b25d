"""Training heads of the mobile encoder (model/mobile.py), named by `MobileConfig.head`.

* "cbow": Audio2Vec CBoW. The frame embeddings of the 2P context slices, joined along
  channels frame by frame, are merged by a 1x1 convolution and decoded into the centre
  slice's log-mel.
* "skipgram": Audio2Vec skip-gram. The centre slice's frame embeddings are decoded into
  the 2P context slices' log-mel (2P output maps).
* "temporalgap": two slices' time-averaged embeddings -> MLP -> one logit of the
  normalised gap between them.
* "distill": one linear map per teacher block, frame embedding -> teacher width.

The Audio2Vec decoder mirrors the encoder (SPEC section 10): the blocks in reverse
order, each nearest-neighbour upsampling (where the encoder max-pooled) then conv 3x3 ->
BatchNorm -> ReLU, the last conv linear with the output maps as channels.
"""
from __future__ import annotations

import math

import torch
from torch import nn

HEADS = ("", "cbow", "skipgram", "temporalgap", "distill")


class MirroredDecoder(nn.Module):
    """frames (B, T, C_in) -> maps (B, out_maps, T * time stride, 64)."""

    def __init__(self, in_dim: int, channels, time_pools, freq_pools, out_maps: int):
        super().__init__()
        self.start_bins = 64 // math.prod(freq_pools)
        self.merge = nn.Conv2d(in_dim, channels[-1], 1) if in_dim != channels[-1] else nn.Identity()
        outs = tuple(reversed(channels[:-1])) + (out_maps,)
        layers = []
        for i, (c_in, c_out, t, f) in enumerate(zip(reversed(channels), outs, reversed(time_pools),
                                                     reversed(freq_pools))):
            layers += [nn.Upsample(scale_factor=(t, f), mode="nearest"),
                       nn.Conv2d(c_in, c_out, 3, padding=1, bias=i == len(outs) - 1)]
            if i < len(outs) - 1:
                layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.transpose(1, 2)[..., None].expand(-1, -1, -1, self.start_bins)  # (B, C, T, F)
        return self.layers(self.merge(x.contiguous()))


class GapHead(nn.Module):
    """Two clip vectors (B, C) each -> logit (B,) of the normalised gap between them."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 1))

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([first, second], dim=-1)).squeeze(-1)


class DistillHead(nn.Module):
    """frames (B, T, C) -> [(B, T, d) for each teacher block width d]."""

    def __init__(self, dim: int, dims):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(dim, d) for d in dims)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        return [m(frames) for m in self.maps]


def build_head(kind: str, channels, time_pools, freq_pools, context: int, distill_dims):
    dim = channels[-1]
    if kind == "":
        return None
    if kind == "cbow":
        return MirroredDecoder(2 * context * dim, channels, time_pools, freq_pools, 1)
    if kind == "skipgram":
        return MirroredDecoder(dim, channels, time_pools, freq_pools, 2 * context)
    if kind == "temporalgap":
        return GapHead(dim)
    if kind == "distill":
        return DistillHead(dim, distill_dims)
    raise ValueError(f"unknown head {kind!r}; choose one of {HEADS}")
