"""EnCodec 24 kHz, built without any download, and the tokenizer of its RVQ codes.

The official weights (`encodec_24khz-d7cc33bc.th`, keys `encoder.*`, `decoder.*`,
`quantizer.*`) can be given by path or through the ENCODECMAE_ENCODEC_WEIGHTS variable.
Without them EnCodec is built untrained (`pretrained=False`).

`EncodecTokenizer` maps 24 kHz audio to the 8 codes per frame that EnCodec's residual
vector quantizer assigns at 6 kbps (the pretraining targets). With the official weights
the codes are EnCodec's own. Without them its codebooks are k-means-initialised on given
audio (`fit_codebooks`): the codes then quantise the latents of a random convolutional
encoder, which the checkpoint records as `targets = "encodec-untrained-kmeans"`.
"""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from encodec import EncodecModel
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm

from encodecmae_hear.model.config import FRAME_RATE

ENV_VAR = "ENCODECMAE_ENCODEC_WEIGHTS"
OFFICIAL_FILE = "encodec_24khz-d7cc33bc.th"


def build_encodec(weights: str | os.PathLike | None = None, seed: int = 0):
    """Returns `encodec.EncodecModel` (24 kHz). Never touches the network. Without
    `weights` its random initialisation is drawn from `seed`, so untrained EnCodecs
    built anywhere (a frontend, a tokenizer, another run) are the same network."""
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # encodec uses the deprecated weight_norm helper
        torch.manual_seed(seed)
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"EnCodec weights not found at {path}; expected the official 24 kHz file "
                f"{OFFICIAL_FILE} (or set {ENV_VAR})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path} is not an EnCodec 24 kHz state dict: {err}") from None
    return model.eval()


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """An inference copy of `module` (EnCodec's SEANet encoder) in which every weight-norm
    reparametrisation is folded into a plain weight: g * v / ||v|| is computed once here
    instead of before every call, with the same arithmetic, so outputs are unchanged.
    `module` itself, its parameters and its state-dict keys are left as they are."""
    hooks = [(m, hook) for m in module.modules() for hook in m._forward_pre_hooks.values()
             if isinstance(hook, WeightNorm)]
    with torch.no_grad():  # what a forward would set: the weight, here as a leaf that copies
        for m, hook in hooks:
            setattr(m, hook.name, hook.compute_weight(m))
    folded = copy.deepcopy(module)
    for m in folded.modules():
        for hook in [h for h in m._forward_pre_hooks.values() if isinstance(h, WeightNorm)]:
            torch.nn.utils.remove_weight_norm(m, hook.name)
        if parametrize.is_parametrized(m):  # torch.nn.utils.parametrizations.weight_norm
            for name in list(m.parametrizations):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return folded.requires_grad_(False).eval()


def weights_from_env() -> str | None:
    value = os.environ.get(ENV_VAR, "").strip()
    return value or None


BANDWIDTH_KBPS = 6.0   # 8 codebooks of 1024 at 75 Hz
NUM_CODEBOOKS = 8
CODEBOOK_SIZE = 1024


class EncodecTokenizer(nn.Module):
    def __init__(self, encodec_model):
        super().__init__()
        self.encoder = encodec_model.encoder
        self.quantizer = encodec_model.quantizer
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: the RVQ's EMA updates must never run

    @property
    def initialised(self) -> bool:
        layers = self.quantizer.vq.layers[:NUM_CODEBOOKS]
        return all(bool(layer._codebook.inited.item()) for layer in layers)

    @torch.no_grad()
    def latents(self, wav: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, 128, T)
        with torch.autocast(wav.device.type, enabled=False):  # codes from fp32 latents
            return self.encoder(wav[:, None, :].float())

    @torch.no_grad()
    def codes_from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 128, T) -> codes (B, T, 8) int64."""
        if not self.initialised:
            raise RuntimeError("EnCodec codebooks are not initialised: load the official "
                               "weights or call fit_codebooks(audio) first")
        codes = self.quantizer.encode(latents.float(), FRAME_RATE, BANDWIDTH_KBPS)  # (8, B, T)
        return codes.permute(1, 2, 0).long()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, T, 8)
        return self.codes_from_latents(self.latents(wav))

    @torch.no_grad()
    def fit_codebooks(self, wav: torch.Tensor, kmeans_iters: int = 20, seed: int = 0) -> None:
        """k-means-initialise the first 8 codebooks on `wav` (B, N), residual by residual
        (scikit-learn's KMeans), as EnCodec initialises its codebooks on first use.

        Needs at least 1024 frames (about 14 s of audio) for 1024 distinct centroids.
        """
        from sklearn.cluster import KMeans  # training only; slow to import (scipy)

        latents = torch.cat([self.latents(w) for w in wav.split(16)])  # (B, 128, T), bounded memory
        residual = latents.transpose(1, 2).reshape(-1, latents.shape[1]).double()  # (B*T, 128)
        if residual.shape[0] < CODEBOOK_SIZE:
            raise ValueError(f"fit_codebooks needs >= {CODEBOOK_SIZE} frames (~14 s of audio), "
                             f"got {residual.shape[0]}")
        for index, layer in enumerate(self.quantizer.vq.layers[:NUM_CODEBOOKS]):
            codebook = layer._codebook
            # Random initial centroids, as EnCodec's own k-means (k-means++ is far slower).
            kmeans = KMeans(codebook.codebook_size, init="random", n_init=1, max_iter=kmeans_iters,
                            random_state=seed + index).fit(residual.numpy())
            centroids = torch.from_numpy(kmeans.cluster_centers_).to(codebook.embed.dtype)
            counts = torch.bincount(torch.from_numpy(kmeans.labels_).long(),
                                    minlength=codebook.codebook_size)
            codebook.embed.copy_(centroids)
            codebook.embed_avg.copy_(centroids)
            codebook.cluster_size.copy_(counts.to(codebook.cluster_size.dtype))
            codebook.inited.fill_(1)
            residual = residual - centroids.double()[torch.from_numpy(kmeans.labels_).long()]


def build_tokenizer(encodec_weights: str | None = None) -> EncodecTokenizer:
    return EncodecTokenizer(build_encodec(encodec_weights))
