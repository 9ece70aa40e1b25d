"""GE2E speaker teacher (Resemblyzer's `pretrained.pt`, Apache-2.0): a running speaker
embedding per 10 ms frame.

Resemblyzer's voice encoder is a 3-layer LSTM (40 -> 256) over 40-bin mel power spectra
(16 kHz, 25 ms Hann windows every 10 ms, centred, Slaney mel scale and norm, as librosa
computes them), whose last hidden state goes through Linear(256, 256), ReLU and L2
normalisation to give the utterance's speaker embedding. The network is rebuilt here
from the state dict in the wheel, so Resemblyzer itself is never imported (its
`__init__` needs webrtcvad, a C extension, for silence trimming we do not use).

Features: the same Linear + ReLU + L2 norm applied to the top LSTM layer's output at every
frame, i.e. the speaker embedding of the crop up to that frame (256-d, unit norm). As in
Resemblyzer, the crop's volume is first raised to -30 dBFS (never lowered; measured on
its valid samples, with RMS floored at -80 dBFS so digital silence stays quiet). The
10 ms frames are centred at j / 100 s and interpolated onto the model's frames (align.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.functional import melscale_fbanks

from encodecmae_hear.train.teachers.align import TEACHER_RATE, interpolate_frames
from encodecmae_hear.train.teachers.teacher import Teacher, package_file

N_FFT, HOP, MELS, HIDDEN, LAYERS = 400, 160, 40, 256, 3
TARGET_RMS = 10 ** (-30 / 20)   # -30 dBFS
RMS_FLOOR = 10 ** (-80 / 20)


class GE2ESpeaker(Teacher):
    name, module, package, licence, dim = "resemblyzer", "resemblyzer", "Resemblyzer", "Apache-2.0", HIDDEN
    features = "GE2E speaker embedding of the crop up to each 10 ms frame (top LSTM layer, Linear, ReLU, L2 norm)"

    def __init__(self, frontend: str = "mel256"):
        super().__init__(package_file(self.module, "pretrained.pt", self.package, self.name), frontend)
        state = torch.load(self.weight_file, map_location="cpu", weights_only=True)["model_state"]
        self.lstm = nn.LSTM(MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, HIDDEN)
        self.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))},
                             strict=True)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("mel_basis", melscale_fbanks(N_FFT // 2 + 1, 0.0, TEACHER_RATE / 2, MELS,
                                                          TEACHER_RATE, norm="slaney", mel_scale="slaney"),
                             persistent=False)  # (201, 40)
        self.eval().requires_grad_(False)

    def mels(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, M) at 16 kHz -> mel power spectra (B, J, 40), J = 1 + M // 160."""
        spec = torch.stft(wav, N_FFT, HOP, window=self.window, center=True, pad_mode="constant",
                          return_complex=True).abs() ** 2  # (B, 201, J)
        return spec.transpose(1, 2) @ self.mel_basis

    def embeddings(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, J, 40) -> (B, J, 256) running speaker embeddings."""
        out, _ = self.lstm(mels)
        return F.normalize(F.relu(self.linear(out)), dim=-1, eps=1e-8)

    def features_16k(self, wav, lengths, centres):
        valid = torch.arange(wav.shape[1], device=wav.device)[None] < lengths[:, None]  # (B, M)
        rms = ((wav * valid) ** 2).sum(1).div(lengths.clamp(min=1)).sqrt().clamp(min=RMS_FLOOR)
        wav = wav * (TARGET_RMS / rms).clamp(min=1.0)[:, None]
        frames = self.embeddings(self.mels(wav))  # (B, J, 256)
        times = torch.arange(frames.shape[1], device=wav.device) * (HOP / TEACHER_RATE)
        return interpolate_frames(frames, times, centres)
