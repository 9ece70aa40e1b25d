"""Published model files from the Hugging Face hub: fetched once, pinned, checked, and
loaded offline from then on.

`fetch(published)` goes through huggingface_hub in its standard cache (`$HF_HUB_CACHE`,
else `$HF_HOME/hub`, else its default), reading the variables at call time:

* A name is pinned to the commit it was first fetched at. The pin and the file's
  sha256 are kept in a small lock file beside the cache entry
  (`models--OWNER--NAME/encodecmae_hear.lock.json`); a cached, pinned file is loaded
  with no request at all, and a file whose sha256 no longer matches its pin is refused
  unless the caller asks for a revision (`revision=`), which re-pins.
* Every file is checked against what the hub said of it: an LFS file's ETag is its
  sha256, a small file's ETag its git blob id. A mismatch, or a download cut short, is
  evicted from the cache and reported; nothing broken stays there looking good.
* Offline (`HF_HUB_OFFLINE=1`) or with the endpoint unreachable, a cached name loads and
  a name that is not cached fails at once, with one line saying how to place it by hand
  (no retries: the endpoint is probed with one short connection first).

huggingface_hub (and the HTTP stack under it) is imported inside the functions that use
it: `checkpoint` reaches this module, and loading a local file should not pay for it.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from encodecmae_hear import files
from encodecmae_hear.errors import UserError, one_line
from encodecmae_hear.hub.names import V2_REPO, Published, v2_names

ENDPOINT_ENV = "HF_ENDPOINT"
OFFLINE_ENV = "HF_HUB_OFFLINE"
CACHE_ENV = "HF_HUB_CACHE"
HOME_ENV = "HF_HOME"
LOCK_NAME = "encodecmae_hear.lock.json"
PROBE_TIMEOUT_S = 3.0  # one connection attempt before a download, instead of minutes of retries
_TRUE = {"1", "on", "yes", "true"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


class HubError(UserError):
    """A published model that cannot be had or cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Fetched:
    path: Path      # the model file, in the hub cache
    record: dict    # repo, file, commit, sha256, size, endpoint: what provenance keeps


def endpoint() -> str:
    chosen = os.environ.get(ENDPOINT_ENV, "").strip()
    if not chosen:
        from huggingface_hub import constants
        chosen = constants.ENDPOINT
    return chosen.rstrip("/")


def offline() -> bool:
    """HF_HUB_OFFLINE now, or when huggingface_hub was imported (it reads it only then)."""
    constants = sys.modules.get("huggingface_hub.constants")
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE or \
        bool(getattr(constants, "HF_HUB_OFFLINE", False))


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV, "").strip():
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get(HOME_ENV, "").strip():
        return Path(os.environ[HOME_ENV]).expanduser() / "hub"
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo: str) -> Path:
    return cache_dir() / f"models--{repo.replace('/', '--')}"


def lock_path(repo: str) -> Path:
    return repo_folder(repo) / LOCK_NAME


def read_lock(repo: str) -> dict:
    path = lock_path(repo)
    if not path.is_file():
        return {}
    try:
        lock = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HubError(f"{path}: unreadable pin file ({err}); delete it to fetch and pin again") from None
    if not isinstance(lock, dict):
        raise HubError(f"{path}: not a pin file (expected a JSON object); delete it to pin again")
    return lock


def write_lock(repo: str, lock: dict) -> None:
    files.write_json(lock_path(repo), lock, indent=1, sort_keys=True)


def fetch(published: Published, revision: str | None = None) -> Fetched:
    """The local path of a published model's file (and its companions beside it), from
    the cache when it is there, else downloaded; checked and pinned (module docstring)."""
    lock = read_lock(published.repo)
    pin = lock.get(published.filename)
    wanted = revision or (pin["commit"] if pin else "main")
    paths = _cached(published, wanted)
    # a branch or tag asked for by name is asked of the hub (it may have moved), when it answers
    fresh = paths is None or (revision is not None and not _GIT_SHA1.fullmatch(revision)
                              and not offline() and unreachable(endpoint()) is None)
    if fresh:
        _check_reachable(published)
        paths = _download(published, wanted)
    for path in paths:
        _check_etag(path, published, evict=fresh)
    sha256 = files.sha256_of(paths[0])
    if pin and revision is None and sha256 != pin["sha256"]:
        if fresh:
            _evict(paths[0])
        raise HubError(
            f"{published.name}: {published.repo}/{published.filename} has sha256 {sha256[:16]}... at "
            f"commit {_commit_of(paths[0], published.repo)[:12]}, not the {pin['sha256'][:16]}... pinned "
            f"when it was first fetched (commit {pin['commit'][:12]}); to accept the new file, ask for "
            f"it by revision (revision=..., --revision ...)")
    record = {"repo": published.repo, "file": published.filename,
              "commit": _commit_of(paths[0], published.repo), "sha256": sha256,
              "size": Path(paths[0]).stat().st_size, "endpoint": endpoint()}
    if not pin or any(pin.get(k) != v for k, v in record.items() if k != "endpoint"):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        write_lock(published.repo, {**lock, published.filename: {**record, "fetched_utc": stamp}})
    return Fetched(Path(paths[0]), record)


def _cached(published: Published, revision: str) -> list[str] | None:
    """The cached paths of all the files at `revision`, or None unless every one is there."""
    from huggingface_hub import try_to_load_from_cache
    paths = [try_to_load_from_cache(published.repo, name, cache_dir=cache_dir(), revision=revision)
             for name in published.files]
    return paths if all(isinstance(p, str) for p in paths) else None


