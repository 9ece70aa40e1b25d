"""The mobile student's input block (model/mobile_input.py, `input-block`): chroma finds
the pitch class of a tone and the pitch salience its fundamental, the block is
standardised with corpus statistics and weighted, sits in front of the unchanged learnt
channels in HEAR and in ONNX, its std over time follows the scene mean where the config
asks, and a checkpoint's block must match its config."""
import math

import onnx  # the [mobile] extra, which `make install` installs
import pytest
import torch

from encodecmae_hear.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from encodecmae_hear.cli import main
from encodecmae_hear.mobile_hear import (MobileHear, OnnxFrames, get_scene_embeddings,
                                         get_timestamp_embeddings, load_model)
from encodecmae_hear.model.mobile import MEL_BINS, MobileModel
from encodecmae_hear.model.mobile_input import (CHROMA_BAND, MEL_CHANNELS, chroma_matrix, salience_basis,
                                                salience_matrix)
from encodecmae_hear.train.data import open_source
from encodecmae_hear.train.input_block import measure
from tests.conftest import tone_mix
from tests.test_mobile_hear import tiny_mobile  # noqa: F401 (fixture)
from tests.train_helpers import write_corpus, write_manifest

C4 = 261.6256


def harmonic_note(midi: int, seconds: float = 1.0, amplitudes=None) -> torch.Tensor:
    """Harmonics k = 1, 2, ... of MIDI note `midi` with the given amplitudes (1/k for 5 by default)."""
    amplitudes = amplitudes or [1 / k for k in range(1, 6)]
    t = torch.arange(int(16000 * seconds), dtype=torch.float64) / 16000
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wav = sum(a * torch.sin(2 * math.pi * k * f0 * t) for k, a in enumerate(amplitudes, 1) if k * f0 < 7500)
    return (0.2 * wav).float()[None]


def test_chroma_matrix_shares_each_bin_inside_the_band():
    weights = chroma_matrix(512, 16000)
    freqs = torch.arange(257) * 16000 / 512
    inside = (freqs >= CHROMA_BAND[0]) & (freqs <= CHROMA_BAND[1])
    torch.testing.assert_close(weights[inside].sum(1), torch.ones(int(inside.sum())))
    assert float(weights[~inside].abs().max()) == 0.0
    c5_bin = round(2 * C4 / (16000 / 512))  # the bin nearest C5 gives most to C
    assert int(weights[c5_bin].argmax()) == 0
    assert MEL_CHANNELS == MEL_BINS  # the block's width follows the frontend's


@pytest.mark.parametrize("midi", [55, 60, 64, 69, 71, 74, 78, 81])  # octaves 3-5, as the pitch tasks
def test_chroma_names_the_pitch_class_of_a_harmonic_note(tiny_mobile, midi):  # noqa: F811
    model = MobileModel(tiny_mobile.config.replace(input_block=1.0)).eval()
    chroma = model.input_block.chroma_frames(harmonic_note(midi))[0, 2:-2]
    assert int(chroma.mean(0).argmax()) == midi % 12


def test_salience_matrix_sums_each_candidates_harmonics_on_the_grid():
    basis, grid_points = salience_basis(16000)
    measured = basis.shape[0] // 2
    assert grid_points == 95 + 36 - 36 + 1  # candidates C2..B6 and their 8th harmonic's semitone
    assert measured == 107 - 36 + 1           # MIDI 36..107: B7 (3951 Hz) is the last under 4 kHz
    weights = salience_matrix(grid_points, measured)
    # grid point 24 is C4: the 1st harmonic of C4, the 2nd of C3, the 4th of C2, the 3rd of F2
    expected = torch.zeros(12)
    expected[0], expected[5] = 1 + 0.8 + 0.8 ** 3, 0.8 ** 2
    torch.testing.assert_close(weights[24], expected)
    assert torch.equal(weights[0], torch.eye(12)[0])  # C2 is a harmonic of nothing lower


