"""The mobile line (Tagliasacchi et al., 2020; SPEC section 10): a log-mel frontend at
16 kHz and a 6-layer convolutional encoder that gives frame embeddings at 25 frames/s.

Frontend: 16 kHz waveform, 25 ms periodic Hann windows every 10 ms (400 / 160 samples),
magnitude of the 512-point DFT (the window zero-padded), 64 HTK mel bins 60-7800 Hz,
log(mel + 0.001). The waveform is zero-padded by 120 samples on each side, so that mel
frame i, samples [160 i - 120, 160 i + 280), is centred on sample 160 i + 80. The DFT is
a strided convolution with the windowed cosine and sine basis: the same numbers as an
FFT to float rounding, and in onnxruntime far faster than its STFT operator.

Encoder: 6 blocks of conv 3x3 (no bias) -> BatchNorm -> ReLU -> max-pool, channels
[64, 128, 256, 256, 512, 512] x `width` (rounded to multiples of 8). Every block halves
frequency (64 bins -> 1); only the first two halve time, so the output has one frame per
4 mel frames: 25 frames/s, frame j covering samples [640 j, 640 (j + 1)) and centred at
(j + 0.5) * 40 ms. A clip of N samples is padded to ceil(N / 640) frames in one pass.
The frame embedding is the last block's channels (512 x width).

`MobileModel` = frontend + encoder + the training head its config names ("" none,
"cbow" / "skipgram" Audio2Vec decoders, "temporalgap", "distill"); mobile_heads.py. With
`input_block` > 0 its HEAR embedding also carries its input, standardised log-mel and
chroma (`input_block_pitch` swaps or adds a pitch-class salience; model/mobile_input.py), in
front of the learnt channels. `scene_std` adds a standard deviation over time to the
scene embedding: of the block's channels ("block") or of every channel ("frames").
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.functional import melscale_fbanks

from encodecmae_hear.model.config import check_keys
from encodecmae_hear.model.mobile_heads import HEADS, build_head
from encodecmae_hear.model.mobile_input import InputBlock, block_width, check_pitch, check_weight

ARCHITECTURE = "mobile"           # the checkpoint config's discriminator
SAMPLE_RATE = 16_000
WINDOW = 400                      # 25 ms
HOP = 160                         # 10 ms
N_FFT = 512
MEL_BINS = 64
F_MIN, F_MAX = 60.0, 7800.0
LOG_OFFSET = 1e-3
PAD = (WINDOW - HOP) // 2         # 120 each side: centres mel frame i on sample 160 i + 80
BASE_CHANNELS = (64, 128, 256, 256, 512, 512)

SCENE_STDS = ("", "block", "frames")  # what the scene embedding's std over time covers
_WIDTHS = {"mobile-full": 1.0, "mobile-half": 0.5, "mobile-quarter": 0.25, "mobile-tiny": 0.125}
MOBILE_PRESETS = tuple(_WIDTHS)


def scaled_channels(channels: int, width: float) -> int:
    """channels x width, rounded to the nearest multiple of 8 (at least 8)."""
    return max(8, int(channels * width + 4) // 8 * 8)


@dataclass(frozen=True)
class MobileConfig:
    width: float = 1.0
    base_channels: tuple[int, ...] = BASE_CHANNELS
    time_pools: tuple[int, ...] = (2, 2, 1, 1, 1, 1)
    freq_pools: tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    head: str = ""                        # training head: "", cbow, skipgram, temporalgap, distill
    context: int = 2                      # Audio2Vec: slices on each side of the centre one
    distill_dims: tuple[int, ...] = ()    # distill: width of each teacher block predicted
    input_block: float = 0.0              # weight of the input block in the HEAR embedding; 0: none
    input_block_pitch: str = "chroma"     # the block's pitch part: chroma, salience or chroma+salience
    scene_std: str = ""                   # scene embedding: + the std over time of "block" or "frames"

    def __post_init__(self):
        for name in ("base_channels", "time_pools", "freq_pools", "distill_dims"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        layers = len(self.base_channels)
        if not (len(self.time_pools) == len(self.freq_pools) == layers) or layers < 1:
            raise ValueError(f"base_channels, time_pools and freq_pools need one entry per layer, "
                             f"got {layers}, {len(self.time_pools)} and {len(self.freq_pools)}")
        if self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if MEL_BINS % math.prod(self.freq_pools):
            raise ValueError(f"the frequency pools {self.freq_pools} must divide {MEL_BINS} mel bins")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "distill" and not self.distill_dims:
            raise ValueError("a distill head needs distill_dims (the teacher blocks' widths)")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        check_weight(self.input_block)
        check_pitch(self.input_block_pitch)
        if self.scene_std not in SCENE_STDS:
            raise ValueError(f"scene_std must be one of {SCENE_STDS}, got {self.scene_std!r}")
        if (self.input_block_pitch != "chroma" or self.scene_std == "block") and not self.input_block > 0:
            raise ValueError("input_block_pitch and scene_std 'block' describe the input block: "
                             "they need input_block > 0")

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(scaled_channels(c, self.width) for c in self.base_channels)

    @property
    def dim(self) -> int:
        """Width of the frame embedding (the last block's channels)."""
        return self.channels[-1]

    @property
    def time_stride(self) -> int:
        return math.prod(self.time_pools)

    @property
    def frame_hop(self) -> int:
        """Samples at 16 kHz per output frame (640 for the presets: 25 frames/s)."""
        return HOP * self.time_stride

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.frame_hop

    def to_dict(self) -> dict:
        d = {"architecture": ARCHITECTURE, **dataclasses.asdict(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MobileConfig":
        d = dict(d)
        if d.pop("architecture", ARCHITECTURE) != ARCHITECTURE:
            raise ValueError(f"not a {ARCHITECTURE} config")
        check_keys(cls, d)
        return cls(**d)

    def replace(self, **changes) -> "MobileConfig":
        return dataclasses.replace(self, **changes)


def mobile_preset(name: str, **overrides) -> MobileConfig:
    """`mobile_preset("mobile-half", head="cbow")` -> width 0.5 with an Audio2Vec decoder."""
    if name not in _WIDTHS:
        raise ValueError(f"unknown mobile preset {name!r}; choose one of {MOBILE_PRESETS}")
    return MobileConfig(width=_WIDTHS[name], **overrides)


def hear_width(config: MobileConfig, output: str) -> int:
    """Width of the HEAR embedding: the input block if any, then the encoder's frames or
    ("distill") the head's prediction of the teacher's blocks."""
    learnt = sum(config.distill_dims) if output == "distill" else config.dim
    return learnt + input_block_width(config)


def input_block_width(config: MobileConfig) -> int:
    """Channels of the input block in the HEAR embedding (0 without one)."""
    return block_width(config.input_block_pitch) if config.input_block > 0 else 0


def scene_width(config: MobileConfig, output: str) -> int:
    """Width of the HEAR scene embedding: the frames' mean, then the std the config asks for."""
    return hear_width(config, output) + scene_std_width(config, output)


def scene_std_width(config: MobileConfig, output: str) -> int:
    """Leading channels of the HEAR frames whose std over time follows the scene mean."""
    return {"": 0, "block": input_block_width(config), "frames": hear_width(config, output)}[config.scene_std]


class LogMelFrontend(nn.Module):
    """16 kHz waveform (B, N), N a multiple of 160 -> log-mel (B, N / 160, 64)."""

    def __init__(self):
        super().__init__()
        bins = N_FFT // 2 + 1
        angle = 2 * math.pi * torch.outer(torch.arange(bins, dtype=torch.float64),
                                          torch.arange(WINDOW, dtype=torch.float64)) / N_FFT
        window = torch.hann_window(WINDOW, periodic=True, dtype=torch.float64)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (514, 400)
        self.register_buffer("basis", basis.float()[:, None], persistent=False)  # (514, 1, 400)
        fbank = melscale_fbanks(bins, F_MIN, F_MAX, MEL_BINS, SAMPLE_RATE, mel_scale="htk")
        self.register_buffer("fbank", fbank, persistent=False)  # (257, 64)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        wav = F.pad(wav.float(), (PAD, PAD))[:, None]  # (B, 1, N + 240)
        spec = F.conv1d(wav, self.basis, stride=HOP)  # (B, 514, N / 160): real, imaginary
        real, imag = spec.chunk(2, dim=1)
        magnitude = (real * real + imag * imag).sqrt()  # (B, 257, T)
        return torch.log(magnitude.transpose(1, 2) @ self.fbank + LOG_OFFSET)  # (B, T, 64)


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, time_pool: int, freq_pool: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d((time_pool, freq_pool)))


class ConvEncoder(nn.Module):
    """log-mel (B, T, 64), T a multiple of the time stride -> frames (B, T / stride, dim)."""

    def __init__(self, config: MobileConfig):
        super().__init__()
        ins = (1,) + config.channels[:-1]
        self.blocks = nn.ModuleList(ConvBlock(i, o, t, f) for i, o, t, f in zip(
            ins, config.channels, config.time_pools, config.freq_pools))
        self.out_dim = config.dim

    def forward(self, mel: torch.Tensor, return_maps: bool = False):
        x = mel[:, None]  # (B, 1, T, 64)
        for block in self.blocks:
            x = block(x)  # (B, C, T / t, F / f)
        frames = x.amax(3).transpose(1, 2)  # (B, T / stride, dim)
        return (frames, x) if return_maps else frames


class MobileModel(nn.Module):
    def __init__(self, config: MobileConfig):
        super().__init__()
        self.config = config
        self.frontend = LogMelFrontend()
        self.encoder = ConvEncoder(config)
        self.head = build_head(config.head, config.channels, config.time_pools,
                               config.freq_pools, config.context, config.distill_dims)
        self.input_block = (InputBlock(SAMPLE_RATE, config.frame_hop, config.time_stride, config.input_block,
                                       config.input_block_pitch) if config.input_block > 0 else None)

    @property
    def dim(self) -> int:
        return self.config.dim

    def num_frames(self, num_samples: int) -> int:
        """Frames for a clip of `num_samples` at 16 kHz: ceil(N / frame_hop)."""
        return -(-num_samples // self.config.frame_hop)

    def padded(self, wav: torch.Tensor) -> torch.Tensor:
        hop = self.config.frame_hop
        return F.pad(wav, (0, (hop - wav.shape[-1] % hop) % hop))

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, N) at 16 kHz -> (B, 4 * frames, 64), zero-padded to whole frames."""
        return self.frontend(self.padded(wav))

    def frames(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, N) at 16 kHz -> frame embeddings (B, ceil(N / frame_hop), dim)."""
        return self.encoder(self.log_mel(wav))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.frames(wav)

    def teacher_prediction(self, frames: torch.Tensor) -> torch.Tensor:
        """Frame embeddings -> a distilled student's prediction of the teacher's blocks,
        side by side: (B, frames, sum(distill_dims))."""
        if self.config.head != "distill":
            raise ValueError(f"this model has no distill head (head {self.config.head!r})")
        return torch.cat(self.head(frames), dim=-1)

    def distilled(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, N) at 16 kHz -> the teacher_prediction of its frames."""
        return self.teacher_prediction(self.frames(wav))

    def hear_frames(self, wav: torch.Tensor, output: str) -> torch.Tensor:
        """wav (B, N) at 16 kHz -> the HEAR embedding (B, frames, hear_width(config, output)):
        [input block,] then the encoder's frames or ("distill") the head's prediction."""
        wav = self.padded(wav)
        mel = self.frontend(wav)
        learnt = self.encoder(mel)
        if output == "distill":
            learnt = self.teacher_prediction(learnt)
        return learnt if self.input_block is None else torch.cat([self.input_block(wav, mel), learnt], dim=-1)


def macs_per_second(model: MobileModel, head: bool = False) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one second of
    audio, counted from the layers' real output shapes, plus the frontend's DFT and mel
    matrices. With `head`, the distill head's too."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            wav = torch.zeros(1, SAMPLE_RATE)
            frames = model.eval().frames(wav)
            if head and model.config.head == "distill":
                model.head(frames)
    finally:
        for hook in hooks:
            hook.remove()
    mel_frames = model.log_mel(torch.zeros(1, SAMPLE_RATE)).shape[1]
    total += mel_frames * (N_FFT // 2 + 1) * (2 * WINDOW + MEL_BINS)
    if model.input_block is not None:  # its DFTs and pitch-class matrices, once per frame
        pairs = model.input_block.spectral_costs()
        total += model.num_frames(SAMPLE_RATE) * sum(b.shape[0] * b.shape[2] + m.numel() for b, m in pairs)
    return total
