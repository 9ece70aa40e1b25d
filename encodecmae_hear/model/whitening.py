"""Scene whitening as a checkpoint stores it and the HEAR module applies it, in one place.

A checkpoint's embedding statistics may hold, for one HEAR layer option, the corpus mean
of the (standardised) scene embeddings and their principal axes scaled to unit variance
(train/scene_whitening.py measures them):

    scene_layer       the layer option it was measured for (an int or a string)
    scene_mean        (E,)    E a multiple of the model width D, at most D * (layers + 1)
    scene_projection  (K, E)  K <= E rows: axis / std

`check` is the one check of what is stored; `for_layer` picks it for a layer option;
`projection` scales the rows to axis / std^power (1 whitens, 0 only projects); `whiten`
applies them to scene embeddings (n, E) -> (n, K).
"""
from __future__ import annotations

import torch

KEYS = ("scene_layer", "scene_mean", "scene_projection")


def check(stats: dict, num_layers: int, dim: int) -> None:
    """Raises ValueError saying what is wrong with stored scene whitening."""
    mean, projection = stats.get("scene_mean"), stats.get("scene_projection")
    if not isinstance(stats.get("scene_layer"), (int, str)) or not isinstance(mean, torch.Tensor) \
            or not isinstance(projection, torch.Tensor):
        raise ValueError(f"scene whitening needs all of {list(KEYS)} (a layer option and two tensors)")
    width = mean.shape[0] if mean.dim() == 1 else -1
    if width % dim or not dim <= width <= dim * (num_layers + 1) or projection.dim() != 2 \
            or projection.shape[1] != width or not 1 <= projection.shape[0] <= width:
        raise ValueError(f"scene whitening should be a mean (E,) and a projection (K, E), E a multiple "
                         f"of {dim} up to {dim * (num_layers + 1)}, K <= E; got {tuple(mean.shape)} "
                         f"and {tuple(projection.shape)}")
    if not bool(torch.isfinite(mean).all()) or not bool(torch.isfinite(projection).all()):
        raise ValueError("scene whitening holds a non-finite value")


def for_layer(stats: dict | None, layer) -> dict | None:
    """The stored scene whitening if it was measured for this (parsed) layer option."""
    if not stats or "scene_projection" not in stats or stats["scene_layer"] != layer:
        return None
    return {key: stats[key] for key in KEYS}


def projection(whitening: dict, power: float, width: int, layer) -> torch.Tensor:
    """(K, E) rows axis / std^power, for scene embeddings `width` (E) wide."""
    rows = whitening["scene_projection"].double()  # rows are axis / std
    if rows.shape[1] != width:
        raise ValueError(f"scene whitening expects {rows.shape[1]}-d scene embeddings, "
                         f"layer {layer!r} gives {width}")
    # scaled by std^(1 - power) they become axis / std^power
    return (rows * rows.norm(dim=1, keepdim=True) ** (power - 1)).float()


def whiten(scene: torch.Tensor, mean: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """scene (n, E) -> (n, K): centred on the corpus mean, projected on the scaled axes."""
    return (scene - mean) @ rows.T
