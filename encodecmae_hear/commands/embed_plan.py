"""What `embed` does and where it writes: the input files, their output names, and the
units of work that the processes share.

Inputs are audio files, folders (searched recursively by the project's walker,
walk.py, for the extensions of `train.manifest.AUDIO_EXTENSIONS`) and manifests (`.jsonl`, a "path" per line, as
`python -m encodecmae_hear manifest` writes them; relative paths are read from the
working folder, as training reads them). Every file is named by its path below the
deepest folder that holds all inputs, and its outputs mirror that tree under --out.

The sorted files are cut into consecutive units (a shard, or --batch files) and unit k
belongs to process k % WORLD_SIZE. A unit is computed the same way whatever the number
of processes (the same files in the same HEAR calls), so the outputs do not depend on
it. A resumed run computes the files of a unit that have no output yet (a shard: all).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from encodecmae_hear import files
from encodecmae_hear.errors import UserError
from encodecmae_hear.files import shown
from encodecmae_hear.train.manifest import AUDIO_EXTENSIONS, find_audio, read_manifest

EMBEDDING_SUFFIX = ".embedding.npy"    # heareval's names: <file name>.embedding.npy
TIMESTAMPS_SUFFIX = ".timestamps.npy"  # and <file name>.timestamps.npy
SETTINGS_FILE = "embed.json"


@dataclass(frozen=True)
class Item:
    source: Path  # the audio file
    name: str     # its path below the common input folder ("sub/a.wav")


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() == ".jsonl" and path.is_file()


def manifest_paths(path: Path) -> list[Path]:
    records = read_manifest(path, needs=("path",))
    paths = []
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise UserError(f"{shown(path)}: line {number} has no \"path\" string: {json.dumps(record)[:120]}")
        paths.append(Path(record["path"]))
    return paths


def collect_inputs(inputs: list[str], outside: bool = False) -> tuple[list[Item], list[tuple[Path, str]]]:
    """Files, folders and manifests -> (the audio files, sorted by name, each once;
    what the walker skipped, with reasons). `outside`: follow links to folders outside
    the given folders."""
    sources, roots, skipped = [], [], []
    for given in map(Path, inputs):
        if is_manifest(given):
            found = manifest_paths(given)
            roots += [Path(os.path.abspath(p)).parent for p in found]
        else:
            walked = find_audio([given], outside)  # UserError for a missing path
            found, skipped = walked.files, skipped + walked.skipped
            roots.append(Path(os.path.abspath(given if given.is_dir() else given.parent)))
        sources += [Path(os.path.abspath(p)) for p in found]
    if not sources:
        extra = f"; {'; '.join(f'{shown(p)}: {why}' for p, why in skipped[:3])}" if skipped else ""
        raise UserError(f"no audio found in {' '.join(map(shown, inputs))}: looked for files ending in "
                        f"{' '.join(AUDIO_EXTENSIONS)} (folders are searched recursively), "
                        f"or manifests (.jsonl with a \"path\" per line){extra}")
    base = Path(os.path.commonpath([str(r) for r in roots]))
    items = {Item(p, p.relative_to(base).as_posix()) for p in sources}
    return sorted(items, key=lambda item: item.name), skipped


def units(items: list[Item], size: int, rank: int, world: int) -> list[tuple[int, list[Item]]]:
    """Consecutive runs of `size` items; (index, unit) for those of this process."""
    cuts = range(0, len(items), size)
    return [(k, items[start:start + size]) for k, start in enumerate(cuts) if k % world == rank]


def output_paths(out: Path, item: Item, scene: bool) -> list[Path]:
    """The files one input gets; the embedding is written last, so it marks it done."""
    stem = out / item.name
    embedding = stem.with_name(stem.name + EMBEDDING_SUFFIX)
    return [embedding] if scene else [stem.with_name(stem.name + TIMESTAMPS_SUFFIX), embedding]


def shard_path(out: Path, index: int) -> Path:
    return out / f"shard-{index:06d}.npz"


def failed_path(out: Path, rank: int, world: int) -> Path:
    return out / ("failed.txt" if world == 1 else f"failed.rank{rank}.txt")


def check_settings(out: Path, settings: dict, notes: dict) -> None:
    """--out holds the outputs of one model and one set of options: the first run
    records them (with `notes`, not compared), a later run (a resume) must use the same.
    Call it while holding the folder (files.claim_folder), so that two runs cannot both
    find no settings and both write."""
    path = out / SETTINGS_FILE
    if not path.exists():
        files.write_json(path, {**settings, **notes}, indent=1, sort_keys=True)
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # also UnicodeDecodeError
        raise UserError(f"{shown(path)}: not a JSON file ({err}); delete it or choose another --out") from None
    if not isinstance(recorded, dict):
        raise UserError(f"{shown(path)}: not the settings of an embed run; delete it or choose another --out")
    changed = {k: (recorded.get(k), v) for k, v in settings.items() if recorded.get(k) != v}
    if changed:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise UserError(f"{shown(out)} holds embeddings made with other settings ({what}); "
                        f"choose another --out, or delete {shown(path)} and the outputs")
