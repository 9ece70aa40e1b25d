"""The validation suite (valid-tasks): pitch class by unseen instruments, spoken
language of other languages and spoken words of unseen speakers, never a clip or class
of the proof suite.

As in test_corpus_heldout, fluidsynth is replaced by a tone generator (a sine at each
note's pitch) and the corpus is faked, so the tests need neither apt packages nor a
soundfont."""
import csv
import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf

from encodecmae_hear.corpus import flite
from encodecmae_hear.corpus import heldout_tasks as ht
from encodecmae_hear.corpus import valid_tasks as vt
from encodecmae_hear.corpus.sources import SOUNDFONTS
from encodecmae_hear.errors import UserError
from encodecmae_hear.evaluate.suites import load_suite, load_task
from tests.test_corpus_heldout import class_counts, fake_render

FOLDS = ["fold00", "fold01", "fold02", "fold03", "fold04"]
NAMES = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]


def targets(task):
    """{(split, file): label} over the task's splits."""
    meta = json.loads((task / "task_metadata.json").read_text())
    return {(split, name): label for split in meta["splits"]
            for name, [label] in json.loads((task / f"{split}.json").read_text()).items()}


def check_scene_task(task, seconds):
    meta = json.loads((task / "task_metadata.json").read_text())
    assert (meta["task_name"], meta["version"], meta["split_mode"], meta["splits"]) == (
        task.name, "valid-1", "presplit_kfold", FOLDS)
    assert (meta["embedding_type"], meta["prediction_type"], meta["sample_duration"]) == (
        "scene", "multiclass", seconds)
    config = load_task(task.name)  # eval_configs/ scores the folder the builder writes
    assert (config.folder, config.metric, config.split_mode, config.folds) == (
        task.name, meta["evaluation"][0], "presplit_kfold", 5)
    assert config in load_suite("valid") and config not in load_suite("proof")
    with open(task / "labelvocabulary.csv") as f:
        vocab = [row["label"] for row in csv.DictReader(f)]
    found = targets(task)
    assert set(found.values()) == set(vocab)
    for split, name in found:
        for rate in (48000, 16000):
            info = sf.info(str(task / str(rate) / split / name))
            assert (info.samplerate, info.channels, info.frames) == (rate, 1, round(seconds * rate))
    return found, vocab


@pytest.fixture(scope="module")
def pitch_task(tmp_path_factory):
    """The full task (built once for the module) and the programs of each render call."""
    calls = []

    def render(notes, programs, soundfont, sample_rate=24000, gain=0.5):
        calls.append(programs)
        return fake_render(notes, programs, soundfont, sample_rate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vt.midi, "render", render)
        out = tmp_path_factory.mktemp("valid")
        return vt.pitch_class_task(out / "sf.sf3", out, seed=0, sr=16000), calls


def peak_pitch_class(audio, sr):
    freq = np.argmax(np.abs(np.fft.rfft(audio))) * sr / len(audio)
    return NAMES[round(69 + 12 * np.log2(freq / 440)) % 12]


def test_pitch_class_task_layout_balance_and_instrument_folds(pitch_task):
    task, calls = pitch_task
    found, vocab = check_scene_task(task, 1.0)
    assert vocab == sorted(NAMES) and len(found) == 180
    assert len(calls) == 1 and 9 not in calls[0]  # one fluidsynth run, no drum channel
    assert sorted(calls[0].values()) == [0, 6, 11, 19, 24, 33, 40, 42, 52, 56, 65, 71, 73, 80, 104]
    instruments = {}
    for (split, name), label in found.items():
        pc, instrument, pitch = name[:-4].split("-")
        assert pc == label and 48 <= int(pitch[1:]) <= 83  # octaves 3-5, C4 = 60
        instruments.setdefault(instrument, []).append((split, label))
    assert len(instruments) == 15
    for played in instruments.values():  # each instrument: every pitch class, one fold
        assert sorted(label for _, label in played) == sorted(NAMES)
        assert len({split for split, _ in played}) == 1
    for split in FOLDS:
        assert len({i for i, played in instruments.items() if played[0][0] == split}) == 3
    assert class_counts(task, folds=True) == {name: [3] * 5 for name in NAMES}


