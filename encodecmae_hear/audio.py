"""Audio in: HEAR input checks, the one resampler, and streaming 4 s windows at 24 kHz.

`resample` is the one resampler; every part of the project that changes a sample rate
calls it. It takes rates from MIN_RATE to MAX_RATE (1 kHz to 384 kHz) and refuses others
in one line. For a rate pair whose reduced ratio is small (all the common rates: 8, 11.025,
16, 22.05, 24, 32, 44.1, 48, 88.2, 96, 192 kHz ...) it is torchaudio's sinc resampler with
its kernel cached per pair, bit for bit. torchaudio builds one kernel row per output phase,
new/gcd rows of orig/gcd taps, which for a rate such as 44,101 Hz (gcd 1) is a 17 GB
tensor; such pairs are computed directly instead (`_resample_direct`): the same
Hann-windowed sinc (6 zero crossings, roll-off 0.99) evaluated at each output sample's
own position, a block of outputs at a time; it agrees with torchaudio's result within
2e-4 on full-scale noise (torchaudio computes part of its kernel in float32).
Memory bound, at any pair of rates in range: at most 128 MB beyond the input and the
output (measured: at most 60 MB over 2 s clips at the worst rates of both paths), plus,
on torchaudio's path, a working copy of about twice the output (its convolution); tested
in a fresh process by tests/test_robustness.py. `Chunker` cuts a sound into the model's 4 s windows at 24 kHz, resampling each window
from a slice of the input with enough context on both sides that the result equals
resampling the whole sound at once (torchaudio's sinc resampler), while memory stays
bounded by one window whatever the length of the sound.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio

from encodecmae_hear.files import regular_file
from encodecmae_hear.model.config import CHUNK_SAMPLES, FRAME_RATE, HOP_LENGTH, SAMPLE_RATE

HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
MAX_ABS_AMPLITUDE = 2.0  # beyond this the input is not [-1, 1] audio (e.g. int16 scale)


def check_audio(audio, sample_rate: int) -> torch.Tensor:
    """Validates a HEAR batch (n_sounds, n_samples) and returns it as float32."""
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"audio must be a torch.Tensor of shape (n_sounds, n_samples), "
                         f"got {type(audio).__name__}")
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape (n_sounds, n_samples), got shape "
                         f"{tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be floating point in [-1, 1] (float32), got {audio.dtype}; "
                         f"for int16 samples use audio.float() / 32768")
    n_sounds, n_samples = audio.shape
    if n_sounds == 0 or n_samples == 0:
        raise ValueError(f"audio is empty: shape {tuple(audio.shape)}")
    min_samples = math.ceil(HOP_LENGTH * sample_rate / SAMPLE_RATE)
    if n_samples < min_samples:
        raise ValueError(f"audio is shorter than one frame: {n_samples} samples at "
                         f"{sample_rate} Hz; need at least {min_samples} "
                         f"({1000 / 75:.1f} ms)")
    audio = audio.float()
    low, high = torch.aminmax(audio)  # NaN propagates; no full-size temporaries
    if not (torch.isfinite(low) and torch.isfinite(high)):
        bad = int((~torch.isfinite(audio)).sum())
        raise ValueError(f"audio contains {bad} NaN or infinite values")
    peak = max(-float(low), float(high))
    if peak > MAX_ABS_AMPLITUDE:
        raise ValueError(f"audio must be in [-1, 1]; its peak is {peak:.4g}. Is it integer-"
                         f"scaled? (int16 audio: divide by 32768)")
    return audio


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Frames (75/s) the HEAR API returns for `num_samples` at `sample_rate`: every frame
    whose centre lies inside the audio, round(num_samples * 75 / sample_rate) rounding
    halves up. Frame i covers [320 i, 320 (i + 1)) at 24 kHz and is stamped with its
    centre; HEAR refuses timestamps past the end of the audio, so a last partial frame
    whose centre would lie outside is not returned (its < 6.7 ms of audio is still
    seen by the frames before it)."""
    return (2 * num_samples * round(FRAME_RATE) + sample_rate) // (2 * sample_rate)


