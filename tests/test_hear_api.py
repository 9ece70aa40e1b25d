"""HEAR rules (SPEC section 6) on a tiny model: shapes, timestamps, rates, independence."""
import math
import os
import subprocess
import sys

import pytest
import torch
import torchaudio

from encodecmae_hear import hear
from encodecmae_hear.audio import HEAR_SAMPLE_RATES, Chunker, num_frames
from encodecmae_hear.hear import HearModel, get_scene_embeddings, get_timestamp_embeddings, load_model
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
from tests.conftest import tone_mix
from tests.train_helpers import ROOT


def expected_frames(n_samples, sample_rate):
    """Frames whose centre, (i + 0.5) / 75 s, lies inside the audio."""
    duration = n_samples / sample_rate
    return sum(1 for i in range(int(duration * 75) + 2) if (i + 0.5) / 75 <= duration)


@pytest.fixture(scope="module")
def hear_model(tiny_mel):
    return HearModel(tiny_mel, sample_rate=48000)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0, 9.1])
def test_shapes_dtypes_and_timestamps(hear_model, seconds):
    audio = tone_mix(seconds, 48000, n=2)
    emb, ts = get_timestamp_embeddings(audio, hear_model)
    frames = expected_frames(audio.shape[1], 48000)
    assert emb.shape == (2, frames, hear_model.timestamp_embedding_size)
    assert ts.shape == (2, frames)
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    hops = torch.diff(ts, dim=1)
    assert torch.all((hops - 1000 / 75).abs() < 1e-3)  # HEAR allows 1 ms
    assert ts[0, 0].item() == pytest.approx(1000 / 75 / 2)  # centre of the first frame
    assert ts[0, -1].item() <= 1000 * seconds < ts[0, -1].item() + 1000 / 75  # the validator's rule
    scene = get_scene_embeddings(audio, hear_model)
    assert scene.shape == (2, hear_model.scene_embedding_size)
    torch.testing.assert_close(scene, emb.mean(1), atol=1e-5, rtol=1e-5)


def test_model_attributes(hear_model):
    assert hear_model.sample_rate == 48000
    assert isinstance(hear_model.scene_embedding_size, int)
    assert hear_model.timestamp_embedding_size == hear_model.mae.config.dim
    assert not hear_model.training


def test_batch_independence(hear_model):
    batch = tone_mix(5.5, 48000, seed=1, n=3)
    emb, _ = get_timestamp_embeddings(batch, hear_model)
    for i in range(3):
        alone, _ = get_timestamp_embeddings(batch[i:i + 1], hear_model)
        torch.testing.assert_close(emb[i], alone[0], atol=1e-5, rtol=1e-5)


def test_chunk_batch_size_does_not_change_results(tiny_mel):
    audio = tone_mix(9.0, 16000, seed=2, n=2)
    a, _ = get_timestamp_embeddings(audio, HearModel(tiny_mel, 16000, chunk_batch_size=1))
    b, _ = get_timestamp_embeddings(audio, HearModel(tiny_mel, 16000, chunk_batch_size=7))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_determinism(hear_model):
    audio = tone_mix(2.0, 48000, seed=3)
    assert torch.equal(get_timestamp_embeddings(audio, hear_model)[0],
                       get_timestamp_embeddings(audio, hear_model)[0])


def test_no_tail_is_dropped(hear_model):
    # 4 s + 50 ms: the second chunk holds only 50 ms and must still give frames.
    audio = tone_mix(4.05, 48000, seed=4)
    emb, ts = get_timestamp_embeddings(audio, hear_model)
    assert emb.shape[1] == expected_frames(audio.shape[1], 48000) == 304
    assert torch.isfinite(emb).all() and emb[0, -1].abs().sum() > 0


