"""The bundled default (checkpoints/default.pt) is a trained model, small, loaded in
float32, and its model card (checkpoints/README.md) states what its provenance records."""
import dataclasses
from pathlib import Path

import pytest
import torch

from encodecmae_hear.checkpoint import read_checkpoint, save_checkpoint
from encodecmae_hear.cli import main
from encodecmae_hear.hear import get_scene_embeddings, load_model
from encodecmae_hear.model.config import ModelConfig, preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train import run as train_run
from tests.train_helpers import (
    one_thread,  # noqa: F401 (autouse fixture)
    tiny_args,
    write_corpus,
    write_manifest,
)

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


def pretrain_initial_state(payload: dict) -> dict:
    """The weights a pretraining run started from, rebuilt as `pretrain` builds them:
    under seed + 1 the preset's model with its own 8 x 1024 head (whose default init
    draws from the same random stream, so it must be built too), then, for k-means
    targets, the new head. Mel frontend only (an EnCodec frontend comes from elsewhere)."""
    prov, config = payload["provenance"], ModelConfig.from_dict(payload["config"])
    assert config.frontend == "mel256" and prov["objective"] in ("kmeans", "encodec")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(prov["train_config"]["seed"] + 1)
        model = EncodecMAE(preset(prov["preset"], config.frontend))
        if prov["objective"] == "kmeans":
            model.new_head(config.num_streams, config.num_tokens)
    assert model.config == config
    return model.state_dict()


def movement_from_init(trained: dict, initial: dict) -> dict[str, tuple[float, float]]:
    """Per weight matrix: (mean |w - w0| / mean |w0|, correlation of w with w0)."""
    out = {}
    for key, w0 in initial.items():
        if w0.ndim == 2:
            w = trained[key].float()
            moved = float((w - w0).abs().mean() / w0.abs().mean())
            out[key] = moved, float(torch.corrcoef(torch.stack([w.flatten(), w0.flatten()]))[0, 1])
    return out


def test_load_model_gives_float32_weights_that_moved_away_from_their_initialisation(payload):
    hear_model = load_model()  # no argument: the bundled default
    trained = hear_model.mae
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    stats = movement_from_init(trained.state_dict(), pretrain_initial_state(payload))
    assert len(stats) == 1 + 4 * 6 + 1 + 2 * 6 + 1  # every weight matrix (shared FFNs per layer)
    # Trained: every matrix moved (> 10 % of its init's size; an untrained model: 0) ...
    assert min(moved for moved, _ in stats.values()) > 0.1, stats
    # ... and from this very init: still correlated with it (an unrelated draw: ~0).
    assert min(corr for _, corr in stats.values()) > 0.5, stats
    scene = get_scene_embeddings(torch.randn(2, 48000) * 0.1, hear_model)
    assert scene.dtype == torch.float32 and torch.isfinite(scene).all()
    recommended = payload["provenance"]["hear_layer"]["layer"]
    assert hear_model.layer == recommended == "input+concat" and scene.shape == (2, 5 * 256)
    assert hear_model.standardise  # with the corpus statistics it carries


def test_initial_state_rebuilds_an_untrained_pretraining_checkpoint_bit_for_bit(tmp_path, monkeypatch):
    """`pretrain` itself builds a tiny mel-kmeans model; its step-0 checkpoint is what
    pretrain_initial_state rebuilds, to the bit, and it has not moved."""
    files = write_corpus(tmp_path / "audio", [(f"{i}.wav", 24000, 1.0, 1) for i in range(3)])
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    untrained = tmp_path / "untrained.pt"

    def save_instead_of_training(model, objective, source, cfg, *, provenance, **_):
        save_checkpoint(untrained, model, provenance={**provenance, "train_config": dataclasses.asdict(cfg)})
        return "SIGINT"

    monkeypatch.setattr(train_run, "train", save_instead_of_training)  # the loop, as train_and_release calls it
    with torch.random.fork_rng(devices=[]):
        assert main(["pretrain", *tiny_args(manifest, tmp_path / "run", 1, "--targets", "mel-kmeans",
                                            "--clusters", "8", "--kmeans-clips", "3", "--seed", "7")]) == 130
    payload = read_checkpoint(untrained)
    assert payload["config"]["num_tokens"] == 8 and payload["provenance"]["train_config"]["seed"] == 7
    rebuilt = pretrain_initial_state(payload)
    assert rebuilt.keys() == payload["model"].keys()
    assert all(torch.equal(rebuilt[k], payload["model"][k]) for k in rebuilt)
    stats = movement_from_init(payload["model"], rebuilt)
    assert max(moved for moved, _ in stats.values()) == 0  # the bundled test's "moved" fails here
    with torch.random.fork_rng(devices=[]):  # the old rebuild: the 1 x 8 head first, another draw
        torch.manual_seed(7 + 1)
        naive = EncodecMAE(ModelConfig.from_dict(payload["config"])).state_dict()
    assert min(moved for moved, _ in movement_from_init(payload["model"], naive).values()) > 0.5


def test_bundled_statistics_were_measured_on_the_pretraining_corpus(payload):
    stats, prov = payload["embedding_stats"], payload["provenance"]
    assert stats["mean"].shape == stats["std"].shape == (4 + 1, 256)
    assert bool((stats["std"] > 1e-3).all())
    measured = prov["embedding_stats"]
    assert Path(measured["data"]).name == Path(prov["corpus"]["data"]).name == "packed"
    assert measured["crops"] == 256 and measured["frames"] > 100 * measured["crops"]


def test_bundled_scene_whitening_is_opt_in_and_from_the_corpus(payload):
    whitening = payload["provenance"]["embedding_stats"]["scene_whitening"]
    assert Path(whitening["data"]).name == "packed" and whitening["crops"] > 2000
    assert whitening["layer"] == payload["provenance"]["hear_layer"]["layer"] == "input+concat"
    assert payload["embedding_stats"]["scene_projection"].shape == (whitening["dims"], 5 * 256)
    audio = torch.randn(2, 48000) * 0.1
    plain, whitened = load_model(), load_model(whiten_scene=True)
    assert not plain.whiten_scene and get_scene_embeddings(audio, plain).shape == (2, 5 * 256)
    assert get_scene_embeddings(audio, whitened).shape == (2, 512)


def test_model_card_matches_the_provenance(payload):
    card = CARD.read_text()
    prov, config = payload["provenance"], payload["config"]
    assert f"{prov['steps']:,} steps" in card
    assert prov["git_commit"][:12] in card
    assert f"`{prov['preset']}`" in card and f"`{config['frontend']}`" in card
    assert prov["targets"] in card and f"layer `{prov['hear_layer']['layer']}`" in card
