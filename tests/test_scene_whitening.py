"""Scene whitening: measured on corpus clips, stored with the embedding statistics,
applied by get_scene_embeddings for the layer option it was measured on."""
import pytest
import torch

from encodecmae_hear.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from encodecmae_hear.cli import main
from encodecmae_hear.files import sha256_of
from encodecmae_hear.hear import get_scene_embeddings, get_timestamp_embeddings, load_model
from encodecmae_hear.train.embedding_stats import measure
from encodecmae_hear.train.scene_whitening import measure_scene_whitening
from tests.conftest import tone_mix
from tests.test_embedding_stats import crops_of
from tests.train_helpers import write_corpus, write_manifest

LAYER = "input+concat"


@pytest.fixture(scope="module")
def whitened(tmp_path_factory, tiny_mel):
    """(checkpoint path, the 24 kHz clips the whitening was measured on)."""
    stats = measure(tiny_mel, crops_of([4.0, 3.0, 2.0]))
    stats = {"mean": stats["mean"], "std": stats["std"]}
    clips = [tone_mix(1.0, 24000, seed=100 + i)[0] for i in range(12)]
    whitening = measure_scene_whitening(tiny_mel, stats, LAYER, clips, dims=6, batch=5)
    path = tmp_path_factory.mktemp("whiten") / "tiny-whitened.pt"
    save_checkpoint(path, tiny_mel, provenance={"hear_layer": {"layer": LAYER}},
                    embedding_stats={**stats, **whitening})
    return path, clips


def scenes_of(clips, model):
    from encodecmae_hear.audio import resample
    return get_scene_embeddings(resample(torch.stack(clips), 24000, model.sample_rate), model)


def test_whitened_scenes_of_the_measuring_clips_have_unit_covariance(whitened):
    path, clips = whitened
    model = load_model(str(path), whiten_scene=True)
    assert model.whiten_scene and model.scene_embedding_size == 6
    assert model.timestamp_embedding_size == 64 * (model.mae.num_layers + 1)  # frames untouched
    scenes = scenes_of(clips, model).double()
    assert scenes.shape == (12, 6)
    torch.testing.assert_close(scenes.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(scenes.T), torch.eye(6, dtype=torch.float64), atol=1e-3, rtol=0)


def test_whitening_is_the_stored_projection_of_the_plain_scene_mean(whitened):
    path, _ = whitened
    audio = tone_mix(2.7, 48000, seed=5, n=2)
    plain = load_model(str(path))  # whitening is asked for, never on by default
    assert not plain.whiten_scene and plain.scene_embedding_size == plain.timestamp_embedding_size
    mean = get_scene_embeddings(audio, plain)
    torch.testing.assert_close(mean, get_timestamp_embeddings(audio, plain)[0].mean(1), atol=1e-5, rtol=1e-5)
    whitened_model = load_model(str(path), whiten_scene=True)
    torch.testing.assert_close(get_timestamp_embeddings(audio, whitened_model)[0],
                               get_timestamp_embeddings(audio, plain)[0], atol=0, rtol=0)
    stats = read_checkpoint(path)["embedding_stats"]
    expected = (mean - stats["scene_mean"]) @ stats["scene_projection"].T
    torch.testing.assert_close(get_scene_embeddings(audio, whitened_model), expected, atol=1e-4, rtol=1e-4)