MIN_RATE, MAX_RATE = 1000, 384000  # sample rates `resample` takes, in Hz
LOWPASS_WIDTH, ROLLOFF = 6, 0.99     # torchaudio's defaults: zero crossings, cut-off / Nyquist
MAX_KERNEL = 1 << 20    # torchaudio's kernel (elements) for pairs resampled its way
DIRECT_BLOCK = 1 << 18  # (outputs x taps) per block of the direct path

_RESAMPLERS: dict[tuple[int, int, str], torchaudio.transforms.Resample] = {}


def check_rate(rate) -> int:
    """A sample rate `resample` takes, as an int; ValueError (one line) otherwise."""
    if not (isinstance(rate, (int, np.integer)) or float(rate).is_integer()) \
            or not MIN_RATE <= int(rate) <= MAX_RATE:
        raise ValueError(f"sample rate {rate} Hz is outside what this project resamples "
                         f"({MIN_RATE} to {MAX_RATE} Hz, whole numbers); convert the file first "
                         f"(e.g. sox or ffmpeg)")
    return int(rate)


def kernel_size(orig: int, new: int) -> int:
    """Elements of torchaudio's sinc kernel for orig -> new Hz: new/gcd rows of
    orig/gcd + 2 * width taps."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    width = math.ceil(LOWPASS_WIDTH * o / (min(o, n) * ROLLOFF))
    return n * (o + 2 * width)


def resampler(orig: int, new: int, device="cpu") -> torchaudio.transforms.Resample:
    """torchaudio's Resample for orig -> new Hz on `device`, built once per process."""
    key = (int(orig), int(new), str(torch.device(device)))
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(int(orig), int(new)).to(device)
    return _RESAMPLERS[key]


def resample(wave, orig: int, new: int):
    """wave (..., n) at `orig` Hz -> float32 at `new` Hz; a numpy array in gives one out.
    Rates outside MIN_RATE..MAX_RATE are a ValueError; memory beyond the input and output
    stays bounded at any rate in range (module docstring)."""
    as_numpy = isinstance(wave, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)) if as_numpy else wave.float()
    if orig != new:
        orig, new = check_rate(orig), check_rate(new)
        if kernel_size(orig, new) <= MAX_KERNEL:
            tensor = resampler(orig, new, tensor.device)(tensor)
        else:
            tensor = _resample_direct(tensor, orig, new)
    return tensor.numpy() if as_numpy else tensor


