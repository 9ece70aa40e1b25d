"""Scene whitening: principal axes of a model's scene embeddings on pretraining audio,
stored beside the embedding statistics, so that `get_scene_embeddings` can hand out
(option `whiten_scene`) the scene mean projected on its top axes, each axis scaled to
unit variance.

Why (docs/EVALUATE.md, "Why heareval scores below a probe, and scene whitening"): in the
scene mean of the standardised `input+concat` embedding, a few directions carry most of
the variance and the fine detail (pitch, for one) sits in weak ones. A standardised
linear probe still finds that detail; heareval's downstream MLP, trained on ~100 clips,
mostly does not. Whitened on the corpus, the weak directions come up to the strong
ones' scale (and timbre, which lives in the strong ones, loses). The axes come from
corpus crops, never from a task.
"""
from __future__ import annotations

import torch

from encodecmae_hear.audio import resample
from encodecmae_hear.hear import HearModel, get_scene_embeddings
from encodecmae_hear.model.config import SAMPLE_RATE

# Axes whose corpus std is below this share of the first axis's are not kept: with fewer
# crops than dimensions the rest have no variance to scale by.
MIN_RELATIVE_STD = 1e-4
EMBED_RATE = 48000  # any HEAR rate: the crops go through the HEAR path at this rate


@torch.no_grad()
def measure_scene_whitening(mae, embedding_stats: dict, layer, clips: list[torch.Tensor],
                            dims: int, batch: int = 16) -> dict:
    """clips [(N,) at 24 kHz, all of one length] -> {"scene_layer", "scene_mean" (E,),
    "scene_projection" (K, E)}: (scene - mean) @ projection.T has unit covariance on
    these clips along its K <= dims axes."""
    if len(clips) < 2:
        raise ValueError(f"scene whitening needs at least 2 clips, got {len(clips)}")
    model = HearModel(mae, sample_rate=EMBED_RATE, layer=layer, embedding_stats=embedding_stats)
    audio = resample(torch.stack(clips), SAMPLE_RATE, EMBED_RATE)
    scenes = torch.cat([get_scene_embeddings(part, model) for part in audio.split(batch)]).double()
    mean = scenes.mean(0)
    _, singular, axes = torch.linalg.svd(scenes - mean, full_matrices=False)
    std = singular / (len(scenes) - 1) ** 0.5
    keep = min(dims, int((std > MIN_RELATIVE_STD * std[0]).sum()))
    return {"scene_layer": model.layer if isinstance(model.layer, str) else int(model.layer),
            "scene_mean": mean.float(), "scene_projection": (axes[:keep] / std[:keep, None]).float()}
