"""The one walker of folders: every command that searches folders for audio (`embed`,
`manifest`, `pretrain --data FOLDER`) finds its files here, with the same rules.

* Files are those whose names end in one of the extensions asked for (any case); a file
  given by name is taken whatever its name.
* A link to a folder is followed once: a folder reached again (a link to a parent, two
  links to one place) is skipped, by device and inode. A link to a folder outside the
  folders being searched is not followed unless `outside=True`. Links to files are
  followed wherever they point.
* What cannot be read is skipped and reported, never fatal: FIFOs, sockets and devices
  named like audio (a decoder would block on them), broken links, folders this process
  may not read.
* Names that are not UTF-8 are found like any other (Python keeps their bytes as
  surrogates, `os.fsencode` gives them back); `files.shown` prints them.

`find` returns the files (sorted) and the skipped entries with their reasons;
`Found.summary()` is the one line a command prints about what it skipped.
"""
from __future__ import annotations

import collections
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from encodecmae_hear.errors import UserError
from encodecmae_hear.files import kind_of, shown

# A reason is "kind: detail"; the summary counts kinds.
LOOP = "folder already searched"
OUTSIDE = "link to a folder outside the searched folders"
SPECIAL = "not a regular file"
BROKEN = "broken link"
UNREADABLE = "unreadable folder"


@dataclass
class Found:
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, "kind: detail")

    def counts(self) -> collections.Counter:
        return collections.Counter(reason.split(":")[0] for _, reason in self.skipped)

    def summary(self) -> str | None:
        """"skipped 3 entries while searching: 2 folder already searched, 1 not a regular
        file", or None when nothing was skipped."""
        if not self.skipped:
            return None
        parts = ", ".join(f"{n} {kind}" for kind, n in self.counts().most_common())
        return f"skipped {len(self.skipped)} entries while searching folders: {parts}"


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def find(roots, extensions: tuple[str, ...], outside: bool = False) -> Found:
    """Files below `roots` (folders, searched recursively, or files) whose names end in
    `extensions` -> Found(sorted files, skipped entries). A root that does not exist is
    a UserError."""
    found = Found()
    roots = [Path(root) for root in roots]
    real_roots = [os.path.realpath(root) for root in roots if root.is_dir()]
    seen: set[tuple[int, int]] = set()
    suffixes = tuple(ext.lower() for ext in extensions)
    for root in roots:
        try:
            info = root.stat()
        except FileNotFoundError:
            if root.is_symlink():
                found.skipped.append((root, f"{BROKEN}: it points to {shown(os.readlink(root))}"))
                continue
            raise UserError(f"audio folder not found: {shown(root)}") from None
        if stat.S_ISDIR(info.st_mode):
            _walk(root, suffixes, real_roots, outside, seen, found)
        elif stat.S_ISREG(info.st_mode):
            found.files.append(root)
        else:
            found.skipped.append((root, f"{SPECIAL}: {kind_of(info.st_mode)}"))
    found.files.sort()
    return found


def _walk(root: Path, suffixes, real_roots, outside: bool, seen: set, found: Found) -> None:
    """Depth first, names in sorted order (so which of two links to a folder is followed
    does not depend on the file system's listing order)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                found.skipped.append((folder, f"{LOOP}: it is reached by another path too "
                                              f"(a link loop or a second link)"))
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            found.skipped.append((folder, f"{UNREADABLE}: {err.strerror}"))
            continue
        below = []
        for entry in entries:
            path = Path(entry.path)
            try:
                mode = entry.stat(follow_symlinks=True).st_mode
            except OSError as err:  # a broken link, or a link loop (ELOOP)
                # reported when it may have been audio: named so, or no suffix (a folder?)
                if entry.name.lower().endswith(suffixes) or "." not in entry.name:
                    target = shown(os.readlink(entry.path)) if entry.is_symlink() else "?"
                    found.skipped.append((path, f"{BROKEN}: it points to {target} ({err.strerror})"))
                continue
            if stat.S_ISDIR(mode):
                if entry.is_symlink() and not outside \
                        and not _inside(os.path.realpath(entry.path), real_roots):
                    found.skipped.append((path, f"{OUTSIDE}: it points to "
                                                f"{shown(os.path.realpath(entry.path))}"))
                else:
                    below.append(path)
            elif entry.name.lower().endswith(suffixes):
                if stat.S_ISREG(mode):
                    found.files.append(path)
                else:
                    found.skipped.append((path, f"{SPECIAL}: {kind_of(mode)}"))
        stack.extend(reversed(below))
