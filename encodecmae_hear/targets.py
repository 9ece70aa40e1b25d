"""Training targets: EnCodec RVQ codes (pretraining) and k-means ids (self-training).

`EncodecTokenizer` maps 24 kHz audio to the 8 codes per frame that EnCodec's residual
vector quantizer assigns at 6 kbps. With the official EnCodec weights the codes are
EnCodec's own. Without them (no download is possible here) EnCodec is built untrained
and its codebooks are k-means-initialised on given audio (`fit_codebooks`): the codes
then quantise the latents of a random convolutional encoder, which the checkpoint
records as `targets = "encodec-untrained-kmeans"`.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import FRAME_RATE

BANDWIDTH_KBPS = 6.0   # 8 codebooks of 1024 at 75 Hz
NUM_CODEBOOKS = 8


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
        from sklearn.cluster import KMeans

        latents = torch.cat([self.latents(w) for w in wav.split(16)])  # (B, 128, T), bounded memory
        residual = latents.transpose(1, 2).reshape(-1, latents.shape[1]).double()  # (B*T, 128)
        if residual.shape[0] < 1024:
            raise ValueError(f"fit_codebooks needs >= 1024 frames (~14 s of audio), "
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
    from .encodec_weights import build_encodec
    return EncodecTokenizer(build_encodec(encodec_weights))
