"""Where a model the user names is: the one place that turns a name or a path into a file.

In order: "" is the bundled default model ($ENCODECMAE_DEFAULT_CHECKPOINT, else
checkpoints/default.pt); an existing path is itself; a bare name is looked up as NAME or
NAME.pt in $ENCODECMAE_CHECKPOINT_DIR (default ~/.cache/encodecmae_hear/checkpoints),
then among the bundled models (checkpoints/NAME.pt), then as a published EnCodecMAE model
on the Hugging Face hub (hub/names.py: `mel256-ec-base_st`, `v1/base`, ...), fetched once,
pinned and checked (hub/store.py). Bundled and local files never touch the network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from encodecmae_hear.errors import UserError
from encodecmae_hear.hub import store
from encodecmae_hear.hub.names import all_known, published
from encodecmae_hear.paths import BUNDLED_CHECKPOINT, BUNDLED_DIR

DEFAULT_CHECKPOINT_ENV = "ENCODECMAE_DEFAULT_CHECKPOINT"
CHECKPOINT_DIR_ENV = "ENCODECMAE_CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = Path.home() / ".cache" / "encodecmae_hear" / "checkpoints"


class ModelNotFound(store.HubError, FileNotFoundError):
    """A name that is neither a local file, a bundled model nor a published one at hand."""


@dataclass(frozen=True)
class Located:
    path: Path
    published: dict | None = None  # the hub record (repo, file, commit, sha256) of a published model


def default_checkpoint() -> Path:
    """The bundled model: $ENCODECMAE_DEFAULT_CHECKPOINT, else checkpoints/default.pt."""
    override = os.environ.get(DEFAULT_CHECKPOINT_ENV, "").strip()
    return Path(override) if override else BUNDLED_CHECKPOINT


def checkpoint_dir() -> Path:
    value = os.environ.get(CHECKPOINT_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_CHECKPOINT_DIR


def bundled_names() -> list[str]:
    """The bundled checkpoints by name (checkpoints/*.pt without the suffix)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def local_names() -> list[str]:
    root = checkpoint_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.pt")) if root.is_dir() else []


def _local(name: str) -> Path | None:
    root = checkpoint_dir()
    for pattern in (name, f"{name}.pt"):
        hits = sorted(root.rglob(pattern)) if root.is_dir() else []
        if hits:
            return hits[0]
    for bundled in (BUNDLED_DIR / name, BUNDLED_DIR / f"{name}.pt"):
        if bundled.is_file():
            return bundled
    return None


def locate(name_or_path="", revision: str | None = None) -> Located:
    """The file behind a name or path (module docstring). `revision` (a hub commit, branch
    or tag) applies to published names only: it fetches that revision and re-pins."""
    text = str(name_or_path)
    path = Path(text)
    hub_name = published(text) if text and not path.exists() else None
    if revision is not None and hub_name is None:
        raise UserError(f"a revision applies to published model names only; {text!r} is "
                        f"{'a local file' if text and path.exists() else 'not one'}")
    if not text:
        return Located(default_checkpoint())
    if hub_name is None:
        return Located(path)  # reading it says what is wrong if it is missing
    local = _local(text) if len(path.parts) == 1 and revision is None else None
    if local is not None:
        return Located(local)
    try:
        fetched = store.fetch(hub_name, revision)
    except store.HubError as err:
        if len(path.parts) != 1 or revision is not None:
            raise
        raise ModelNotFound(f"no checkpoint file or name {text!r} (looked for {text}[.pt] in "
                             f"{checkpoint_dir()}, set ${CHECKPOINT_DIR_ENV}; names there: "
                             f"{', '.join(local_names()) or 'none'}; bundled: {', '.join(bundled_names())}), "
                             f"and as a published name: {err}") from None
    return Located(fetched.path, fetched.record)


def resolve_checkpoint(name_or_path="", revision: str | None = None) -> Path:
    return locate(name_or_path, revision).path


def describe_names() -> str:
    """Names to suggest in messages."""
    return (f"bundled: {', '.join(bundled_names())}; local ({checkpoint_dir()}): "
            f"{', '.join(local_names()) or 'none'}; published: {', '.join(all_known())}")
