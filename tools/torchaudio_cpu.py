"""Makes torchaudio importable beside a CPU-only torch; run by `make install`.

PyPI's torchaudio wheels for Linux x86_64 are CUDA builds: their compiled extensions
link libc10_cuda.so, which a CPU build of torch does not have, so `import torchaudio`
fails there (and with it `import encodec`). Nothing this project uses needs those
extensions: the sinc resampler and the Kaldi filterbank are written in plain torch.
torchaudio treats an extension file that is absent as "not built" and imports without
it, so this script renames the files aside (`*.so` -> `*.so.cuda-only`) when torch has
no CUDA and torchaudio cannot load them. With a CUDA torch it changes nothing.

    python tools/torchaudio_cpu.py      # prints what it did; exit 1 if torchaudio still fails
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SUFFIX = ".cuda-only"


def import_error(package: str) -> str:
    """What `import PACKAGE` prints in a fresh interpreter ("" when it imports)."""
    run = subprocess.run([sys.executable, "-c", f"import {package}"], capture_output=True, text=True)
    return "" if run.returncode == 0 else run.stderr.strip() or f"exit code {run.returncode}"


def set_aside_cuda_extensions(package: str, torch_has_cuda: bool) -> int:
    """Exit status: 0 when PACKAGE imports (after setting its extensions aside if needed)."""
    error = import_error(package)
    if not error:
        print(f"{package} imports as installed; nothing to do")
        return 0
    spec = importlib.util.find_spec(package)
    if torch_has_cuda or spec is None or "cuda" not in error.lower():
        print(f"{package} does not import, and not for a CUDA-only extension:\n{error}",
              file=sys.stderr)
        return 1
    moved = sorted((Path(spec.origin).parent / "lib").glob("*.so"))
    for path in moved:
        path.rename(path.with_name(path.name + SUFFIX))
    error = import_error(package)
    if error:
        print(f"{package} still does not import:\n{error}", file=sys.stderr)
        return 1
    print(f"torch has no CUDA: set aside {package}'s CUDA-only extensions "
          f"({', '.join(p.name for p in moved)}); {package} now imports without them")
    return 0


def main() -> int:
    import torch

    return set_aside_cuda_extensions("torchaudio", torch_has_cuda=torch.version.cuda is not None)


if __name__ == "__main__":
    sys.exit(main())