def test_long_sound_first_window_matches_the_window_alone(hear_model):
    audio = tone_mix(6.0, 48000, seed=5)
    long_emb, _ = get_timestamp_embeddings(audio, hear_model)
    first, _ = get_timestamp_embeddings(audio[:, :4 * 48000], hear_model)
    # Equal but for resampling context at the window's very end.
    torch.testing.assert_close(long_emb[:, :300], first, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("rate", [16000, 22050, 32000, 44100, 48000])
def test_every_hear_rate_is_resampled_to_24k(rate):
    def tones(sr, seconds):
        t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
        return (0.4 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 1250 * t)).float()

    chunker = Chunker(rate)
    pieces = [chunk[:valid] for chunk, valid in chunker.chunks(tones(rate, 9.0))]
    assert [p.shape[0] for p in pieces] == [96000, 96000, 24000]
    at_24k = torch.cat(pieces)
    interior = slice(2400, -2400)  # away from the filter's edge effects
    assert (at_24k[interior] - tones(24000, 9.0)[interior]).abs().max() < 2e-3


def test_non_hear_rate_is_refused(tiny_mel):
    with pytest.raises(ValueError, match="HEAR rates"):
        HearModel(tiny_mel, sample_rate=24000)


def test_layer_options(tiny_mel):
    audio = tone_mix(1.5, 48000, seed=6)
    per_layer = [get_timestamp_embeddings(audio, HearModel(tiny_mel, layer=i))[0]
                 for i in range(tiny_mel.num_layers)]
    last = HearModel(tiny_mel, layer="last")
    torch.testing.assert_close(get_timestamp_embeddings(audio, last)[0], per_layer[-1])
    assert not torch.allclose(per_layer[0], per_layer[-1])
    mean = HearModel(tiny_mel, layer="mean")
    torch.testing.assert_close(get_timestamp_embeddings(audio, mean)[0],
                               torch.stack(per_layer).mean(0), atol=1e-6, rtol=1e-6)
    concat = HearModel(tiny_mel, layer="concat")
    assert concat.timestamp_embedding_size == concat.scene_embedding_size == 64 * tiny_mel.num_layers
    out = get_timestamp_embeddings(audio, concat)[0]
    assert out.shape[-1] == concat.timestamp_embedding_size
    torch.testing.assert_close(out, torch.cat(per_layer, -1))
    assert HearModel(tiny_mel, layer="-2").layer == 0
    for bad in (5, -3, "first", 1.5):
        with pytest.raises(ValueError, match="layer"):
            HearModel(tiny_mel, layer=bad)


def test_input_plus_concat_leads_with_the_encoder_input(tiny_mel):
    audio = tone_mix(1.5, 48000, seed=6)
    model = HearModel(tiny_mel, layer="input+concat")
    assert model.timestamp_embedding_size == model.scene_embedding_size == 64 * (tiny_mel.num_layers + 1)
    out = get_timestamp_embeddings(audio, model)[0]
    torch.testing.assert_close(out[..., 64:], get_timestamp_embeddings(audio, HearModel(tiny_mel, layer="concat"))[0])
    chunk, _ = next(Chunker(48000).chunks(audio[0]))
    with torch.no_grad():  # the encoder's input: projected frontend frames plus positions
        tokens = tiny_mel.encoder_positions(tiny_mel.input_proj(tiny_mel.frontend(chunk[None])))
    torch.testing.assert_close(out[0, :, :64], tokens[0, :out.shape[1]])


BAD_INPUTS = [
    (lambda: torch.zeros(48000), "shape"),
    (lambda: torch.zeros(1, 1, 48000), "shape"),
    (lambda: torch.zeros(2, 48000, dtype=torch.int16), "floating point"),
    (lambda: torch.zeros(0, 48000), "empty"),
    (lambda: torch.zeros(2, 0), "empty"),
    (lambda: torch.zeros(1, 100), "shorter than one frame"),
    (lambda: torch.full((1, 48000), float("nan")), "NaN"),
    (lambda: torch.full((1, 48000), float("inf")), "NaN or infinite"),
    (lambda: torch.full((1, 48000), 12000.0), r"\[-1, 1\]"),
    (lambda: [[0.0] * 48000], "torch.Tensor"),
]


@pytest.mark.parametrize("make, message", BAD_INPUTS)
def test_bad_input_is_refused_clearly(hear_model, make, message):
    with pytest.raises(ValueError, match=message):
        get_timestamp_embeddings(make(), hear_model)
    with pytest.raises(ValueError, match=message):
        get_scene_embeddings(make(), hear_model)


