"""Checkpoint format: round trips, fp16 storage, atomic writes, and clear refusals."""
import pickle

import pytest
import torch

from encodecmae_hear import load_model
from encodecmae_hear.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from tests.conftest import tone_mix


def _encode(model, wav):
    return model.encode(wav)[-1]


def test_round_trip_rebuilds_the_same_model(tiny_checkpoint, tiny_mel):
    model, payload = load_checkpoint(tiny_checkpoint)
    assert payload["provenance"]["notes"] == "test"
    assert model.config == tiny_mel.config
    wav = tone_mix(1.0, 24000)
    torch.testing.assert_close(_encode(model, wav), _encode(tiny_mel, wav), rtol=0, atol=0)
    # The shared FFN stays one module after loading.
    assert len({id(layer.ffn) for layer in model.encoder.layers}) == 1


def test_encodec_frontend_weights_are_stored(tmp_path, tiny_encodec):
    path = tmp_path / "ec.pt"
    save_checkpoint(path, tiny_encodec)
    model, _ = load_checkpoint(path)
    wav = tone_mix(1.0, 24000)
    torch.testing.assert_close(_encode(model, wav), _encode(tiny_encodec, wav), rtol=0, atol=0)


def test_half_storage_loads_as_float32(tmp_path, tiny_mel):
    path = tmp_path / "half.pt"
    save_checkpoint(path, tiny_mel, half=True)
    stored = torch.load(path, weights_only=True)["model"]
    assert stored["input_proj.weight"].dtype == torch.float16
    model, _ = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    wav = tone_mix(1.0, 24000)
    torch.testing.assert_close(_encode(model, wav), _encode(tiny_mel, wav), rtol=0.05, atol=0.05)
    full = tmp_path / "full.pt"
    save_checkpoint(full, tiny_mel)
    assert path.stat().st_size < 0.7 * full.stat().st_size  # shared FFN not duplicated


def test_load_model_reads_a_given_file(tiny_checkpoint):
    model = load_model(str(tiny_checkpoint))
    assert model.mae.config.dim == 64 and model.sample_rate == 48000


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(str(tmp_path / "nope.pt"))


def test_truncated_file(tmp_path, tiny_checkpoint):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cut.pt.*truncated or corrupt"):
        read_checkpoint(cut)


def test_garbage_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_checkpoint(junk)


class Payload:  # an arbitrary object: weights_only loading must refuse it
    pass


def test_code_carrying_file_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "encodecmae_hear", "obj": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused.*Python objects"):
        read_checkpoint(path)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="raw.pkl"):
        read_checkpoint(raw)


def test_foreign_and_official_files(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an encodecmae_hear checkpoint"):
        read_checkpoint(foreign)
    official = tmp_path / "official.pt"
    torch.save({"state_dict": {}, "config": "MODEL_DIM=768", "imports": ""}, official)
    with pytest.raises(CheckpointError, match="convert"):
        read_checkpoint(official)


def test_newer_version_and_mismatched_weights(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "version": 99}, newer)
    with pytest.raises(CheckpointError, match="version 99"):
        read_checkpoint(newer)
    extra = tmp_path / "extra.pt"
    torch.save({**payload, "model": {**payload["model"], "stray.weight": torch.zeros(2)}}, extra)
    with pytest.raises(CheckpointError, match="do not match.*stray.weight"):
        load_checkpoint(extra)
    missing = tmp_path / "missing.pt"
    state = dict(payload["model"])
    del state["head.weight"]
    torch.save({**payload, "model": state}, missing)
    with pytest.raises(CheckpointError, match="head.weight"):
        load_checkpoint(missing)


def test_a_crash_during_save_keeps_the_previous_file(tmp_path, tiny_mel, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, tiny_mel, provenance={"steps": 1})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_mel, provenance={"steps": 2})
    monkeypatch.undo()
    assert read_checkpoint(path)["provenance"]["steps"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
