"""EnCodec's SEANet encoder in channels-last memory: the same network and arithmetic as
`encodec`'s `SEANetEncoder`, laid out for oneDNN's convolutions on CPU.

`channels_last_encoder(encoder)` turns a SEANet encoder (weight norm folded, see
`encodec.fold_weight_norm`) into a module with the same call, (B, 1, N) -> (B, D, T).
Inside, activations are (B, C, 1, T) tensors in channels-last memory (time-major, the
channels of one sample side by side) and each Conv1d is a Conv2d with a (1, k) kernel;
padding (EnCodec's causal or centred, reflect or zero) is EnCodec's own, reproduced
here. Outputs agree with the original to float rounding (relative 1e-6 in float32).

Why: on one 4 s window with 2 threads, in bfloat16, EnCodec's encoder went from 84 to
62 ms (float32: 156 to 127 ms): its convolutions (16 to 512 channels, up to 96,000
samples) from 36 to 28 ms, most likely as oneDNN no longer reorders each one's input and
output, and its reflect padding from 13 to 2 ms (docs/RESULTS.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from encodec.modules.conv import SConv1d
from encodec.modules.lstm import SLSTM
from encodec.modules.seanet import SEANetResnetBlock
from torch import nn


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class _Conv(nn.Module):
    """`SConv1d` as a (1, k) Conv2d on channels-last (B, C, 1, T)."""

    def __init__(self, source: SConv1d):
        super().__init__()
        conv = source.conv.conv
        if not isinstance(source.conv.norm, nn.Identity):
            raise TypeError(f"only weight-norm or plain SEANet convolutions are supported, "
                            f"not {type(source.conv.norm).__name__} (the 48 kHz EnCodec's)")
        if conv.groups != 1 or conv.padding != (0,):
            raise TypeError("SEANet convolutions have groups=1 and no built-in padding")
        self.weight = nn.Parameter(_channels_last(conv.weight.detach()[:, :, None, :]), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.kernel, self.stride, self.dilation = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
        self.causal, self.pad_mode = source.causal, source.pad_mode

    def paddings(self, length: int) -> tuple[int, int]:
        """EnCodec's (left, right) padding of an input of `length` samples: the kernel's
        reach, and at the right what makes the last window full."""
        total = (self.kernel - 1) * self.dilation - (self.stride - 1)
        frames = (length - self.kernel + total) / self.stride + 1
        extra = (math.ceil(frames) - 1) * self.stride + (self.kernel - total) - length
        if self.causal:
            return total, extra
        return total - total // 2, total // 2 + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.paddings(x.shape[-1])
        if left or right:
            x = _pad(x, left, right, self.pad_mode)
        out = F.conv2d(x, self.weight, self.bias, (1, self.stride), 0, (1, self.dilation))
        return _channels_last(out)  # a one-channel input gives a plain (B, C, 1, T) output


def _pad(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """EnCodec's pad1d on (B, C, 1, T): reflect padding longer than the input first
    extends it with zeros, as EnCodec does."""
    if mode != "reflect":
        return F.pad(x, (left, right, 0, 0), "constant" if mode == "zero" else mode)
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = F.pad(x, (0, extra, 0, 0))
    padded = F.pad(x, (left, right, 0, 0), "reflect")
    return padded[..., :padded.shape[-1] - extra]


class _ResnetBlock(nn.Module):
    def __init__(self, source: SEANetResnetBlock):
        super().__init__()
        self.block = nn.Sequential(*map(_convert, source.block))
        self.shortcut = nn.Identity() if isinstance(source.shortcut, nn.Identity) else _convert(source.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class _LSTM(nn.Module):
    def __init__(self, source: SLSTM):
        super().__init__()
        self.lstm, self.skip = source.lstm, source.skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x[:, :, 0].permute(2, 0, 1)  # (T, B, C)
        y, _ = self.lstm(seq)
        if self.skip:
            y = y + seq
        return _channels_last(y.permute(1, 2, 0)[:, :, None, :])


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, SConv1d):
        return _Conv(module)
    if isinstance(module, SEANetResnetBlock):
        return _ResnetBlock(module)
    if isinstance(module, SLSTM):
        return _LSTM(module)
    if isinstance(module, nn.ELU):
        return nn.ELU(module.alpha)
    raise TypeError(f"no channels-last form for {type(module).__name__} in a SEANet encoder")


class ChannelsLastEncoder(nn.Module):
    """`convs`: the convolutional stack up to the LSTM; `head`: the LSTM and what follows.
    `forward(wav, conv_group)` runs the convolutions `conv_group` sounds at a time (all
    at once by default) and the head over the whole batch: on CPU the convolutions are
    memory-bound and fastest one 4 s window at a time, while the LSTM's 300 steps are
    matrix-vector products that batching turns into matrix products (in float32 with 2
    threads, 29 ms a window alone, 14.5 ms in a batch of 4)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        layers = [_convert(m) for m in encoder.model]
        first_lstm = next((i for i, m in enumerate(layers) if isinstance(m, _LSTM)), len(layers))
        self.convs = nn.Sequential(*layers[:first_lstm])
        self.head = nn.Sequential(*layers[first_lstm:])

    def forward(self, wav: torch.Tensor, conv_group: int | None = None) -> torch.Tensor:
        """(B, 1, N) -> (B, D, T)"""
        x = _channels_last(wav[:, :, None, :])
        hidden = [self.convs(part) for part in x.split(conv_group or max(len(x), 1))]
        out = self.head(torch.cat(hidden) if len(hidden) > 1 else hidden[0])
        return out[:, :, 0, :]


def channels_last_encoder(encoder: nn.Module) -> ChannelsLastEncoder:
    """`encoder` (a SEANetEncoder with plain weights: fold weight norm first) in
    channels-last form; shares its LSTM, copies its convolution weights."""
    if any(m._forward_pre_hooks for m in encoder.modules()):
        raise ValueError("fold the encoder's weight norm first (encodec.fold_weight_norm)")
    return ChannelsLastEncoder(encoder).eval()
