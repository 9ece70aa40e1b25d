"""The `dtype` options "bf16" and "int8": the accuracy gate (per-layer mean frame cosine
to fp32 >= 0.999) on the bundled default and on the official-format fixtures loaded
through load_model(path), that the lower precision really runs, and that int8 costs no
more memory than fp32."""
import numpy as np
import pytest
import torch

from encodecmae_hear import hear
from encodecmae_hear.hear import HearModel, get_scene_embeddings, get_timestamp_embeddings, load_model
from encodecmae_hear.model import precision
from encodecmae_hear.model.precision import int8_encoder
from encodecmae_hear.model.transformer import MultiHeadAttention
from tests.conftest import tone_mix
from tests.test_official import MANIFEST, VARIANTS, official_content

GATE = 0.999  # per-layer mean over frames of the cosine to fp32
ONE_RUN = 1 - 1e-6  # fp32 against itself: what a gate must not confuse with a lower precision


def layer_cosines(model_file: str, dtype: str, audio: torch.Tensor) -> torch.Tensor:
    """(L + 1,) mean over frames of the cosine of `dtype` to fp32 embeddings, for the
    encoder input and every layer (raw, not standardised: "input+concat")."""
    outputs = []
    for d in ("fp32", dtype):
        model = load_model(model_file, layer="input+concat", standardise=False, dtype=d)
        emb, _ = get_timestamp_embeddings(audio, model)  # (n, T, (L + 1) D)
        outputs.append(emb.view(*emb.shape[:2], -1, model.mae.config.dim))
    return torch.nn.functional.cosine_similarity(*outputs, dim=-1).mean(dim=(0, 1))


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("official-precision")
    paths = {}
    for name in VARIANTS:
        if name.startswith("v1"):
            continue  # a folder, not a v2 file
        paths[name] = root / f"{name}.pt"
        torch.save(official_content(name), paths[name])
    return paths


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
def test_accuracy_gate_on_the_bundled_default(dtype):
    audio = tone_mix(9.0, 48000, seed=21, n=2)
    cos = layer_cosines("", dtype, audio)
    assert cos.shape == (5,)  # mini: the input and 4 layers
    assert cos.min() >= GATE, cos
    if dtype == "int8":  # the input projection stays fp32 (mel frontend: the same numbers)
        assert cos[0] > ONE_RUN
    assert cos[1:].max() < ONE_RUN  # the Transformer really ran in lower precision


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
def test_accuracy_gate_on_the_official_fixtures(official_files, dtype):
    spec = MANIFEST["hear_input"]
    audio = np.random.default_rng(spec["seed"]).uniform(-0.5, 0.5, spec["samples"]).astype(np.float32)
    audio = torch.from_numpy(audio)[None]  # 4 s at 48 kHz
    for name, path in official_files.items():
        cos = layer_cosines(str(path), dtype, audio)
        assert cos.shape == (4,), name  # the input and 3 layers
        assert cos.min() >= GATE, (name, cos)
        assert cos[1:].max() < ONE_RUN, name


