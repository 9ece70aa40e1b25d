"""allocator.py: building a HEAR model stops the page faults of freed activation blocks."""
import os
import subprocess
import sys

from tests.train_helpers import ROOT

_PROBE = """
import ctypes, resource, sys, torch
from encodecmae_hear.allocator import M_MMAP_THRESHOLD
if sys.argv[1] == "pinned":  # glibc's starting mmap threshold, fixed: no dynamic raise
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
torch.manual_seed(0)
mae = EncodecMAE(preset("tiny", "encodec")).eval()
window = 0.1 * torch.randn(1, 96000)
if sys.argv[1] == "hear":
    from encodecmae_hear.hear import HearModel
    HearModel(mae)
def faults_of_frontend(times=4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.no_grad():
        for _ in range(times):
            mae.frontend(window)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_frontend()  # first use: weights folded, kernels chosen
print(faults_of_frontend())
"""


def _faults(mode):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(map(int, done.stdout.split()))


def test_a_hear_model_keeps_freed_blocks_for_reuse():
    """EnCodec's frontend on a 4 s window, four times after a first: with glibc's
    defaults its freed activations go back to the kernel and come back as fresh pages
    (measured: 106k-214k page faults, then 0-3k); once a HearModel is built they are reused.
    glibc raises its mmap threshold by itself after some frees, which some runs hit early
    (one measured 12k faults): the baseline pins the threshold at glibc's starting 128 kB."""
    default, = _faults("pinned")
    tuned, = _faults("hear")
    assert default > 5_000 and tuned < default / 20, (default, tuned)