def test_float64_input_is_accepted(hear_model):
    audio = tone_mix(1.0, 48000, seed=7)
    torch.testing.assert_close(get_scene_embeddings(audio.double(), hear_model),
                               get_scene_embeddings(audio, hear_model))


def test_encodec_frontend_through_the_hear_path(tiny_encodec):
    model = HearModel(tiny_encodec, sample_rate=16000)
    audio = tone_mix(4.5, 16000, seed=8, n=2)
    emb, ts = get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, expected_frames(audio.shape[1], 16000), 64)
    alone, _ = get_timestamp_embeddings(audio[1:], model)
    torch.testing.assert_close(emb[1], alone[0], atol=1e-5, rtol=1e-5)


# README's guarantees, each against an independent computation ------------------------

@pytest.mark.parametrize("tail", [320 * 37, 320 * 37 + 200])
def test_padded_frames_of_the_last_window_are_masked(tiny_mel, tail):
    """The last window's frames equal encode(window, its valid samples), which masks the
    zero padding as padded keys, and not the window unmasked. Three sounds in one batch,
    so the tail windows sit at batch positions 1, 3 and 5 (the reference's valid length,
    min(len - b, 96000), depends on the position b); a tail of whole frames (320 k
    samples) and one of k frames + 200 samples catch an off-by-one either way."""
    sounds = tone_mix((96000 + tail) / 24000, 48000, seed=11, n=3)
    emb, _ = get_timestamp_embeddings(sounds, HearModel(tiny_mel, sample_rate=48000))
    frames = -(-tail // 320)  # every frame that holds audio: all centres lie inside
    assert emb.shape[1] == 300 + frames
    for i in range(3):
        *_, (window, valid) = Chunker(48000).chunks(sounds[i])
        assert valid == tail and not window[valid:].any()
        with torch.no_grad():
            masked = tiny_mel.encode(window[None], torch.tensor([valid]))[-1][0, :frames]
            unmasked = tiny_mel.encode(window[None])[-1][0, :frames]
        torch.testing.assert_close(emb[i, 300:], masked, atol=1e-5, rtol=1e-5)
        assert (masked - unmasked).abs().max() > 1e-2  # the mask matters here


def _tiny_model():
    torch.manual_seed(0)
    return EncodecMAE(preset("tiny")).eval()


@pytest.mark.parametrize("chunk_batch_size", [1, 4])
def test_chunk_batch_size_bounds_every_encoder_call(monkeypatch, chunk_batch_size):
    mae = _tiny_model()
    calls, encode = [], mae.encode_features

    def spy(features, lengths=None, **options):
        calls.append(features.shape[0])
        return encode(features, lengths, **options)

    monkeypatch.setattr(mae, "encode_features", spy)
    monkeypatch.setattr(hear, "CPU_WINDOWS_PER_THREAD", 64)  # so that only chunk_batch_size bounds
    model = HearModel(mae, 16000, chunk_batch_size=chunk_batch_size)
    audio = tone_mix(5.0, 16000, seed=12, n=3)  # 2 windows each (4 s + 1 s): 6 in all
    for embed in (get_timestamp_embeddings, get_scene_embeddings):
        calls.clear()
        embed(audio, model)
        full, rest = divmod(6, chunk_batch_size)
        assert calls == [chunk_batch_size] * full + ([rest] if rest else [])


@pytest.mark.parametrize("rate", HEAR_SAMPLE_RATES)
def test_windows_equal_resampling_the_whole_sound(rate):
    """Windows resampled one at a time, joined, equal torchaudio's resampling of the
    whole sound at once: everywhere, joins included, to float rounding."""
    sound = torch.rand(int(9.3 * rate), generator=torch.Generator().manual_seed(rate)) - 0.5
    whole = torchaudio.functional.resample(sound, rate, 24000)
    windows = list(Chunker(rate).chunks(sound))
    assert [valid for _, valid in windows] == [96000, 96000, whole.shape[0] - 192000]
    joined = torch.cat([window[:valid] for window, valid in windows])
    assert joined.shape == whole.shape
    assert float((joined - whole).abs().max()) < 1e-5
    for join in (96000, 192000):
        assert float((joined[join - 50: join + 50] - whole[join - 50: join + 50]).abs().max()) < 1e-5


_MEMORY_PROBE = """
import resource, sys, torch
from encodecmae_hear.model.config import preset
from encodecmae_hear.hear import HearModel, get_timestamp_embeddings
from encodecmae_hear.model.mae import EncodecMAE
torch.set_num_threads(1)
torch.manual_seed(0)
model = HearModel(EncodecMAE(preset("tiny")).eval(), sample_rate=48000, chunk_batch_size=4)
audio = torch.rand(1, 48000 * 600).sub_(0.5)                # 10 minutes, no temporary copy
get_timestamp_embeddings(audio[:, : 48000 * 60], model)     # 1 minute
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
emb, ts = get_timestamp_embeddings(audio, model)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, emb.numel() * 4 + ts.numel() * 4, audio.numel() * 4)
"""


def test_memory_grows_with_the_output_only():
    """Peak memory (a fresh process) of 10 minutes after 1 minute: it grows by about the
    10-minute output (11.7 MB; measured: 11-13 MB), not with the input (115 MB) or a
    resampled copy of it (58 MB). Windows all in one batch: +740 MB; the whole sound
    resampled at once: +560 MB."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    growth, output_bytes, input_bytes = map(int, done.stdout.split())
    assert growth < output_bytes + input_bytes // 8, (growth, output_bytes, input_bytes)


class _FramesStub:
    """Stands in for HearModel.embed: an hour of frames without embedding an hour."""

    def __init__(self, frames):
        self.frames = frames

    def embed(self, audio):
        return torch.zeros(audio.shape[0], self.frames, 1)


def test_timestamps_of_an_hour_are_float64_exact():
    frames = num_frames(3600 * 48000, 48000)
    assert frames == 3600 * 75
    _, ts = get_timestamp_embeddings(torch.zeros(2, 1), _FramesStub(frames))
    assert ts.dtype == torch.float32 and ts.shape == (2, frames)
    exact = (2 * torch.arange(frames, dtype=torch.float64) + 1) * 500 / 75  # (i + 1/2) 1000/75 ms
    assert torch.equal(ts[0], exact.float()) and torch.equal(ts[1], ts[0])
    in_float32 = (torch.arange(frames, dtype=torch.float32) + 0.5) * (1000 / 75)
    assert not torch.equal(in_float32, exact.float())  # what float32 arithmetic would give


def test_load_model_passes_sample_rate_and_chunk_batch_size_through(tiny_checkpoint, monkeypatch):
    default = load_model(str(tiny_checkpoint))
    assert (default.sample_rate, default.chunk_batch_size) == (48000, 16)
    model = load_model(str(tiny_checkpoint), sample_rate=16000, chunk_batch_size=3)
    assert model.sample_rate == model.chunker.sample_rate == 16000 and model.chunk_batch_size == 3
    calls, encode = [], model.mae.encode_features
    monkeypatch.setattr(model.mae, "encode_features", lambda x, *a, **k: calls.append(len(x)) or encode(x, *a, **k))
    monkeypatch.setattr(hear, "CPU_WINDOWS_PER_THREAD", 64)
    emb, _ = get_timestamp_embeddings(tone_mix(9.0, 16000, seed=13, n=2), model)  # 16 kHz: 9 s
    assert emb.shape[1] == 675 and calls == [3, 3]


@pytest.mark.parametrize("model_name", ["tiny_mel", "tiny_encodec"])
def test_bf16_is_close_to_fp32_and_returns_float32(model_name, request):
    mae = request.getfixturevalue(model_name)
    audio = tone_mix(5.0, 48000, seed=9, n=2)
    fp32 = HearModel(mae, layer="input+concat")
    bf16 = HearModel(mae, layer="input+concat", dtype="bf16")
    a, ts_a = get_timestamp_embeddings(audio, fp32)
    b, ts_b = get_timestamp_embeddings(audio, bf16)
    scene = get_scene_embeddings(audio, bf16)
    assert b.dtype == ts_b.dtype == scene.dtype == torch.float32
    assert b.shape == a.shape and torch.equal(ts_a, ts_b)
    # bf16 really ran: fp32 runs agree to ~1e-6, bf16 differs in the third digit
    assert (a - b).abs().max() > 1e-3
    # Measured on these models: every frame of every block at cosine > 0.99996 to fp32.
    blocks = a.shape[-1] // mae.config.dim
    cos = torch.nn.functional.cosine_similarity(a.view(2, -1, blocks, mae.config.dim),
                                                b.view(2, -1, blocks, mae.config.dim), dim=-1)
    assert cos.min() > 0.9995


def test_an_outer_autocast_leaves_the_fp32_frontend_in_fp32(tiny_encodec):
    """The frontend's precision is the dtype option's (tests/test_precision.py), not that
    of an autocast around the call."""
    chunk = tone_mix(4.0, 24000, seed=10)
    with torch.no_grad():
        plain = tiny_encodec.frontend(chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = HearModel(tiny_encodec, dtype="fp32").frontend_features(chunk)
    assert features.dtype == torch.float32 and torch.equal(features, plain)


def test_bad_dtype_is_refused_with_the_choices(tiny_mel):
    for bad in ("fp16", "float32", torch.bfloat16, None):
        with pytest.raises(ValueError, match=r"dtype must be one of \('fp32', 'bf16', 'int8'\)"):
            HearModel(tiny_mel, dtype=bad)


def test_dtype_option_reaches_the_model_through_load_model(tiny_checkpoint):
    assert load_model(str(tiny_checkpoint)).compute_dtype == "fp32"
    assert load_model(str(tiny_checkpoint), dtype="bf16").compute_dtype == "bf16"
    assert load_model(str(tiny_checkpoint), dtype="int8").compute_dtype == "int8"
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(str(tiny_checkpoint), dtype="half")


def test_cpu_batches_follow_the_thread_count_and_not_the_results(tiny_encodec):
    audio = tone_mix(9.0, 16000, seed=11, n=2)  # 6 windows
    frontend_calls, lstm_calls, transformer_calls = [], [], []
    encodec = tiny_encodec.frontend.folded_encoder()  # channels-last (model/seanet.py)
    hooks = [encodec.convs.register_forward_hook(lambda m, args, out: frontend_calls.append(args[0].shape[0])),
             encodec.head.register_forward_hook(lambda m, args, out: lstm_calls.append(args[0].shape[0])),
             tiny_encodec.encoder.register_forward_hook(
                 lambda m, args, out: transformer_calls.append(args[0].shape[0]))]
    threads = torch.get_num_threads()
    outputs = []
    try:
        for n_threads, batches in ((1, [1] * 6), (2, [2] * 3), (4, [4, 2])):
            frontend_calls.clear()
            lstm_calls.clear()
            transformer_calls.clear()
            torch.set_num_threads(n_threads)
            outputs.append(get_timestamp_embeddings(audio, HearModel(tiny_encodec, 16000))[0])
            assert transformer_calls == batches  # one window per thread at most
            assert frontend_calls == [1] * 6  # EnCodec's convolutions window by window
            assert lstm_calls == batches  # and its LSTM over the batch
        torch.set_num_threads(4)
        transformer_calls.clear()
        get_timestamp_embeddings(audio, HearModel(tiny_encodec, 16000, chunk_batch_size=3))
        assert transformer_calls == [3, 3]  # chunk_batch_size still bounds the batch
    finally:
        torch.set_num_threads(threads)
        for hook in hooks:
            hook.remove()
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("options, words", [
    ({"dtype": "fp64"}, "dtype must be one of"),
    ({"sample_rate": 24000}, "HEAR rates"),
    ({"chunk_batch_size": 0}, "chunk_batch_size"),
    ({"whiten_scene": "yes"}, "whiten_scene"),
    ({"whiten_power": 0.5}, "acts only with whiten_scene"),
    ({"layer": "middle"}, "layer must be an index"),
    ({"standardise": "maybe"}, "standardise must be"),
])
def test_options_are_checked_before_any_file_is_read(tmp_path, options, words):
    missing = tmp_path / "not-there.pt"  # a bad option is reported, not the missing file
    with pytest.raises(ValueError, match=words):
        load_model(str(missing), **options)
