"""The one folder walker (walk.py) and the non-blocking check of a file before it is opened:
links followed once and kept inside the given folders, special files skipped, names that
are not UTF-8 kept."""
import os
import time

import pytest

from encodecmae_hear import files, walk

EXT = (".wav", ".flac")


def test_walker_follows_a_link_once_and_stays_inside(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.wav").write_bytes(b"")
    os.symlink("../a", root / "a" / "again")       # a loop
    os.symlink(root / "a", root / "b")             # a second way in
    os.symlink(tmp_path, root / "a" / "up")        # out of the folder (and a loop)
    found = walk.find([root], EXT)
    assert found.files == [root / "a" / "x.wav"]
    kinds = sorted(reason.split(":")[0] for _, reason in found.skipped)
    assert kinds == sorted([walk.OUTSIDE, walk.LOOP, walk.LOOP])
    assert walk.find([root], EXT, outside=True).files == [root / "a" / "x.wav"]  # still once
    assert found.summary().startswith("skipped 3 entries while searching folders")


def test_walker_keeps_names_that_are_not_utf8_and_skips_special_files(tmp_path):
    raw = os.fsencode(tmp_path) + b"/\xff\xfe.wav"
    open(raw, "wb").close()
    os.mkfifo(tmp_path / "pipe.wav")
    found = walk.find([tmp_path], EXT)
    assert [os.fsencode(p) for p in found.files] == [raw]
    assert found.skipped == [(tmp_path / "pipe.wav", "not a regular file: a FIFO")]
    assert files.shown(found.files[0]).endswith("/\\xff\\xfe.wav")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    start = time.monotonic()
    with pytest.raises(files.NotRegularFile, match="a FIFO"):
        files.regular_file(tmp_path / "pipe.wav")
    assert time.monotonic() - start < 5
