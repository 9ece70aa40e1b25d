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


def import_error() -> str:
    """What `import torchaudio` prints in a fresh interpreter ("" when it imports)."""
    run = subprocess.run([sys.executable, "-c", "import torchaudio"], capture_output=True, text=True)
    return "" if run.returncode == 0 else run.stderr.strip() or f"exit code {run.returncode}"


def main() -> int:
    import torch

    error = import_error()
    if not error:
        print("torchaudio imports as installed; nothing to do")
        return 0
    spec = importlib.util.find_spec("torchaudio")
    if torch.version.cuda is not None or spec is None or "cuda" not in error.lower():
        print(f"torchaudio does not import, and not for a CUDA-only extension:\n{error}",
              file=sys.stderr)
        return 1
    lib_dir = Path(spec.origin).parent / "lib"
    moved = sorted(lib_dir.glob("*.so"))
    for path in moved:
        path.rename(path.with_name(path.name + SUFFIX))
    error = import_error()
    if error:
        print(f"torchaudio still does not import:\n{error}", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__} has no CUDA: set aside torchaudio's CUDA-only "
          f"extensions ({', '.join(p.name for p in moved)}); torchaudio now imports without them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
