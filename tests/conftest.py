import atexit
import math
import os
import shutil
import tempfile

# No test reaches a hub on the network or writes to the user's caches: the endpoint is a
# closed loopback port and the caches are temporary, set before huggingface_hub is
# imported (it reads them once); tests of downloads serve files on 127.0.0.1 themselves.
_CACHES = tempfile.mkdtemp(prefix="encodecmae-test-caches-")
atexit.register(shutil.rmtree, _CACHES, True)
os.environ.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=os.path.join(_CACHES, "hf"),
                  HF_HUB_CACHE=os.path.join(_CACHES, "hf", "hub"), TORCH_HOME=os.path.join(_CACHES, "torch"),
                  ENCODECMAE_ENCODEC_URL="http://127.0.0.1:9/")
os.environ.pop("HF_HUB_OFFLINE", None)

# huggingface_hub reads HF_HUB_OFFLINE when its constants are first imported: import them now,
# online, so that tests can switch offline through the environment in any order.
import huggingface_hub.constants  # noqa: E402,F401

import pytest  # noqa: E402
import torch  # noqa: E402

from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE


def tone_mix(seconds: float, sample_rate: int, seed: int = 0, n: int = 1) -> torch.Tensor:
    """(n, samples) of random tone mixtures with noise, peak well inside [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(round(seconds * sample_rate))) / sample_rate
    out = []
    for _ in range(n):
        freqs = 100 + 3000 * torch.rand(3, generator=g)
        wave = sum(torch.sin(2 * math.pi * f * t + 6.28 * torch.rand(1, generator=g)) for f in freqs)
        wave = wave / 3 * 0.5 + 0.05 * torch.randn(t.shape, generator=g)
        out.append(wave)
    return torch.stack(out).float()


@pytest.fixture(scope="session")
def tiny_mel():
    torch.manual_seed(0)
    return EncodecMAE(preset("tiny", "mel256")).eval()


@pytest.fixture(scope="session")
def tiny_encodec():
    torch.manual_seed(0)
    return EncodecMAE(preset("tiny", "encodec")).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_mel):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, tiny_mel, provenance={"trained": False, "notes": "test"})
    return path
