"""Audio frontends: 24 kHz waveform (B, N) -> frame features (B, T, F) at ~75 frames/s.

* `EncodecFrontend` ("encodec"): the frozen EnCodec 24 kHz encoder, 128-d latents,
  T = ceil(N / 320); frame i is centred on sample 320 i + 160.
* `MelFrontend` ("mel256"): Kaldi-compatible 256-bin log-mel fbank, 26.56 ms windows
  every 13.28 ms (637 / 318 samples), normalised as (x + 6.12) / 4.82 (what
  torchaudio's `compliance.kaldi.fbank` gives one waveform at a time with the
  reference's options, here for the whole batch at once and in float32),
  T = 1 + (N - 637) // 318; frame i is the window [318 i, 318 i + 637), centred on
  sample 318 i + 318 (so the mel grid runs 0.6 % slower than 75 frames/s: frame 299
  of a 4 s crop is centred at 3.975 s, not 3.993 s).

`frame_centres(kind, N)` gives those centres (in samples at 24 kHz): what a target
computed from other features must be aligned to.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.compliance.kaldi import get_mel_banks

from encodecmae_hear.model.config import HOP_LENGTH, SAMPLE_RATE
from encodecmae_hear.model.encodec import build_encodec, fold_weight_norm
from encodecmae_hear.model.seanet import ChannelsLastEncoder, channels_last_encoder

MEL_BINS = 256
MEL_FRAME_MS, MEL_SHIFT_MS = 26.56, 13.28   # the paper's constants
MEL_WINDOW = 637   # int(26.56 ms * 24 kHz), as Kaldi rounds it
MEL_SHIFT = 318    # int(13.28 ms * 24 kHz)
MEL_MEAN, MEL_STD = -6.12, 4.82
MEL_FFT = 1024     # the window zero-padded to a power of two
MEL_LOW_HZ = 20.0  # the top edge is Nyquist
PREEMPHASIS = 0.97


class EncodecFrontend(nn.Module):
    out_dim = 128

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        # The encoder with weight norm folded (fold_weight_norm) in channels-last form
        # (seanet.py), rebuilt whenever the encoder's tensors change; in a tuple, so that
        # it adds no submodule or state-dict key.
        self._folded: tuple = ()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return math.ceil(num_samples / HOP_LENGTH)

    def folded_encoder(self) -> nn.Module:
        """The encoder with its weight norm folded and its activations channels-last: the
        same outputs to float rounding, in about 20 % less time on CPU (weights are not
        recomputed at every call, activations not reordered). Tensors made under
        torch.inference_mode have no version counter to tell a change: then the encoder
        itself is used."""
        tensors = (*self.encoder.parameters(), *self.encoder.buffers())
        if any(t.is_inference() for t in tensors):
            return self.encoder
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if not self._folded or self._folded[0] != key:
            self._folded = (key, channels_last_encoder(fold_weight_norm(self.encoder)))
        return self._folded[1]

    @staticmethod
    def frame_centres(num_samples: int) -> torch.Tensor:  # (T,) in samples at 24 kHz
        return torch.arange(EncodecFrontend.num_frames(num_samples)) * HOP_LENGTH + HOP_LENGTH / 2

    def forward(self, wav: torch.Tensor, conv_group: int | None = None) -> torch.Tensor:
        """(B, N) -> (B, T, 128); `conv_group`: see ChannelsLastEncoder."""
        # fp32 even under autocast: the latents double as the tokenizer's input
        with torch.no_grad(), torch.autocast(wav.device.type, enabled=False):
            encoder = self.folded_encoder()  # channels-last; EnCodec's own if made under inference_mode
            wav = wav[:, None, :].float()
            latent = encoder(wav, conv_group) if isinstance(encoder, ChannelsLastEncoder) else encoder(wav)
        return latent.transpose(1, 2)  # (B, 128, T) -> (B, T, 128)


class MelFrontend(nn.Module):
    out_dim = MEL_BINS

    def __init__(self):
        super().__init__()
        # high 0.0: up to Nyquist; VTLN off (warp factor 1.0, so its band edges 100 / -500 Hz,
        # fbank's defaults, are unused)
        banks, _ = get_mel_banks(MEL_BINS, MEL_FFT, float(SAMPLE_RATE), MEL_LOW_HZ, 0.0, 100.0, -500.0, 1.0)
        # not in the state dict: derived constants, moved with the module
        self.register_buffer("mel_banks", F.pad(banks, (0, 1)).T.contiguous(), persistent=False)  # (513, 256)
        self.register_buffer("window", torch.hann_window(MEL_WINDOW, periodic=False), persistent=False)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return 0 if num_samples < MEL_WINDOW else 1 + (num_samples - MEL_WINDOW) // MEL_SHIFT

    @staticmethod
    def frame_centres(num_samples: int) -> torch.Tensor:  # (T,) in samples at 24 kHz
        return torch.arange(MelFrontend.num_frames(num_samples)) * MEL_SHIFT + (MEL_WINDOW - 1) / 2

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, T, 256)
        if wav.shape[-1] < MEL_WINDOW:
            raise ValueError(f"mel frontend needs at least {MEL_WINDOW} samples at 24 kHz, "
                             f"got {wav.shape[-1]}")
        with torch.no_grad(), torch.autocast(wav.device.type, enabled=False):
            frames = wav.float().unfold(-1, MEL_WINDOW, MEL_SHIFT)  # (B, T, 637), a view
            frames = frames - frames.mean(-1, keepdim=True)  # DC offset
            emphasised = torch.empty_like(frames)  # x[j] - 0.97 x[j - 1], x[-1] := x[0]
            torch.sub(frames[..., 1:], frames[..., :-1], alpha=PREEMPHASIS, out=emphasised[..., 1:])
            torch.mul(frames[..., 0], 1 - PREEMPHASIS, out=emphasised[..., 0])
            spectrum = torch.fft.rfft(emphasised.mul_(self.window), n=MEL_FFT)  # (B, T, 513)
            power = spectrum.real.square() + spectrum.imag.square()
            mels = (power @ self.mel_banks).clamp(min=torch.finfo(torch.float32).eps).log()
        return (mels - MEL_MEAN) / MEL_STD


FRONTEND_CLASSES = {"mel256": MelFrontend, "encodec": EncodecFrontend}


def frame_centres(kind: str, num_samples: int) -> torch.Tensor:
    """(T,) float64 centre of each frame the `kind` frontend makes of `num_samples` samples,
    in samples at 24 kHz (divide by 24000 for seconds)."""
    return FRONTEND_CLASSES[kind].frame_centres(num_samples).double()


def build_frontend(kind: str, encodec_model=None) -> nn.Module:
    if kind == "mel256":
        return MelFrontend()
    if kind == "encodec":
        if encodec_model is None:
            encodec_model = build_encodec()
        return EncodecFrontend(encodec_model.encoder)
    raise ValueError(f"unknown frontend {kind!r}")