@pytest.mark.parametrize("midi, amplitudes", [
    (57, [1, 0.5, 1.5, 0.3]),        # A3 with a loud 3rd harmonic: chroma hears its fifth, E
    (48, [1, 0.5, 1.5, 0.3]),
    (40, [0, 1, 1, 1, 1, 1]),        # E2 without its fundamental
])
def test_salience_names_the_fundamental_where_chroma_names_a_harmonic(tiny_mobile, midi, amplitudes):  # noqa: F811
    model = MobileModel(tiny_mobile.config.replace(input_block=1.0, input_block_pitch="chroma+salience")).eval()
    wav = harmonic_note(midi, amplitudes=amplitudes)
    salience = model.input_block.pitch_frames(wav)[0, 2:-2].mean(0)
    chroma = model.input_block.chroma_frames(wav)[0, 2:-2].mean(0)
    assert int(salience.argmax()) == midi % 12
    assert int(chroma.argmax()) != midi % 12
    # loudness cancels: the same note 20 dB softer gives the same centred salience
    quiet = model.input_block.pitch_frames(0.1 * wav)[0, 2:-2].mean(0)
    torch.testing.assert_close(quiet, salience, atol=0.05, rtol=0)


def test_pitch_and_scene_std_need_a_block(tiny_mobile):  # noqa: F811
    for field, value in (("input_block_pitch", "salience"), ("scene_std", "block")):
        with pytest.raises(ValueError, match="need input_block > 0"):
            tiny_mobile.config.replace(**{field: value})
    assert tiny_mobile.config.replace(scene_std="frames").scene_std == "frames"  # any model's frames
    with pytest.raises(ValueError, match="scene_std must be one of"):
        tiny_mobile.config.replace(scene_std="max")
    with pytest.raises(ValueError, match="input_block_pitch must be one of"):
        tiny_mobile.config.replace(input_block=1.0, input_block_pitch="cqt")
    salience_only = MobileModel(tiny_mobile.config.replace(input_block=1.0, input_block_pitch="salience"))
    assert salience_only.input_block.width == 76 and not hasattr(salience_only.input_block, "chroma")


def test_block_is_standardised_weighted_and_in_front_of_the_learnt_frames(tiny_mobile):  # noqa: F811
    model = MobileModel(tiny_mobile.config.replace(input_block=2.5)).eval()
    model.load_state_dict({**model.state_dict(), **tiny_mobile.state_dict()}, strict=True)
    mean, std = torch.linspace(-3, 3, 76), torch.linspace(0.5, 2.0, 76)
    model.input_block.set_stats(mean, std)
    wav = tone_mix(2.3, 16000, seed=3)
    with torch.no_grad():
        out = model.hear_frames(wav, "distill")
        learnt = tiny_mobile.distilled(wav)
        raw = model.input_block.features(model.padded(wav), model.log_mel(wav))
    assert out.shape == (1, 58, 76 + 32)
    torch.testing.assert_close(out[..., 76:], learnt)
    torch.testing.assert_close(out[..., :76], (raw - mean) / std * 2.5)
    torch.testing.assert_close(raw[0, :, :64], model.log_mel(wav)[0].view(58, 4, 64).mean(1))


def test_a_checkpoint_needs_the_block_its_config_names(tmp_path, tiny_mobile):  # noqa: F811
    path = tmp_path / "student.pt"
    save_checkpoint(path, tiny_mobile)
    payload = read_checkpoint(path)
    payload["config"]["input_block"] = 1.0
    torch.save(payload, tmp_path / "no_stats.pt")
    with pytest.raises(CheckpointError, match="input_block.mean"):
        load_checkpoint(tmp_path / "no_stats.pt", architecture="mobile")
    payload["config"]["input_block"] = -1.0
    torch.save(payload, tmp_path / "negative.pt")
    with pytest.raises(CheckpointError, match="input_block must be a finite weight >= 0"):
        load_checkpoint(tmp_path / "negative.pt", architecture="mobile")
    del payload["config"]["input_block"]  # a checkpoint written before the block existed
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", architecture="mobile")[0].input_block is None