def test_int8_swaps_only_the_encoder_linears_and_keeps_the_ffn_shared(tiny_mel):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    before = {k: v.clone() for k, v in tiny_mel.state_dict().items()}
    quantized = int8_encoder(tiny_mel)
    linears = [m for m in quantized.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears  # every one swapped
    layers = quantized.encoder.layers
    assert all(isinstance(layer.attention.wq, DynamicLinear) for layer in layers)
    assert all(layer.ffn is layers[0].ffn for layer in layers)  # shared, as in the model
    assert isinstance(layers[0].ffn[0], DynamicLinear)
    # the rest is the same tensors, and the model given is unchanged
    assert quantized.input_proj.weight is tiny_mel.input_proj.weight
    assert quantized.encoder.final_norm.weight is tiny_mel.encoder.final_norm.weight
    assert isinstance(tiny_mel.encoder.layers[0].attention.wq, torch.nn.Linear)
    after = tiny_mel.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def model_bytes(model: HearModel) -> int:
    """Bytes of the tensors a HEAR model holds (shared ones once), int8 packed weights
    included."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    seen, total = set(), 0
    tensors = [*model.parameters(), *model.buffers()]
    for module in model.modules():
        if isinstance(module, DynamicLinear):
            tensors += [module.weight(), *(() if module.bias() is None else (module.bias(),))]
    for t in tensors:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def test_int8_holds_fewer_bytes_than_fp32(tiny_checkpoint):
    fp32 = load_model(str(tiny_checkpoint))
    int8 = load_model(str(tiny_checkpoint), dtype="int8")
    get_scene_embeddings(tone_mix(1.0, 48000), int8)
    assert model_bytes(int8) < model_bytes(fp32)


def test_int8_is_batch_independent_and_float32(tiny_encodec, monkeypatch):
    model = HearModel(tiny_encodec, dtype="int8")
    audio = tone_mix(13.0, 48000, seed=3, n=3)  # 4 windows a sound
    monkeypatch.setattr(hear, "CPU_WINDOWS_PER_THREAD", 8)  # fp32 would batch 16 windows
    monkeypatch.setattr(hear, "INT8_SOUND_WINDOWS", 3)
    forwards = []
    encode_windows = HearModel.encode_windows
    monkeypatch.setattr(HearModel, "encode_windows",
                        lambda self, wav, lengths: forwards.append(len(wav)) or encode_windows(self, wav, lengths))
    both, ts = get_timestamp_embeddings(audio, model)
    # EnCodec's LSTM takes a sound's windows in groups counted from its first window,
    # never windows of two sounds: [3, 1] per sound, not [3, 3, 3, 3]
    assert forwards == [3, 1] * 3
    alone, _ = get_timestamp_embeddings(audio[1:2], model)
    assert both.dtype == ts.dtype == torch.float32
    assert torch.equal(both[1], alone[0])


def test_int8_runs_the_transformer_one_window_a_call(tiny_mel):
    """Dynamic int8 scales a call's activations by their range: windows that went
    through the Transformer together would change each other's bits."""
    model = HearModel(tiny_mel, dtype="int8")
    assert model.windows_per_batch(torch.device("cpu")) == 1  # no LSTM to share
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 96000, generator=gen) * torch.tensor([[0.01], [0.5]])
    lengths = torch.tensor([96000, 96000])
    together = model.encode_windows(wav, lengths)
    for i in range(2):
        alone = model.encode_windows(wav[i:i + 1], lengths[i:i + 1])
        assert all(torch.equal(a[0], t[i]) for a, t in zip(alone, together))
    with torch.no_grad():  # what the split avoids: one call for both windows
        features = model.frontend_features(wav)
        shared = model.mae.encode_features(features, lengths)
        first = model.mae.encode_features(features[:1], lengths[:1])
    assert not torch.equal(shared[-1][0], first[-1][0])


def test_int8_refuses_another_device_with_a_clear_message(tiny_mel):
    model = HearModel(tiny_mel, dtype="int8")
    wav = torch.zeros(1, 96000, device="meta")  # not a CPU tensor: refused before any work
    with pytest.raises(ValueError, match="int8.*CPU only"):
        model.encode_windows(wav, torch.tensor([96000]))


def test_bf16_runs_the_encodec_frontend_in_bf16_where_the_cpu_has_it(tiny_encodec, tiny_mel, monkeypatch):
    monkeypatch.setattr(hear, "cpu_has_bf16", lambda: True)  # emulated where it is not
    chunk = tone_mix(4.0, 24000, seed=10)
    with torch.no_grad():
        plain = tiny_encodec.frontend(chunk)
    for dtype in ("bf16", "int8"):
        features = HearModel(tiny_encodec, dtype=dtype).frontend_features(chunk)
        assert features.dtype == torch.float32 and not torch.equal(features, plain)
        assert torch.nn.functional.cosine_similarity(features, plain, dim=-1).min() > 0.999
    mel = HearModel(tiny_mel, dtype="bf16")
    assert torch.equal(mel.frontend_features(chunk), tiny_mel.frontend(chunk))  # mel stays fp32


def test_without_cpu_bf16_the_frontend_stays_fp32(tiny_encodec, monkeypatch):
    monkeypatch.setattr(hear, "cpu_has_bf16", lambda: False)
    chunk = tone_mix(4.0, 24000, seed=10)
    with torch.no_grad():
        plain = tiny_encodec.frontend(chunk)
    for dtype in ("bf16", "int8"):
        assert torch.equal(HearModel(tiny_encodec, dtype=dtype).frontend_features(chunk), plain)


def test_int8_attention_runs_as_bf16_products_where_the_cpu_has_bf16(tiny_mel, monkeypatch):
    for has_bf16, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
        copy = int8_encoder(tiny_mel)
        assert [m.products_dtype for m in copy.encoder.modules() if isinstance(m, MultiHeadAttention)] \
            == [want] * tiny_mel.config.encoder_layers
    assert all(m.products_dtype is None for m in tiny_mel.modules() if isinstance(m, MultiHeadAttention))
