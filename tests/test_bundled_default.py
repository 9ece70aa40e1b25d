"""The bundled default (checkpoints/default.pt) is a trained model, small, loaded in
float32, and its model card (checkpoints/README.md) states what its provenance records."""
from pathlib import Path

import pytest
import torch

from encodecmae_hear.checkpoint import read_checkpoint
from encodecmae_hear.hear import get_scene_embeddings, load_model
from encodecmae_hear.model.mae import EncodecMAE

BUNDLED = Path(__file__).resolve().parent.parent / "checkpoints" / "default.pt"
CARD = BUNDLED.with_name("README.md")


@pytest.fixture(scope="module")
def payload():
    return read_checkpoint(BUNDLED)


def test_bundled_default_is_a_finished_trained_run_stored_small(payload):
    assert BUNDLED.stat().st_size < 40 * 2**20
    prov = payload["provenance"]
    assert prov["trained"] is True and prov["objective"] in ("encodec", "kmeans")
    assert prov["steps"] == prov["train_config"]["steps"] > 0
    assert prov["git_commit"] not in ("", "unknown") and prov["corpus"]["data"]
    assert payload["training"] == {}
    weights = [t for t in payload["model"].values() if t.is_floating_point()]
    assert weights and all(t.dtype == torch.float16 for t in weights)


def test_load_model_gives_float32_weights_that_moved_away_from_their_initialisation(payload):
    hear_model = load_model()  # no argument: the bundled default
    trained = hear_model.mae
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    torch.manual_seed(payload["provenance"]["train_config"]["seed"] + 1)  # pretrain's init seed
    initial = EncodecMAE(trained.config)
    w, w0 = trained.encoder.layers[0].attention.wq.weight, initial.encoder.layers[0].attention.wq.weight
    assert (w - w0).abs().mean() > 0.1 * w0.abs().mean()
    scene = get_scene_embeddings(torch.randn(2, 48000) * 0.1, hear_model)
    assert scene.dtype == torch.float32 and torch.isfinite(scene).all()
    recommended = payload["provenance"]["hear_layer"]["layer"]
    assert hear_model.layer == recommended == "input+concat" and scene.shape == (2, 5 * 256)
    assert hear_model.standardise  # with the corpus statistics it carries


def test_bundled_statistics_were_measured_on_the_pretraining_corpus(payload):
    stats, prov = payload["embedding_stats"], payload["provenance"]
    assert stats["mean"].shape == stats["std"].shape == (4 + 1, 256)
    assert bool((stats["std"] > 1e-3).all())
    measured = prov["embedding_stats"]
    assert Path(measured["data"]).name == Path(prov["corpus"]["data"]).name == "packed"
    assert measured["crops"] == 256 and measured["frames"] > 100 * measured["crops"]


def test_model_card_matches_the_provenance(payload):
    card = CARD.read_text()
    prov, config = payload["provenance"], payload["config"]
    assert f"{prov['steps']:,} steps" in card
    assert prov["git_commit"][:12] in card
    assert f"`{prov['preset']}`" in card and f"`{config['frontend']}`" in card
    assert prov["targets"] in card and f"layer `{prov['hear_layer']['layer']}`" in card
