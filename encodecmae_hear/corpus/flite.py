"""Words spoken by flite's built-in voices: speakers that pretraining never heard (the
corpus's synthetic speech is espeak-ng's), for the validation suite's spoken-words task.

flite (Debian package `flite`, BSD-style licence) is a tool like espeak-ng and fluidsynth:
installed by apt, run as a subprocess, never imported.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from encodecmae_hear.errors import UserError

# one voice per speaker: kal16 is kal's voice again and awb_time speaks only the time
VOICES = ("kal", "awb", "rms", "slt")


def binary() -> str:
    """The flite executable on PATH, or a UserError that says how to install it."""
    path = shutil.which("flite")
    if path is None:
        raise UserError("flite not found: the spoken-words task needs it (apt-get install flite)")
    return path


def render(text: str, voice: str, stretch: float = 1.0) -> tuple[np.ndarray, int]:
    """`text` spoken by flite `voice`, its durations times `stretch` -> (mono float32, rate)."""
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES}, got {voice!r}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "words.wav"
        subprocess.run([binary(), "-voice", voice, "--setf", f"duration_stretch={stretch}",
                        "-t", text, "-o", str(out)], check=True, capture_output=True)
        audio, rate = sf.read(out, dtype="float32", always_2d=True)
    return audio.mean(1), int(rate)
