"""The official EnCodec 24 kHz weights, which make the paper's pretraining targets.

Where they come from, in order:
1. a file the user placed: `--encodec-weights FILE` or `$ENCODECMAE_ENCODEC_WEIGHTS`;
2. the torch hub cache (`$TORCH_HOME/hub/checkpoints/encodec_24khz-d7cc33bc.th`), where
   the `encodec` package's own loader keeps it;
3. a download, when the caller allows one: the `encodec` package's URL (or the mirror in
   `$ENCODECMAE_ENCODEC_URL`) into that same cache, checked as torch checks it.

torch checks the sha256 prefix in the file name (`d7cc33bc`) when it downloads, never
for a file already cached. Here every use of the cached file checks it again: the whole
file's sha256 must begin with that prefix and equal the digest recorded beside the file
(`NAME.sha256`) when it was first used; anything else is refused with a message.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch.hub
from encodec.model import ROOT_URL

from encodecmae_hear import files
from encodecmae_hear.errors import UserError, one_line
from encodecmae_hear.hub.store import OFFLINE_ENV, offline, unreachable
from encodecmae_hear.model.encodec import ENV_VAR, OFFICIAL_FILE

URL_ENV = "ENCODECMAE_ENCODEC_URL"  # a folder URL holding the file, instead of encodec's own


class EncodecWeightsError(UserError):
    pass


def hash_prefix(file_name: str) -> str:
    """torch hub's rule: NAME-<sha256 prefix>.EXT."""
    found = re.search(r"-([0-9a-f]{6,64})\.", file_name)
    if not found:
        raise ValueError(f"{file_name}: no sha256 prefix in the name")
    return found.group(1)


def cache_path(file_name: str = OFFICIAL_FILE) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def source_url(file_name: str = OFFICIAL_FILE) -> str:
    base = os.environ.get(URL_ENV, "").strip()
    if not base:
        base = ROOT_URL  # the URL encodec's own loader uses
    return base.rstrip("/") + "/" + file_name


def not_available(file_name: str, why: str) -> EncodecWeightsError:
    return EncodecWeightsError(
        f"the official EnCodec weights {file_name} are needed for the paper's targets and {why}; "
        f"either place the file (--encodec-weights FILE or ${ENV_VAR}; it is {source_url(file_name)}) "
        f"or train on --targets mel-kmeans (--targets encodec-untrained: an untrained EnCodec's codes)")


def check_cached(path: Path, file_name: str = OFFICIAL_FILE) -> str:
    """The sha256 of the cached file, after checking it against the name's prefix and the
    digest recorded at its first use (recorded now if there is none)."""
    digest = files.sha256_of(path)
    record = path.with_name(path.name + ".sha256")
    expected = record.read_text().strip() if record.is_file() else None
    if not digest.startswith(hash_prefix(file_name)) or (expected and digest != expected):
        raise EncodecWeightsError(
            f"{path}: sha256 {digest[:16]}... is not the official file's "
            f"({(expected or hash_prefix(file_name))[:16]}...); delete it and fetch it again")
    if expected is None:
        files.write_text(record, digest + "\n")
    return digest


def encodec_weights(given: str | os.PathLike | None = None, *, download: bool,
                    file_name: str = OFFICIAL_FILE) -> tuple[Path, str]:
    """-> (path, sha256) of the EnCodec weights, in the order of the module docstring.
    `download` allows step 3. Raises EncodecWeightsError, in one line, when none is had."""
    given = given or os.environ.get(ENV_VAR, "").strip() or None
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise EncodecWeightsError(f"EnCodec weights not found at {path} (expected the official "
                                      f"24 kHz file {file_name}, from --encodec-weights or ${ENV_VAR})")
        return path, files.sha256_of(path)
    cached = cache_path(file_name)
    if cached.is_file():
        return cached, check_cached(cached, file_name)
    if not download:
        raise not_available(file_name, f"are not in the cache {cached.parent}")
    if offline():
        raise not_available(file_name, f"downloads are off ({OFFLINE_ENV}=1)")
    url = source_url(file_name)
    failure = unreachable(url)
    if failure:
        raise not_available(file_name, f"{url} cannot be reached ({failure})")
    partial = files.temp_path(cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(partial), hash_prefix=hash_prefix(file_name), progress=True)
        os.replace(partial, cached)
    except (OSError, RuntimeError) as err:  # no network, a 404, or a hash that does not match
        raise not_available(file_name, f"could not be downloaded from {url} "
                                       f"({one_line(err, 200)})") from None
    finally:
        partial.unlink(missing_ok=True)
    return cached, check_cached(cached, file_name)