def by_hand(published: Published) -> str:
    urls = ", ".join(f"{endpoint()}/{published.repo}/resolve/main/{name}" for name in published.files)
    return f"download {urls} by hand and pass the path of {published.filename} instead of the name"


def _check_reachable(published: Published) -> None:
    """Fails at once, in one line, when nothing can be downloaded."""
    where = f"{published.name} ({published.repo}/{published.filename}) is not in the local cache {cache_dir()}"
    if offline():
        raise HubError(f"{where} and downloads are off ({OFFLINE_ENV}=1): {by_hand(published)}")
    failure = unreachable(endpoint())
    if failure:
        raise HubError(f"{where} and the hub at {endpoint()} cannot be reached ({failure}): "
                       f"{by_hand(published)}")


def unreachable(url: str) -> str | None:
    """Why a server cannot be reached (one connection, PROBE_TIMEOUT_S), or None if it can."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        return str(err) or type(err).__name__
    return None


def _download(published: Published, revision: str) -> list[str]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def one(name: str, rev: str) -> str:
        return hf_hub_download(published.repo, name, revision=rev, cache_dir=cache_dir(),
                               endpoint=endpoint())

    try:
        first = one(published.filename, revision)
        commit = _commit_of(first, published.repo)  # companions come from the same commit
        return [first, *(one(name, commit) for name in published.files[1:])]
    except RepositoryNotFoundError:
        raise HubError(f"{published.name}: the hub at {endpoint()} has no repository "
                       f"{published.repo}") from None
    except RevisionNotFoundError:
        raise HubError(f"{published.name}: {published.repo} has no revision {revision!r}"
                       f"{' (the commit it was pinned to)' if revision != 'main' else ''}; "
                       f"ask for revision='main' to fetch the current file") from None
    except LocalEntryNotFoundError:  # offline since huggingface_hub's import, or no connection
        raise HubError(f"{published.name} ({published.repo}/{published.filename}) is not in the local "
                       f"cache {cache_dir()} and huggingface_hub cannot download: "
                       f"{by_hand(published)}") from None
    except EntryNotFoundError:
        names = listed_names(published.repo) if published.repo == V2_REPO else None
        listing = f"; the names there: {', '.join(names)}" if names else ""
        raise HubError(f"no published model {published.name!r}: {published.repo} has no file "
                       f"{published.filename}{listing}") from None
    except (HfHubHTTPError, OSError, Exception) as err:  # the HTTP stack's own errors too: cut or refused
        _drop_incomplete(published.repo)
        raise HubError(f"{published.name}: download from {endpoint()} failed, nothing kept: "
                       f"{type(err).__name__}: {one_line(err, 300)}") from None


def listed_names(repo: str = V2_REPO) -> list[str] | None:
    """The model names the hub lists in a repository (recursively), or None offline or on
    any failure to list."""
    if offline() or unreachable(endpoint()):
        return None
    try:
        from huggingface_hub import HfApi
        return v2_names(HfApi(endpoint=endpoint()).list_repo_files(repo))
    except Exception:  # a listing only decorates messages and `models`: never fail on it
        return None


def listed_files(repo: str = V2_REPO) -> list[tuple[str, int | None]] | None:
    """(path, size) of the files the hub lists in a repository, or None when it can't."""
    if offline() or unreachable(endpoint()):
        return None
    try:
        from huggingface_hub import HfApi
        entries = HfApi(endpoint=endpoint()).list_repo_tree(repo, recursive=True)
        return [(e.path, getattr(e, "size", None)) for e in entries if hasattr(e, "size")]
    except Exception:  # as above: an offline or failing listing just lists nothing
        return None


def _commit_of(path: str | os.PathLike, repo: str) -> str:
    """The commit a cached file belongs to: snapshots/<commit>/... in the repo's folder."""
    return Path(path).relative_to(repo_folder(repo) / "snapshots").parts[0]


def _check_etag(path: str, published: Published, evict: bool) -> None:
    """The cache names a file's blob by the ETag the hub sent: the sha256 of an LFS file,
    the git blob id of a small one. Content that does not match it is refused."""
    etag = Path(os.path.realpath(path)).name
    data_hash = None
    if _SHA256.fullmatch(etag):
        data_hash = files.sha256_of(path)
    elif _GIT_SHA1.fullmatch(etag):
        data_hash = git_blob_id(path)
    if data_hash is not None and data_hash != etag:
        if evict:
            _evict(path)
        raise HubError(
            f"{published.name}: {Path(path).name} {'as downloaded' if evict else 'in the cache'} "
            f"does not match the hub's checksum ({data_hash[:16]}... instead of {etag[:16]}...): "
            f"{'it was removed from the cache; try again' if evict else f'delete {path} and fetch again'}")


def git_blob_id(path: str | os.PathLike) -> str:
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _evict(path: str) -> None:
    blob = Path(os.path.realpath(path))
    Path(path).unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _drop_incomplete(repo: str) -> None:
    for part in (repo_folder(repo) / "blobs").glob("*.incomplete"):
        part.unlink(missing_ok=True)


def pinned() -> list[dict]:
    """Every pinned file in the cache, from the lock files: records with the repo's name."""
    out = []
    for lock in sorted(cache_dir().glob(f"models--*/{LOCK_NAME}")):
        try:
            entries = json.loads(lock.read_text())
        except (OSError, ValueError):
            continue
        out += [entry for entry in entries.values() if isinstance(entry, dict)]
    return out
