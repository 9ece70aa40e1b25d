"""The bundled mobile models (checkpoints/mobile-*.pt, model cards in checkpoints/MOBILE.md):
what they are, where they came from, and that both HEAR modules find them by name."""
import pytest
import torch

import encodecmae_hear
from encodecmae_hear import files, mobile_hear
from encodecmae_hear.checkpoint import CHECKPOINT_DIR_ENV, load_checkpoint, read_checkpoint, resolve_checkpoint
from encodecmae_hear.paths import BUNDLED_CHECKPOINT, BUNDLED_DIR

BUNDLED_HEADS = {"mobile-student": "distill", "mobile-cbow": "cbow", "mobile-skipgram": "skipgram",
                 "mobile-temporalgap": "temporalgap"}
PRESETS = {"mobile-student": "mobile-tiny"}  # the others: mobile-quarter


@pytest.mark.parametrize("name, head", BUNDLED_HEADS.items())
def test_each_bundled_mobile_model_is_the_corpus_run_its_card_describes(name, head):
    model, payload = load_checkpoint(name, architecture="mobile")
    provenance = payload["provenance"]
    assert model.config.head == head
    assert provenance["trained"] and provenance["preset"] == PRESETS.get(name, "mobile-quarter")
    assert 0 < provenance["steps"] <= provenance["train_config"]["steps"]
    assert provenance["corpus"]["data"].rstrip("/").endswith("packed")
    assert all(p.dtype == torch.float16 for p in payload["model"].values() if p.is_floating_point())
    card = (BUNDLED_DIR / "MOBILE.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith(f"| `{name}.pt` |"))
    assert f"| {provenance['steps']:,} |" in row  # the card's steps are the file's


def test_the_bundled_student_is_mobile_hears_default_and_was_distilled_from_the_bundled_model():
    hear = mobile_hear.load_model()
    assert hear.provenance["objective"] == "distill"
    # distilled from default.pt before scene whitening was added to it (frames unchanged)
    teacher = read_checkpoint(BUNDLED_CHECKPOINT)["provenance"]["embedding_stats"]
    lineage = {files.sha256_of(BUNDLED_CHECKPOINT), teacher.get("scene_whitening", {}).get("input_sha256")}
    assert hear.provenance["distill"]["teacher_sha256"] in lineage
    audio = torch.randn(2, 16000) * 0.1
    embeddings, timestamps = mobile_hear.get_timestamp_embeddings(audio, hear)
    # its input block (log-mel and pitch salience), then the default's five 256-d blocks; 25 frames/s
    assert embeddings.shape == (2, 25, 76 + 5 * 256)
    block = hear.provenance["input_block"]
    assert hear.config.input_block == block["weight"] > 0
    assert (hear.config.input_block_pitch, hear.config.scene_std) == (block["pitch"], block["scene_std"])
    # statistics of pretraining audio (the corpus's manifest or its packed shards), never a task
    assert block["data"].rstrip("/").endswith(("packed", "pretrain.jsonl"))
    scene = mobile_hear.get_scene_embeddings(audio, hear)
    assert scene.shape == (2, hear.scene_embedding_size)
    torch.testing.assert_close(scene[:, :76 + 5 * 256], embeddings.mean(1))
    assert torch.isfinite(embeddings).all()
    assert torch.allclose(timestamps[0, :2], torch.tensor([20.0, 60.0]))


def test_the_encodecmae_module_refuses_a_mobile_model_and_names_the_right_module():
    with pytest.raises(ValueError, match="encodecmae_hear.mobile_hear"):
        encodecmae_hear.load_model("mobile-student")


def test_an_unknown_name_lists_the_bundled_models(monkeypatch, tmp_path):
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="bundled: .*mobile-student"):
        resolve_checkpoint("no-such-model")


def test_a_name_in_the_user_folder_wins_over_a_bundled_one(monkeypatch, tmp_path):
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(tmp_path))
    (tmp_path / "mobile-cbow.pt").write_bytes(b"")
    assert resolve_checkpoint("mobile-cbow") == tmp_path / "mobile-cbow.pt"


def test_every_bundled_mobile_model_has_a_model_card():
    card = (BUNDLED_DIR / "MOBILE.md").read_text()
    for name in BUNDLED_HEADS:
        assert f"`{name}.pt`" in card
    assert sorted(p.stem for p in BUNDLED_DIR.glob("mobile-*.pt")) == sorted(BUNDLED_HEADS)