@pytest.fixture(scope="module")
def with_block(tmp_path_factory, tiny_mobile):  # noqa: F811
    folder = tmp_path_factory.mktemp("input_block")
    manifest = write_manifest(folder / "corpus.jsonl", write_corpus(folder / "audio"))
    plain = folder / "student.pt"
    save_checkpoint(plain, tiny_mobile, half=True)
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", "3",
                 "--crops", "6", "-o", str(folder / "block.pt")]) == 0
    return plain, folder / "block.pt", manifest


def test_input_block_command_measures_the_corpus_and_keeps_the_learnt_weights(with_block):
    plain, block, manifest = with_block
    before, _ = load_checkpoint(plain, architecture="mobile")
    after, payload = load_checkpoint(block, architecture="mobile")
    assert after.config.input_block == 3.0 and payload["provenance"]["input_block"]["crops"] == 6
    learnt = {k: v for k, v in after.state_dict().items() if not k.startswith("input_block.")}
    assert learnt.keys() == before.state_dict().keys()
    assert all(torch.equal(v, before.state_dict()[k]) for k, v in learnt.items())
    audio = tone_mix(4.0, 16000, seed=5)
    emb, _ = get_timestamp_embeddings(audio, load_model(str(block)))
    plain_emb, _ = get_timestamp_embeddings(audio, load_model(str(plain)))
    assert emb.shape[-1] == 76 + plain_emb.shape[-1]
    torch.testing.assert_close(emb[..., 76:], plain_emb)
    # the corpus's own frames come out near mean 0 and std `weight` per channel
    stats = measure(after, open_source(str(manifest), 0).sample(6, 0))
    torch.testing.assert_close(after.input_block.mean, stats["mean"], atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(after.input_block.std, stats["std"].clamp(min=1e-3), atol=2e-3, rtol=2e-3)


@pytest.fixture(scope="module")
def with_pitch(with_block):
    plain, _, manifest = with_block
    out = plain.with_name("pitch.pt")
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", "1", "--pitch",
                 "chroma+salience", "--scene-std", "block", "--crops", "6", "-o", str(out)]) == 0
    return out


def test_scene_embedding_adds_the_blocks_std_over_time(with_pitch):
    model, payload = load_checkpoint(with_pitch, architecture="mobile")
    assert model.config.input_block_pitch == "chroma+salience" and model.config.scene_std == "block"
    assert payload["provenance"]["input_block"]["pitch"] == "chroma+salience"
    assert model.input_block.mean.shape == (88,)
    hear = load_model(str(with_pitch))
    assert (hear.timestamp_embedding_size, hear.scene_embedding_size) == (88 + 32, 88 + 32 + 88)
    audio = torch.cat([harmonic_note(57, 2.0), 0.3 * tone_mix(2.0, 16000, seed=7)])
    frames, _ = get_timestamp_embeddings(audio, hear)
    scene = get_scene_embeddings(audio, hear)
    assert scene.shape == (2, hear.scene_embedding_size)
    torch.testing.assert_close(scene[:, :120], frames.mean(1))
    torch.testing.assert_close(scene[:, 120:], frames[..., :88].std(1, correction=0))
    assert float(scene[:, 120:].min()) >= 0
    # one frame: the std is 0, not NaN
    assert torch.equal(get_scene_embeddings(audio[:, :640], hear)[:, 120:], torch.zeros(2, 88))


