"""Writing files so that a crash never leaves a half-written one: the content goes to a
temporary file beside the target (`.NAME.tmpPID`), is flushed to disk, then renamed over
the target in one step. The one place that does this, for every kind of output.

Also the places a run writes to: `claim_folder` makes one run the only writer of an
output folder (an flock held until the run ends; the processes of one torchrun job share
it) and removes the temporary files a killed run left there; `regular_file` checks an
input before a decoder opens it (a FIFO would block for ever); `shown` prints any path,
even one whose name is not UTF-8, in one unambiguous line."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import torch

from encodecmae_hear.errors import UserError


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name `atomic_open` writes to before renaming it to `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


TEMP_NAME = re.compile(r"\..+\.tmp\d+\Z", re.S)  # the names temp_path gives


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **open_options) -> Iterator[IO]:
    """`with atomic_open(p) as f: ...` writes p whole or not at all (parents are made);
    `open_options` (encoding, errors) go to `open`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **open_options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk mid-write: name the file (torch.save does not)
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    finally:
        with contextlib.suppress(OSError):  # e.g. a read-only place: the first error tells
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj, **dump_options) -> None:
    write_text(path, json.dumps(obj, **dump_options))


def write_jsonl(path: str | os.PathLike, rows) -> None:
    with atomic_open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_npy(path: str | os.PathLike, array) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    """Like np.savez (np.load reads it), but the same arrays give the same bytes: the
    zip members carry a fixed date instead of the time of writing."""
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)


def shown(path: str | os.PathLike | bytes) -> str:
    """A path as one printable line that names the file unambiguously, like `ls -b`:
    bytes that are not UTF-8 as \\xNN, control characters as \\n, \\t or \\xNN, a
    backslash as \\\\. A plain name is shown unchanged."""
    raw = os.fsencode(path)
    text = raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def kind_of(mode: int) -> str:
    """What a stat mode names, in words ("a regular file", "a FIFO", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((word for test, word in _KINDS if test(mode)), "a special file")


class NotRegularFile(ValueError):
    """An input that is a FIFO, a socket, a device or a folder, where a file of audio
    was expected."""


def regular_file(path: str | os.PathLike) -> bytes:
    """Checks that `path` is a regular file that this process can read and returns it as
    bytes (a name that is not UTF-8 stays itself), for a decoder to open. The check opens
    without blocking, so a FIFO is refused instead of waiting for a writer. Raises
    OSError (missing, no permission: with errno and the file name) or NotRegularFile."""
    raw = os.fsencode(path)
    fd = os.open(raw, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"not a regular file: {kind_of(mode)}")
    return raw


# One writer per output folder -------------------------------------------------------

LOCK_FILE = ".writer.lock"  # flock'ed (shared) by every process of the run writing there
GATE_FILE = ".writer.gate"  # flock'ed (exclusive) for the moment a process checks in
_HELD: dict[str, tuple[int, int]] = {}  # folder (real path) -> (lock fd, claims by this process)


class FolderInUse(UserError):
    """Another run writes to the output folder."""


def run_identity() -> str:
    """Who is writing: one torchrun job (all its processes share this), else this process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return (f"torchrun job {os.environ.get('TORCHELASTIC_RUN_ID', 'none')} at "
                f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}")
    return f"pid {os.getpid()}"


def claim_folder(folder: str | os.PathLike) -> None:
    """Makes this run the only writer of `folder` (made if missing) until
    `release_folder` or the end of the process: a second run fails at once with a
    FolderInUse naming the first (its pid). The processes of one torchrun job share the
    claim. The first process to claim a free folder removes the temporary files
    (`.NAME.tmpPID`) that a killed run left below it. A process may claim a folder again
    (each claim is released once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _HELD:
        fd, count = _HELD[key]
        _HELD[key] = (fd, count + 1)
        return
    me = run_identity()
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    gate = os.open(folder / GATE_FILE, flags, 0o644)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # held for a moment by whoever checks in
        lock = os.open(folder / LOCK_FILE, flags, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                free = True
            except BlockingIOError:
                free = False
            if free:  # nobody writes here: record who does now, tidy up, then share
                os.ftruncate(lock, 0)
                record = me if me == f"pid {os.getpid()}" else f"{me} (pid {os.getpid()})"
                os.pwrite(lock, f"{record}\n".encode(), 0)
                remove_stale_temps(folder)
                fcntl.flock(lock, fcntl.LOCK_SH)
            else:
                owner = os.pread(lock, 4096, 0).decode("utf-8", "replace").strip()
                if owner != me and not owner.startswith(me + " ("):
                    raise FolderInUse(
                        f"{shown(folder)} is being written by another run ({owner or 'unknown'}); "
                        f"wait for it to end, or choose another output folder")
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BaseException:
            os.close(lock)
            raise
    finally:
        os.close(gate)  # closing releases the gate's lock
    _HELD[key] = (lock, 1)


def release_folder(folder: str | os.PathLike) -> None:
    key = os.path.realpath(folder)
    if key not in _HELD:
        return
    fd, count = _HELD.pop(key)
    if count > 1:
        _HELD[key] = (fd, count - 1)
    else:
        os.close(fd)


def release_all_folders() -> None:
    for key in list(_HELD):
        os.close(_HELD.pop(key)[0])


@contextlib.contextmanager
def sole_writer(folder: str | os.PathLike) -> Iterator[None]:
    """`with sole_writer(out): ...`: claim_folder for the block."""
    claim_folder(folder)
    try:
        yield
    finally:
        release_folder(folder)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Removes the temporary files (`.NAME.tmpPID`) below `folder` (links not followed);
    call it only while no other process writes there. -> how many were removed."""
    removed = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if TEMP_NAME.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed
