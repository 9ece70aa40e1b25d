"""Embedding statistics: measured on corpus crops, stored in the checkpoint, applied by load_model."""
import pytest
import torch

from encodecmae_hear.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from encodecmae_hear.cli import main
from encodecmae_hear.hear import HearModel, get_timestamp_embeddings, load_model
from encodecmae_hear.train.embedding_stats import measure
from tests.conftest import tone_mix
from tests.train_helpers import write_corpus, write_manifest


def crops_of(seconds_list, seed=0):
    """[(wav (96000,) at 24 kHz, valid samples)]: tone mixtures zero-padded to 4 s."""
    out = []
    for i, seconds in enumerate(seconds_list):
        wav = torch.zeros(96000)
        sound = tone_mix(seconds, 24000, seed=seed + i)[0]
        wav[:sound.shape[0]] = sound
        out.append((wav, sound.shape[0]))
    return out


def test_standardised_crops_have_zero_mean_and_unit_std_per_channel(tiny_mel):
    crops = crops_of([4.0, 2.5, 3.1, 4.0, 1.2])
    stats = measure(tiny_mel, crops, batch=2)
    assert stats["mean"].shape == stats["std"].shape == (tiny_mel.num_layers + 1, 64)
    wav = torch.stack([w for w, _ in crops])
    lengths = torch.tensor([n for _, n in crops])
    hear = HearModel(tiny_mel, layer="input+concat", embedding_stats=stats)
    with torch.no_grad():
        blocks = hear.standardised(tiny_mel.encode(wav, lengths, with_input=True))
    valid = ~tiny_mel.padding_mask(lengths, blocks[0].shape[1], len(crops), "cpu")
    assert stats["frames"] == int(valid.sum())
    for block in blocks:
        frames = block[valid].double()
        torch.testing.assert_close(frames.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-4, rtol=0)
        torch.testing.assert_close(frames.std(0), torch.ones(64, dtype=torch.float64), atol=1e-4, rtol=0)


def test_padding_does_not_enter_the_statistics(tiny_mel):
    crops = crops_of([2.0, 3.0])
    noisy = [(w.clone(), n) for w, n in crops]
    for wav, valid in noisy:  # past the reach of the last valid frame's analysis window
        wav[valid + 2048:] = 0.5 * torch.randn(96000 - valid - 2048)
    a, b = measure(tiny_mel, crops), measure(tiny_mel, noisy)
    torch.testing.assert_close(a["mean"], b["mean"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["std"], b["std"], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def stats_checkpoint(tmp_path_factory, tiny_mel):
    path = tmp_path_factory.mktemp("stats") / "tiny-stats.pt"
    stats = measure(tiny_mel, crops_of([4.0, 3.0, 2.0]))
    save_checkpoint(path, tiny_mel, provenance={"hear_layer": {"layer": "input+concat"}},
                    embedding_stats={"mean": stats["mean"], "std": stats["std"]})
    return path, stats


def test_load_model_standardises_each_block_with_the_stored_statistics(stats_checkpoint, tiny_checkpoint):
    path, stats = stats_checkpoint
    audio = tone_mix(2.3, 48000, seed=3)
    standard = load_model(str(path), layer="last")
    raw = load_model(str(path), layer="last", standardise=False)
    assert standard.standardise and not raw.standardise
    last = standard.mae.num_layers  # row of the last layer (row 0: encoder input)
    expected = (get_timestamp_embeddings(audio, raw)[0] - stats["mean"][last]) / stats["std"][last]
    torch.testing.assert_close(get_timestamp_embeddings(audio, standard)[0], expected, atol=1e-5, rtol=1e-5)
    joined = get_timestamp_embeddings(audio, load_model(str(path)))[0]  # input+concat, recorded
    assert joined.shape[-1] == 64 * (standard.mae.num_layers + 1)
    torch.testing.assert_close(joined[..., -64:], expected, atol=1e-5, rtol=1e-5)
    assert not load_model(str(tiny_checkpoint)).standardise
    with pytest.raises(ValueError, match="no embedding statistics"):
        load_model(str(tiny_checkpoint), standardise=True)
    with pytest.raises(ValueError, match="standardise must be"):
        load_model(str(path), standardise="yes")


def test_statistics_of_the_wrong_shape_or_a_zero_std_are_refused(stats_checkpoint, tmp_path):
    path, stats = stats_checkpoint
    payload = torch.load(path, weights_only=True)
    bad = tmp_path / "bad.pt"
    torch.save({**payload, "embedding_stats": {"mean": stats["mean"][1:], "std": stats["std"]}}, bad)
    with pytest.raises(CheckpointError, match=r"embedding_stats\['mean'\].*\(3, 64\)"):
        load_model(str(bad))
    torch.save({**payload, "embedding_stats": {"mean": stats["mean"], "std": stats["std"] * 0}}, bad)
    with pytest.raises(CheckpointError, match="non-positive std"):
        load_model(str(bad))
    torch.save({**payload, "embedding_stats": {"mean": stats["mean"], "std": stats["std"] / 0}}, bad)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model(str(bad))


def test_a_channel_constant_on_the_corpus_is_not_blown_up():
    class ConstantChannel(torch.nn.Module):  # two blocks: channel 0 never varies
        def encode(self, wav, lengths, with_input=True):
            x = wav.view(wav.shape[0], -1, 4)[:, :, :3].clone()
            x[..., 0] = 2.0
            return [x, x * 3]

        def padding_mask(self, lengths, frames, batch, device):
            return torch.zeros(batch, frames, dtype=torch.bool)

        def eval(self):
            return self

    g = torch.Generator().manual_seed(0)
    crops = [(torch.randn(400, generator=g), 400) for _ in range(3)]
    stats = measure(ConstantChannel(), crops)
    torch.testing.assert_close(stats["mean"][:, 0], torch.tensor([2.0, 6.0]))
    typical = stats["std"][:, 1:].median(dim=1).values
    torch.testing.assert_close(stats["std"][:, 0], 0.01 * typical, rtol=0.2, atol=0)


def test_version_1_files_are_read_without_statistics(tiny_checkpoint, tmp_path):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    old = {k: v for k, v in payload.items() if k != "embedding_stats"}
    path = tmp_path / "v1.pt"
    torch.save({**old, "version": 1}, path)
    read = read_checkpoint(path)
    assert read["version"] == 2 and read["embedding_stats"] is None
    assert not load_model(str(path)).standardise


def test_cli_adds_statistics_in_place_and_records_where_they_came_from(tiny_checkpoint, tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.jsonl", write_corpus(tmp_path / "audio"))
    path = tmp_path / "model.pt"
    path.write_bytes(tiny_checkpoint.read_bytes())
    assert main(["embedding-stats", str(path), "--data", str(manifest), "--crops", "6"]) == 0
    payload = read_checkpoint(path)
    assert payload["embedding_stats"]["mean"].shape == (3, 64)
    record = payload["provenance"]["embedding_stats"]
    assert record["crops"] == 6 and record["data"] == str(manifest) and record["frames"] > 6
    assert load_model(str(path)).standardise
    assert main(["embedding-stats", str(tmp_path / "absent.pt"), "--data", str(manifest)]) == 2
    assert "not found" in capsys.readouterr().err