def test_pitch_class_of_each_clip_is_its_label(pitch_task):
    task, _ = pitch_task
    for (split, name), label in targets(task).items():
        for rate in (16000, 48000):
            audio, sr = sf.read(str(task / str(rate) / split / name))
            assert peak_pitch_class(audio, sr) == label, (name, rate)
            assert np.abs(audio[:int(0.04 * sr)]).max() < 1e-3  # silent before the onset


def test_pitch_class_task_is_deterministic_and_seeded(monkeypatch, tmp_path):
    monkeypatch.setattr(vt.midi, "render", fake_render)
    task, again = (vt.pitch_class_task(tmp_path / "sf.sf3", tmp_path / out, seed=0, sr=16000,
                                       programs=vt.PITCH_PROGRAMS[:5]) for out in "ab")
    files = sorted(p.relative_to(task) for p in task.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((task / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert vt.instrument_folds(15, seed=1) != vt.instrument_folds(15, seed=0)
    assert sorted(vt.instrument_folds(15, seed=1)) == sorted(FOLDS * 3)


def test_instrument_task_labels_the_same_notes_by_instrument_with_pitch_class_folds(pitch_task, monkeypatch,
                                                                                 tmp_path):
    monkeypatch.setattr(vt.midi, "render", fake_render)
    pitch, _ = pitch_task
    task = vt.instrument_task(tmp_path / "sf.sf3", tmp_path, seed=0, sr=16000)
    found, vocab = check_scene_task(task, 1.0)
    assert len(found) == 180 and len(vocab) == 15
    pitch_folds = {}
    for (split, name), label in found.items():
        pc, instrument, _ = name[:-4].split("-")
        assert label == instrument
        pitch_folds.setdefault(pc, set()).add(split)
    assert all(len(splits) == 1 for splits in pitch_folds.values())  # pitch-class-disjoint folds
    assert sorted(len([pc for pc, s in pitch_folds.items() if split in s]) for split in FOLDS) == [2, 2, 2, 3, 3]
    assert class_counts(task) == {instrument: 12 for instrument in vocab}
    same = {name: (split, task / "16000" / split / name) for split, name in found}
    for (split, name) in list(targets(pitch))[:20]:  # the very notes of the pitch task
        assert sf.read(str(pitch / "16000" / split / name))[0].tolist() == sf.read(str(same[name][1]))[0].tolist()


def write_fake_corpus(corpus, words, sr=16000):
    """ktuberling-data words per language ({language: count}) in a faked manifest."""
    rows, rng = [], np.random.default_rng(0)
    for language, count in words.items():
        for k in range(count):
            path = f"audio/heldout/ktuberling-data/usr/share/ktuberling/sounds/{language}/w{k:02d}.wav"
            (corpus / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(corpus / path, 0.2 * rng.standard_normal(sr).astype(np.float32), sr)
            rows.append({"path": path, "duration": 1.0, "source": "ktuberling-data",
                         "category": "speech", "split": "heldout"})
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return corpus


def test_spoken_language_takes_the_languages_after_the_proofs(tmp_path):
    corpus = write_fake_corpus(tmp_path / "corpus", {"ca": 9, "fr": 8, "de": 7, "el": 6, "en": 6, "gl": 3})
    proof = ht.scene_from_corpus(corpus, tmp_path / "proof", "heldout_spoken_language",
                                 ht.language_of, 2, 5, 2.0, 0)
    valid = vt.spoken_language_task(corpus, tmp_path / "valid", 0, per_class=5, n_classes=3, skip=2)
    found, vocab = check_scene_task(valid, 2.0)
    assert vocab == ["de", "el", "en"] and set(class_counts(proof)) == {"ca", "fr"}
    assert not {name for _, name in found} & {name for _, name in targets(proof)}
    assert class_counts(valid, folds=True) == {lang: [1] * 5 for lang in vocab}
    again = vt.spoken_language_task(corpus, tmp_path / "again", 0, per_class=5, n_classes=3, skip=2)
    assert targets(again) == found
    with pytest.raises(UserError, match="too few words"):  # gl has 3 words, not 5
        vt.spoken_language_task(corpus, tmp_path / "short", 0, per_class=5, n_classes=4, skip=2)


def test_build_needs_a_built_corpus_and_flite(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="no manifest.jsonl"):
        vt.build_all(tmp_path, tmp_path / "out")
    write_fake_corpus(tmp_path, {"de": 1})
    with pytest.raises(UserError, match="soundfont not found"):
        vt.build_all(tmp_path, tmp_path / "out")
    package, rel = SOUNDFONTS["heldout"]
    (tmp_path / "cache" / "pkgs" / package / rel).parent.mkdir(parents=True)
    (tmp_path / "cache" / "pkgs" / package / rel).write_bytes(b"sf2")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(UserError, match="apt-get install flite"):  # before any task is built
        vt.build_all(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_valid_suite_shares_no_task_with_the_proof():
    valid = [t.folder for t in load_suite("valid")]
    assert valid == ["valid_pitch_class", "valid_instrument", "valid_spoken_language", "valid_spoken_words"]
    assert not set(valid) & {t.folder for t in load_suite("proof")}


def fake_flite(text, voice, stretch=1.0):
    """A tone per word and voice (kal at 8 kHz, as flite's kal), `stretch` long in seconds."""
    rate = 8000 if voice == "kal" else 16000
    t = np.arange(int(rate * stretch)) / rate
    freq = 200 + 40 * vt.WORDS.index(text) + 7 * flite.VOICES.index(voice)
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate


def test_spoken_words_folds_are_speaker_disjoint(tmp_path, monkeypatch):
    monkeypatch.setattr(flite, "render", fake_flite)
    task = vt.spoken_words_task(tmp_path)
    meta = json.loads((task / "task_metadata.json").read_text())
    folds = [f"fold{i:02d}" for i in range(4)]
    assert (meta["split_mode"], meta["splits"], meta["sample_duration"]) == ("presplit_kfold", folds, 1.5)
    config = load_task(task.name)
    assert (config.folder, config.folds, config.split_mode) == (task.name, 4, "presplit_kfold")
    assert config in load_suite("valid") and config not in load_suite("proof")
    found = targets(task)
    assert len(found) == 4 * 10 * 5
    for fold, voice in zip(folds, flite.VOICES):
        names = [name for split, name in found if split == fold]
        assert {name.split("-")[1] for name in names} == {voice}  # one speaker per fold
        assert sorted(found[(fold, n)] for n in names) == sorted(vt.WORDS * 5)
    for rate in (48000, 16000):
        audio, sr = sf.read(str(task / str(rate) / "fold00" / "seven-kal-x1.25.wav"))
        assert (sr, len(audio)) == (rate, int(1.5 * rate))
        # kal's 8 kHz tone of 1.25 s, resampled and peak-normalised to 0.5, then zeros
        assert abs(np.abs(audio[: int(1.2 * rate)]).max() - 0.5) < 0.01
        assert np.abs(audio[int(1.26 * rate):]).max() < 0.01


def test_flite_is_called_with_the_voice_and_rate(tmp_path, monkeypatch):
    """A stand-in `flite` on PATH records its arguments and writes a WAV where -o says."""
    script = tmp_path / "flite"
    script.write_text(f"#!{sys.executable}\n"
                      "import sys, json, numpy, soundfile\n"
                      "args = sys.argv[1:]\n"
                      "open(sys.argv[0] + '.args', 'w').write(json.dumps(args))\n"
                      "soundfile.write(args[args.index('-o') + 1], numpy.zeros((800, 2)), 16000)\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    audio, rate = flite.render("seven", "slt", 1.12)
    assert (audio.shape, audio.dtype, rate) == ((800,), np.float32, 16000)
    args = json.loads((tmp_path / "flite.args").read_text())
    assert args[:4] == ["-voice", "slt", "--setf", "duration_stretch=1.12"]
    assert args[4:6] == ["-t", "seven"]
    with pytest.raises(ValueError, match="voice must be one of"):
        flite.render("seven", "kal16")


def test_words_task_needs_flite(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="apt-get install flite"):
        flite.binary()
