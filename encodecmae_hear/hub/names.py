"""The names of the published EnCodecMAE models and the hub files behind each.

* v2 (the current release): one repository, `lpepino/encodecmae-v2`, one file a model,
  `NAME.pt`; a file in a sub-folder is named by its path (`folder/NAME`). The repository's
  own listing is the authority; `KNOWN_V2` only lists the names seen in the authors'
  README and scripts, for messages and `models` when offline.
* v1 (tag v.1.0.0): one repository a size, `lpepino/encodecmae-SIZE`, holding `model.pt`
  with its gin file `config.gin` beside it; named here `v1/SIZE`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from encodecmae_hear.errors import UserError

V2_REPO = "lpepino/encodecmae-v2"
V1_PREFIX = "v1/"
V1_SIZES = ("small", "base", "base-st", "large", "large-st")
V1_FILES = ("model.pt", "config.gin")
KNOWN_V2 = ("mel256-ec-base_st", "mel256-ec-base", "mel256-ec-base-as", "mel256-ec-base-ll",
            "mel256-ec-base-fma", "mel256-ec-base_st-nopn", "mel256-ec-large",
            "mel256-ec-large_st-nopn", "mel256-ec-small", "ec-ec-base")
PAPER_MODEL = "mel256-ec-base_st"  # the v2 paper's best base model: the name to report results with

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


@dataclass(frozen=True)
class Published:
    """One published model: the hub repository and the files to fetch, model file first."""
    name: str
    repo: str
    files: tuple[str, ...]

    @property
    def filename(self) -> str:
        return self.files[0]


def published(name: str) -> Published | None:
    """The published model a name stands for, or None when the text cannot be a hub name
    (a path: absolute, relative with ./ or ../, with a file suffix, or empty)."""
    name = str(name)
    if not _NAME.fullmatch(name) or ".." in name or name.endswith((".pt", ".th", ".ckpt")):
        return None
    if name.startswith(V1_PREFIX):
        size = name[len(V1_PREFIX):]
        if size not in V1_SIZES:
            raise UserError(f"no published v1 model {name!r}: the v1 names are "
                            f"{', '.join(V1_PREFIX + s for s in V1_SIZES)}")
        return Published(name, f"lpepino/encodecmae-{size}", V1_FILES)
    return Published(name, V2_REPO, (f"{name}.pt",))


def v2_names(files) -> list[str]:
    """Model names from a listing of the v2 repository's files (paths)."""
    return sorted(path[:-len(".pt")] for path in files if path.endswith(".pt"))


def all_known() -> list[str]:
    """Every name this code knows without asking the hub."""
    return [*KNOWN_V2, *(V1_PREFIX + size for size in V1_SIZES)]
