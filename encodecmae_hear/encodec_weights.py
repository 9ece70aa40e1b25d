"""Building EnCodec 24 kHz without any download, optionally with weights from a local file.

The official weights (`encodec_24khz-d7cc33bc.th`, keys `encoder.*`, `decoder.*`,
`quantizer.*`) can be given by path or through the ENCODECMAE_ENCODEC_WEIGHTS variable.
Without them EnCodec is built untrained (`pretrained=False`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

ENV_VAR = "ENCODECMAE_ENCODEC_WEIGHTS"
OFFICIAL_FILE = "encodec_24khz-d7cc33bc.th"


def build_encodec(weights: str | os.PathLike | None = None, seed: int = 0):
    """Returns `encodec.EncodecModel` (24 kHz). Never touches the network. Without
    `weights` its random initialisation is drawn from `seed`, so untrained EnCodecs
    built anywhere (a frontend, a tokenizer, another run) are the same network."""
    from encodec import EncodecModel

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


def weights_from_env() -> str | None:
    value = os.environ.get(ENV_VAR, "").strip()
    return value or None
