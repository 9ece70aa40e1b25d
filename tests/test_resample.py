"""The one resampler (audio.resample) at any rate from 1 kHz to 384 kHz: bounded memory,
torchaudio's results bit for bit at the common rates, accuracy at odd ones, and a one-line
refusal outside the range."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchaudio

from encodecmae_hear.audio import MAX_RATE, MIN_RATE, kernel_size, resample

ROOT = Path(__file__).resolve().parents[1]

_RESAMPLE_PROBE = """
import resource, sys, torch
torch.set_num_threads(1)
from encodecmae_hear.audio import resample
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = torch.rand(2 * 384000).sub_(0.5)  # the largest input, made before measuring
growth = []
for orig, new in [(int(a), int(b)) for a, b in (p.split(":") for p in sys.argv[1:])]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    y = resample(x[: 2 * orig], orig, new)
    growth.append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    del y
print(max(growth))
"""
# gcd-1 rates (torchaudio's kernel would take 1-17 GB), the largest kernels that torchaudio
# still builds (1,048,500 elements), and the ends of the range
HARD_PAIRS = ["1201:24000", "2401:24000", "44101:48000", "383999:24000", "24000:383999",
              "268720:24000", "346624:48000", "65504:16000", "1000:48000", "384000:48000"]


def test_resampling_memory_is_bounded_at_any_rate():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _RESAMPLE_PROBE, *HARD_PAIRS], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) < 128 << 20  # the bound stated in audio.py (measured: ~60 MB)
    assert max(kernel_size(*map(int, p.split(":"))) for p in HARD_PAIRS[:5]) > 100 * (1 << 20)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 32000, 44100, 48000])
def test_common_rates_are_torchaudio_bit_for_bit(rate):
    wave = torch.rand(2, rate // 3, generator=torch.Generator().manual_seed(rate)) - 0.5
    for new in (16000, 24000, 48000):
        expected = wave if new == rate else torchaudio.transforms.Resample(rate, new)(wave)
        assert torch.equal(resample(wave, rate, new), expected)


@pytest.mark.parametrize("rate", [1201, 44101, 96001])
def test_an_odd_rate_is_resampled_accurately(rate):
    """Two tones at an odd rate -> 24 kHz, against the same tones computed at 24 kHz."""
    def tones(sr, seconds=1.0):
        t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
        return (0.4 * torch.sin(2 * math.pi * 110 * t) + 0.2 * torch.sin(2 * math.pi * 217.5 * t)).float()

    got = resample(tones(rate), rate, 24000)
    assert got.shape[0] == math.ceil(rate * 24000 / rate) == 24000
    assert (got[2400:-2400] - tones(24000)[2400:-2400]).abs().max() < 2e-3


def test_rates_outside_the_range_are_refused_in_one_line():
    for rate in (MIN_RATE - 1, MAX_RATE + 1, 0):
        with pytest.raises(ValueError, match=f"{MIN_RATE} to {MAX_RATE} Hz") as info:
            resample(torch.zeros(100), rate, 24000)
        assert "\n" not in str(info.value)
