"""Installs the HEAR 2021 tools into the environment of the Python that runs it: the one
recipe that `make install` and tools/wheel_check.py share. Run it after encodecmae_hear
itself is installed there (editable or from the wheel):

    .venv/bin/python tools/install_hear_tools.py [PIP_OPTION ...]   # e.g. --no-compile

1. hearvalidator, heareval and hearbaseline pin Python < 3.9 and numpy 1.19.2, which do
   not build here: they go in unmodified with --no-deps, then the dependencies they really
   use. Every version comes from constraints.txt. pip's note that the installed tools'
   declared pins are not met is dropped from the output (RESOLVER_NOTE); other lines stay.
2. tools/torchaudio_cpu.py: PyPI's CUDA-built torchaudio imports beside a CPU torch.
3. The .pth file of `encodecmae_hear.evaluate.compat` (`pth_text`) in site-packages: the
   shims folder goes last on sys.path (the TensorFlow stand-in) and the post-import hook
   that fixes heareval's prediction runner is installed at start-up, so the tools run as
   their own docs say (`hear-validator`, `python -m heareval...`).
"""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
HEAR_TOOLS = ["hearvalidator", "heareval", "hearbaseline"]
HEAR_DEPS = ["pytorch-lightning", "torchmetrics", "torchinfo", "click", "intervaltree",
             "more-itertools", "pandas", "python-slugify", "scipy", "librosa", "six", "future",
             "validators", "setuptools"]
# heareval's event scores, --no-deps: scoring runs without the rest of dcase_util's
# requirements (pydot-ng, python-magic, ...)
EVENT_DEPS = ["dcase_util", "sed_eval"]
# Run by the installed package (python -I: not a checkout in the working folder), which
# knows where its shims are.
WRITE_PTH = """
import sysconfig
from encodecmae_hear import files
from encodecmae_hear.evaluate import compat
path = f"{sysconfig.get_paths()['purelib']}/{compat.PTH_NAME}"
files.write_text(path, compat.pth_text())
print("wrote", path)
"""


# pip's closing check of the whole environment names the pins that the HEAR tools declare
# and that step 1 bypasses on purpose (numpy==1.19.2, tensorflow, ...): expected, not a failure.
RESOLVER_NOTE = "ERROR: pip's dependency resolver does not currently take into account"


def without_resolver_note(text: str) -> str:
    """`text` less pip's resolver note and its lines "X requires Y, ...": those lines only."""
    kept, in_note = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(RESOLVER_NOTE):
            in_note = True
        elif not (in_note and " requires " in line and ("not installed" in line or "incompatible" in line)):
            in_note = False
            kept.append(line)
    return "".join(kept)


def pip_install(options: list[str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS),
                           *options, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(done.stdout if done.returncode else without_resolver_note(done.stdout))
    done.check_returncode()


def main(pip_options: list[str]) -> int:
    print(f"HEAR tools into {sysconfig.get_paths()['purelib']}")
    pip_install(pip_options, "--no-deps", "--ignore-requires-python", *HEAR_TOOLS)
    pip_install(pip_options, *HEAR_DEPS)
    pip_install(pip_options, "--no-deps", *EVENT_DEPS)
    # a fresh interpreter for each: the installed torch and package, not this process's imports
    subprocess.run([sys.executable, str(ROOT / "tools" / "torchaudio_cpu.py")], check=True)
    subprocess.run([sys.executable, "-I", "-c", WRITE_PTH], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
