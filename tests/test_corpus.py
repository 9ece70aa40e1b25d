"""Corpus build logic on fake package trees: no network, no apt, no synthesisers."""
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from encodecmae_hear.corpus import build as corpus
from encodecmae_hear.corpus import midi, pack, record
from encodecmae_hear.corpus import sources as cs

DEP5 = """Format: machine-readable copyright 1.0
Files: *
Copyright: 2020 Someone
License: CC-BY-SA-3.0

Files: debian/*
License: GPL-2+
 text of the licence

Files: music/*
License: CC-BY-SA-3.0
"""


def tone(seconds, sr, channels=1, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def fake_package(cache, name, version="1.0-1", copyright_text=DEP5):
    """An extracted package as fetch_package leaves it (.done marks it finished)."""
    root = cache / "pkgs" / name
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "copyright").write_text(copyright_text)
    (root / ".done").write_text(version + "\n")
    return root


@pytest.fixture
def tree(tmp_path):
    cache = tmp_path / "cache"
    game = fake_package(cache, "game-data", "2.5-3")
    sounds, music = game / "usr/share/games/x/sounds", game / "usr/share/games/x/music"
    sounds.mkdir(parents=True), music.mkdir(parents=True)
    sf.write(sounds / "boom.wav", tone(1.0, 44100, channels=2), 44100)
    sf.write(sounds / "tick.wav", tone(0.1, 44100), 44100)            # too short: left out
    (sounds / "broken.ogg").write_bytes(b"not audio at all")           # fails, not fatal
    sf.write(sounds / "empty.wav", np.zeros(0, np.float32), 44100)   # empty: left out
    os.symlink(sounds / "boom.wav", sounds / "boom-alias.wav")         # alias: listed once
    sf.write(music / "song.ogg", tone(3.0, 48000, freq=220), 48000, format="OGG", subtype="VORBIS")
    sf.write(tmp_path / "inner.wav", tone(0.8, 22050), 22050)
    with zipfile.ZipFile(game / "usr/share/games/x/data.pk3", "w") as z:
        z.write(tmp_path / "inner.wav", "sound/inner.wav")
        z.writestr("maps/readme.txt", "not audio")
    voices = fake_package(cache, "voices-data", "0.1", "Some text.\nReleased under the GPL-3 licence.\n")
    (voices / "usr/share/voices/fr").mkdir(parents=True)
    sf.write(voices / "usr/share/voices/fr/bonjour.flac", tone(1.5, 16000), 16000)
    sources = (cs.PackageSource("game-data", "environment", rules=(cs.MUSIC_DIRS,)),
               cs.PackageSource("voices-data", "speech", role="heldout"))
    return tmp_path, cache, sources


def test_licences_and_rules():
    assert cs.licence_of(DEP5) == "CC-BY-SA-3.0, GPL-2+"
    assert cs.licence_of("License:\n From README: MIT licence") == "MIT"
    assert cs.licence_of("no words here").startswith("unknown")
    src = cs.PackageSource("p", "environment", rules=(cs.MUSIC_DIRS, ("/voices/", "speech"), ("/junk/", None)))
    assert [src.category_of(p) for p in ("/a/Music/x.ogg", "/voices/a.wav", "/junk/b.wav", "/c.wav")] == \
        ["music", "speech", None, "environment"]


def test_package_audio_lists_sorted_files_and_pk3_members(tree):
    _, cache, _ = tree
    rels = [rel for rel, _ in corpus.package_audio(cache / "pkgs" / "game-data")]
    assert rels == sorted(rels)
    assert "usr/share/games/x/data.pk3/sound/inner.wav" in rels
    assert not any("alias" in r or r.endswith(".txt") for r in rels)