def _resample_direct(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """torchaudio's resampling formula, output sample by output sample:
    y[j] = scale * sum_i x[i] * sinc(t) * cos(pi t / 12)^2, t = (i / orig - j / new) * base,
    |t| < 6, base = 0.99 * min(orig, new) (reduced by their gcd), scale = base / orig.
    Memory: a block of DIRECT_BLOCK (outputs x taps) float64 weights and float32 samples
    (about 2 MB each, a few at a time), whatever the rates. wave (..., n) -> (..., m)."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * ROLLOFF
    half = LOWPASS_WIDTH * o / base                   # half the filter, in input samples
    taps = math.floor(2 * half) + 4               # covers |i - j * orig / new| < half
    shape = wave.shape
    rows = wave.reshape(-1, shape[-1])                # (R, N)
    length = rows.shape[1]
    out_len = -(-n * length // o)                     # ceil(n * length / o), as torchaudio
    out = torch.empty(rows.shape[0], out_len, dtype=torch.float32, device=wave.device)
    block = max(1, DIRECT_BLOCK // (taps * rows.shape[0]))
    offsets = torch.arange(taps, dtype=torch.int64, device=wave.device)
    for start in range(0, out_len, block):
        j = torch.arange(start, min(start + block, out_len), dtype=torch.int64, device=wave.device)
        first = torch.div(j * o - math.ceil(half * n), n, rounding_mode="floor")  # (B,)
        i = first[:, None] + offsets                  # (B, taps) input indices
        t = (i * n - j[:, None] * o).double() * (base / (o * n))  # exact integers, one rounding
        t.clamp_(-LOWPASS_WIDTH, LOWPASS_WIDTH)
        weights = torch.cos(t * (math.pi / LOWPASS_WIDTH / 2)) ** 2
        t *= math.pi
        weights *= torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * (base / o)
        inside = (i >= 0) & (i < length)
        weights = (weights * inside).float()          # zero padding beyond the ends
        samples = rows[:, i.clamp(0, length - 1)]     # (R, B, taps)
        out[:, start:start + j.shape[0]] = torch.einsum("rbt,bt->rb", samples, weights)
    return out.reshape(*shape[:-1], out_len)


def resampled_length(num_samples: int, sample_rate: int) -> int:
    g = math.gcd(sample_rate, SAMPLE_RATE)
    return math.ceil(num_samples * (SAMPLE_RATE // g) / (sample_rate // g))


class Chunker:
    """Turns one sound at `sample_rate` into 4 s chunks at 24 kHz (the last zero-padded)."""

    def __init__(self, sample_rate: int):
        if sample_rate not in HEAR_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of the HEAR rates {HEAR_SAMPLE_RATES}, "
                             f"got {sample_rate}")
        self.sample_rate = sample_rate
        g = math.gcd(sample_rate, SAMPLE_RATE)
        self.orig, self.new = sample_rate // g, SAMPLE_RATE // g
        # Context on each side, whole resampler periods, wider than the sinc kernel.
        self.margin = (resampler(sample_rate, SAMPLE_RATE).width // self.orig + 2) * self.orig

    def chunks(self, sound: torch.Tensor) -> Iterator[tuple[torch.Tensor, int]]:
        """sound (n_samples,) -> yields (chunk (96000,), valid samples in the chunk)."""
        n_in = sound.shape[0]
        n_out = resampled_length(n_in, self.sample_rate)
        for out_start in range(0, n_out, CHUNK_SAMPLES):
            out_end = min(out_start + CHUNK_SAMPLES, n_out)
            in_start = out_start * self.orig // self.new  # exact: 96000 is a multiple of `new`
            in_end = math.ceil(out_end * self.orig / self.new)
            lo, hi = max(0, in_start - self.margin), min(n_in, in_end + self.margin)
            piece = resample(sound[lo:hi], self.sample_rate, SAMPLE_RATE)
            offset = (in_start - lo) * self.new // self.orig
            chunk = piece[offset: offset + out_end - out_start]
            valid = chunk.shape[0]
            if valid < CHUNK_SAMPLES:
                chunk = torch.nn.functional.pad(chunk, (0, CHUNK_SAMPLES - valid))
            yield chunk, valid


READ_BLOCK = 1 << 20  # frames decoded at a time by load_audio


def load_audio(path, sample_rate: int) -> torch.Tensor:
    """An audio file (a path or an open binary file) that soundfile reads (any rate, any
    channel count) -> mono float32 (n_samples,) at `sample_rate`: the channels are
    averaged, then `resample`d from the file's rate. A path is checked first
    (files.regular_file: a FIFO or a folder is a ValueError, a missing or unreadable file
    an OSError naming it; a name that is not UTF-8 is read like any other). The file is
    decoded READ_BLOCK frames at a time, so memory follows the audio actually decoded,
    not what the header claims (a damaged header may claim hours; where decoding then
    fails it is a ValueError saying so). A rate `resample` does not take is a ValueError
    before any decoding."""
    source = path if hasattr(path, "read") else regular_file(path)
    pieces = []
    with sf.SoundFile(source) as f:
        rate = f.samplerate
        if rate != sample_rate:
            check_rate(rate)
        while True:
            try:
                data = f.read(READ_BLOCK, dtype="float32", always_2d=True)  # (frames, channels)
            except RuntimeError as err:  # libsndfile, when a header claims more than is there
                done = sum(map(len, pieces))
                raise ValueError(f"damaged: decoding stopped after {done / rate:.4g} s of the "
                                 f"{f.frames / rate:.6g} s its header claims "
                                 f"({getattr(err, 'error_string', err)})") from None
            if data.shape[0] == 0:
                break
            pieces.append(data[:, 0].copy() if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32))
            if data.shape[0] < READ_BLOCK:
                break
    mono = pieces[0] if len(pieces) == 1 else np.concatenate(pieces or [np.zeros(0, np.float32)])
    return resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, sample_rate)