def test_scene_std_of_every_frame_channel(with_block, tmp_path):
    plain, _, manifest = with_block
    out = tmp_path / "frames.pt"
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", "1", "--pitch", "salience",
                 "--scene-std", "frames", "--crops", "6", "-o", str(out)]) == 0
    hear = load_model(str(out))
    assert (hear.timestamp_embedding_size, hear.scene_embedding_size) == (76 + 32, 2 * (76 + 32))
    audio = 0.3 * tone_mix(2.0, 16000, seed=8, n=2)
    frames, _ = get_timestamp_embeddings(audio, hear)
    scene = get_scene_embeddings(audio, hear)
    torch.testing.assert_close(scene, torch.cat([frames.mean(1), frames.std(1, correction=0)], -1))
    # a plain student (no block) can carry its frames' std too; "block" needs a block
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", "0", "--scene-std",
                 "frames", "-o", str(tmp_path / "plain.pt")]) == 0
    assert load_model(str(tmp_path / "plain.pt")).scene_embedding_size == 2 * 32
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", "0", "--scene-std",
                 "block", "-o", str(tmp_path / "x.pt")]) == 2


def test_pitch_without_a_block_is_refused(with_block, tmp_path, capsys):
    plain, _, manifest = with_block
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", "0", "--pitch",
                 "salience", "-o", str(tmp_path / "x.pt")]) == 2
    assert "--weight 0 removes it" in capsys.readouterr().err


@pytest.mark.parametrize("weight", ["-1", "inf", "nan"])
def test_a_bad_weight_is_refused(with_block, tmp_path, capsys, weight):
    plain, _, manifest = with_block
    assert main(["input-block", str(plain), "--data", str(manifest), "--weight", weight,
                 "-o", str(tmp_path / "x.pt")]) == 2
    assert "--weight a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_weight_zero_removes_the_block(with_block, tmp_path):
    plain, block, manifest = with_block
    assert main(["input-block", str(block), "--data", str(manifest), "--weight", "0",
                 "-o", str(tmp_path / "none.pt")]) == 0
    model, _ = load_checkpoint(tmp_path / "none.pt", architecture="mobile")
    assert model.input_block is None
    assert model.state_dict().keys() == load_checkpoint(plain, architecture="mobile")[0].state_dict().keys()


@pytest.mark.parametrize("pitch", [False, True])
def test_onnx_export_carries_the_block(with_block, with_pitch, tmp_path, pitch):
    block, width = (with_pitch, 88) if pitch else (with_block[1], 76)
    out = tmp_path / "block.onnx"
    assert main(["export-onnx", str(block), str(out), "--int8"]) == 0
    model, _ = load_checkpoint(block, architecture="mobile")
    wav = tone_mix(5.3, 16000, seed=6, n=2)
    with torch.no_grad():
        expected = model.hear_frames(wav, "distill")
    got = OnnxFrames(str(out), threads=1)(wav)
    assert got.shape == expected.shape == (2, 133, width + 32)
    assert float((got - expected).abs().max()) <= 1e-4
    windows, _ = get_timestamp_embeddings(wav, MobileHear(model, chunk_seconds=1.0))
    torch.testing.assert_close(windows, expected[:, :windows.shape[1]], atol=1e-4, rtol=1e-4)
    # int8 quantises the encoder only: the block's DFT stays float and its channels exact
    int8 = out.with_suffix(".int8.onnx")
    types = {t.name: t.data_type for t in onnx.load(str(int8)).graph.initializer}
    assert types["model.input_block.basis"] == onnx.TensorProto.FLOAT
    assert types.get("model.input_block.pitch_basis", onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT
    assert ("model.input_block.pitch_basis" in types) == pitch
    quantised = OnnxFrames(str(int8), threads=1)(wav)
    assert float((quantised[..., :width] - expected[..., :width]).abs().max()) <= 1e-4


def test_an_encodecmae_checkpoint_is_refused(with_block, tiny_checkpoint, tmp_path, capsys):
    _, _, manifest = with_block
    assert main(["input-block", str(tiny_checkpoint), "--data", str(manifest), "--weight", "1",
                 "-o", str(tmp_path / "x.pt")]) == 2
    assert "is not a mobile checkpoint" in capsys.readouterr().err