def test_whiten_power_scales_each_axis_by_a_power_of_its_std(whitened):
    path, clips = whitened
    full = scenes_of(clips, load_model(str(path), whiten_scene=True)).double()
    stats = read_checkpoint(path)["embedding_stats"]
    std = 1 / stats["scene_projection"].double().norm(dim=1)  # each row is axis / std
    for power in (0.0, 0.5):
        partial = scenes_of(clips, load_model(str(path), whiten_scene=True, whiten_power=power)).double()
        torch.testing.assert_close(partial, full * std ** (1 - power), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(partial.std(0), std ** (1 - power), atol=1e-4, rtol=1e-3)
    with pytest.raises(ValueError, match=r"whiten_power must be in \[0, 1\]"):
        load_model(str(path), whiten_scene=True, whiten_power=1.5)
    with pytest.raises(ValueError, match="acts only with whiten_scene"):
        load_model(str(path), whiten_power=0.5)


def test_concat_gives_the_plain_scene_mean_then_the_whitened_one(whitened):
    path, clips = whitened
    both = load_model(str(path), whiten_scene="concat", whiten_power=0.5)
    assert both.scene_embedding_size == 64 * (both.mae.num_layers + 1) + 6
    joined = scenes_of(clips, both)
    torch.testing.assert_close(joined[:, :-6], scenes_of(clips, load_model(str(path))), atol=1e-5, rtol=1e-5)
    partial = scenes_of(clips, load_model(str(path), whiten_scene=True, whiten_power=0.5))
    torch.testing.assert_close(joined[:, -6:], partial, atol=1e-5, rtol=1e-5)


def test_other_layers_and_raw_embeddings_are_not_whitened(whitened):
    path, _ = whitened
    with pytest.raises(ValueError, match="no scene whitening.*--scene-dims"):
        load_model(str(path), layer="last", whiten_scene=True)
    with pytest.raises(ValueError, match="no scene whitening"):
        load_model(str(path), standardise=False, whiten_scene=True)
    with pytest.raises(ValueError, match="whiten_scene must be true, false or"):
        load_model(str(path), whiten_scene="yes")


def test_broken_or_partial_whitening_is_refused(whitened, tmp_path):
    path, _ = whitened
    payload = torch.load(path, weights_only=True)
    stats = payload["embedding_stats"]
    bad = tmp_path / "bad.pt"
    cases = [({**stats, "scene_projection": stats["scene_projection"][:, :-64]}, r"projection \(K, E\)"),
             ({k: v for k, v in stats.items() if k != "scene_mean"}, "needs all of"),
             ({**stats, "scene_mean": stats["scene_mean"] / 0}, "non-finite"),
             ({**stats, "whitening": stats["scene_mean"]}, "unknown keys")]
    for broken, message in cases:
        torch.save({**payload, "embedding_stats": broken}, bad)
        with pytest.raises(CheckpointError, match=message):
            load_model(str(bad))


def test_cli_measures_whitening_for_the_recorded_layer(tmp_path, tiny_mel):
    manifest = write_manifest(tmp_path / "m.jsonl", write_corpus(tmp_path / "audio"))
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_mel, provenance={"hear_layer": {"layer": LAYER}})
    before = sha256_of(path)
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--crops", "4",
                 "--scene-dims", "3", "--scene-crops", "6"]) == 0
    record = read_checkpoint(path)["provenance"]["embedding_stats"]
    assert record["input_sha256"] == record["scene_whitening"]["input_sha256"] == before
    assert record["scene_whitening"]["layer"] == LAYER and record["scene_whitening"]["dims"] == 3 and 2 <= record["scene_whitening"]["crops"] <= 6
    model = load_model(str(path), whiten_scene=True)
    assert model.whiten_scene and model.scene_embedding_size == 3
    assert get_scene_embeddings(tone_mix(1.3, 48000, seed=2), model).shape == (1, 3)
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--scene-dims", "-1"]) == 2


def test_scene_only_keeps_the_frame_statistics_it_finds(tmp_path, tiny_mel):
    manifest = write_manifest(tmp_path / "m.jsonl", write_corpus(tmp_path / "audio"))
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_mel, provenance={"hear_layer": {"layer": LAYER}})
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--scene-only", "--scene-dims", "3"]) == 2
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--crops", "4"]) == 0
    before = read_checkpoint(path)
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--scene-only"]) == 2  # no --scene-dims
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--scene-only", "--scene-dims", "3",
                 "--scene-crops", "6", "--seed", "4"]) == 0
    after = read_checkpoint(path)
    for key in ("mean", "std"):
        assert torch.equal(after["embedding_stats"][key], before["embedding_stats"][key])
    record = after["provenance"]["embedding_stats"]
    assert record["crops"] == 4 and record["seed"] == 0  # the frame statistics' own record
    assert record["scene_whitening"]["seed"] == 4 and record["scene_whitening"]["dims"] == 3
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--scene-only", "--scene-dims", "2",
                 "--scene-crops", "6", "--scene-layer", "last"]) == 0
    assert load_model(str(path), layer="last", whiten_scene=True).scene_embedding_size == 2
    with pytest.raises(ValueError, match="no scene whitening"):  # measured for "last" only
        load_model(str(path), whiten_scene=True)