def test_convert_manifest_record_resume(tree):
    out, cache, sources = tree
    items, records = corpus.package_items(cache, sources, log=lambda m: None)
    assert {r["package"]: r["version"] for r in records} == {"game-data": "2.5-3", "voices-data": "0.1"}
    assert records[1]["licence"] == "GPL-3"
    rows = corpus.convert_all(items, out, log=lambda m: None)
    by_name = {os.path.basename(r["path"]): r for r in rows}
    assert set(by_name) == {"boom.ogg", "song.ogg", "inner.ogg", "bonjour.ogg"}
    assert by_name["song.ogg"]["category"] == "music" and by_name["boom.ogg"]["category"] == "environment"
    assert by_name["bonjour.ogg"]["split"] == "heldout"
    assert {by_name[n]["split"] for n in ("boom.ogg", "song.ogg", "inner.ogg")} <= {"train", "valid"}
    for r in rows:
        info = sf.info(str(out / r["path"]))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (24000, 1, "OGG", "OPUS")
    assert abs(by_name["song.ogg"]["duration"] - 3.0) < 0.05
    assert abs(by_name["inner.ogg"]["duration"] - 0.8) < 0.05
    assert not list(out.rglob("*.tmp"))
    # resumable and deterministic: nothing is rewritten, the rows are identical
    mtimes = {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in rows}
    again = corpus.convert_all(corpus.package_items(cache, sources, log=lambda m: None)[0], out, log=lambda m: None)
    assert again == rows
    assert mtimes == {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in rows}

    record.write_manifests(rows, out)
    listed = [json.loads(line) for line in open(out / "manifest.jsonl")]
    assert [r["path"] for r in listed] == [r["path"] for r in rows]
    assert all(not r["path"].startswith("/") for r in listed)
    train = [json.loads(line) for line in open(out / "pretrain.jsonl")]
    assert all(r["split"] == "train" and os.path.isabs(r["path"]) for r in train)
    record.write_record(rows, records, out, out / "rec" / "CORPUS.md", 12.0)
    text = (out / "rec" / "CORPUS.md").read_text()
    assert "| game-data | 2.5-3 | CC-BY-SA-3.0, GPL-2+ | pretrain |" in text
    assert "| voices-data | 0.1 | GPL-3 | heldout |" in text
    assert (out / "CORPUS.md").read_text() == text

    shards = pack.pack(rows, out, level=0.95, n_shards=2)
    names = [n for s in shards for n in tarfile.open(s).getnames()]
    assert sum(n.endswith(".ogg") for n in names) == sum(r["split"] == "train" for r in rows)
    assert sum(n.endswith(".json") for n in names) == sum(n.endswith(".ogg") for n in names)


def test_several_processes_write_the_same_corpus_as_one(tree, tmp_path):
    out, cache, sources = tree
    items = corpus.package_items(cache, sources, log=lambda m: None)[0]
    out2, threads = tmp_path / "out2", torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as the corpus command runs (float sums depend on threads)
        rows = corpus.convert_all(items, out, log=lambda m: None, jobs=1)
        torch.set_num_threads(2)  # the parent's thread pool is running when the workers fork
        torch.randn(512, 512) @ torch.randn(512, 512)
        rows2 = corpus.convert_all(items, out2, log=lambda m: None, jobs=2)
    finally:
        torch.set_num_threads(threads)
    assert rows2 == rows
    for r in rows:  # the same audio (the Ogg stream serial numbers are random)
        assert np.array_equal(sf.read(str(out2 / r["path"]))[0], sf.read(str(out / r["path"]))[0])
    shards = [tarfile.open(s) for s in pack.pack(rows2, out2, level=0.95, n_shards=2, jobs=2)]
    packed = [n for t in shards for n in t.getnames() if n.endswith(".ogg")]
    assert len(packed) == sum(r["split"] == "train" for r in rows) > 0
    assert len(list((out2 / "packed_audio").rglob("*.ogg"))) == len(packed)


def test_split_is_a_stable_hash():
    item = corpus.Item("audio/pretrain/p/a.ogg", "p", "music", "pretrain", lambda: None)
    assert corpus.split_of(item) == corpus.split_of(corpus.Item(item.out, "q", "speech", "pretrain", None))
    outs = [corpus.split_of(corpus.Item(f"audio/x/{i}.ogg", "p", "music", "pretrain", None)) for i in range(2000)]
    assert 0.005 < outs.count("valid") / len(outs) < 0.05
    assert corpus.split_of(corpus.Item("a", "p", "music", "heldout", None)) == "heldout"


def test_midi_file_and_pieces_are_deterministic():
    notes, programs = midi.procedural_piece(7, seconds=12)
    assert (notes, programs) == midi.procedural_piece(7, seconds=12)
    assert notes != midi.procedural_piece(8, seconds=12)[0]
    data = midi.midi_bytes(notes, programs)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")
    assert max(n[0] for n in notes) < 12


def test_speech_jobs_are_seeded_and_varied():
    jobs = cs.speech_jobs(30, seed=1)
    assert jobs == cs.speech_jobs(30, seed=1)
    assert len({j.voice for j in jobs}) > 15 and len({j.text for j in jobs}) == 30
    assert all(110 <= j.rate < 230 and 15 <= j.pitch < 85 for j in jobs)


def test_pack_selection_budget_and_balance():
    rows = [{"path": f"audio/{c}/{i}.ogg", "duration": 60.0 * (1 + i % 3), "category": c,
             "split": "valid" if i % 10 == 0 else "train"}
            for c, n in (("speech", 200), ("music", 200), ("environment", 30)) for i in range(n)]
    chosen = pack.pack_selection(rows, hours=3.0)
    assert chosen == pack.pack_selection(list(reversed(rows)), hours=3.0)
    hours = {c: sum(r["duration"] for r in chosen if r["category"] == c) / 3600 for c in cs.CATEGORIES}
    assert all(r["split"] == "train" for r in chosen)
    assert sum(hours.values()) <= 3.0 and hours["environment"] <= 1.0
    assert abs(hours["speech"] - hours["music"]) < 0.2 and hours["speech"] > 0.9
