"""Official EnCodecMAE checkpoints: our converted models against the reference's own outputs.

The fixtures under tests/fixtures/official/ were made by tools/make_official_fixtures.py,
which builds small random models with the reference implementation (v2 code), saves
them in the official layout, loads them back with the reference's hub loader and runs
its `extract_features_from_array`. The stored checkpoints lack their EnCodec tensors
(untrained EnCodec drawn from a fixed seed, tens of MB); `official_file` puts them
back from `build_encodec(seed)` and checks their sha256 against the manifest.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from encodecmae_hear.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    tokenizer_from_payload,
)
from encodecmae_hear.hear import HearModel, get_timestamp_embeddings, load_model
from encodecmae_hear.model.encodec import build_encodec
from encodecmae_hear.model.params import breakdown
from encodecmae_hear.official.reference import reference_features
from tools.make_official_fixtures import (
    REFERENCE_COMMIT,
    V1_TAG,
    sha256_of,  # the hash the fixtures were made with
)

FIXTURES = Path(__file__).parent / "fixtures" / "official"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
VARIANTS = sorted(MANIFEST["variants"])
REFERENCE_COUNTS = json.loads((FIXTURES / "reference_param_counts.json").read_text())
# Max |ours - reference| (README): EnCodec input 2.4e-6, mel input 3.1e-5 under torch
# 2.13.0+cpu. The mel figure is the float32 rounding of the filterbank itself (computing
# it in float64 moves our outputs by 2.0e-5), so two float32 builds can differ by twice that.
TOLERANCE = {"encodec": 2e-5, "mel256": 4e-5}


def tolerance(name: str) -> float:
    return TOLERANCE["mel256" if name.startswith("mel256") else "encodec"]


def fixture_audio(seed: int, n: int) -> np.ndarray:
    """Same recipe as tools/make_official_fixtures.py."""
    t = np.arange(n) / 24_000
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, n)
    return (0.6 * noise + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _encodec_state() -> dict:
    model = build_encodec(seed=MANIFEST["encodec_seed"])
    encoder, quantizer = model.encoder.state_dict(), model.quantizer.state_dict()
    return {"wav_encoder.encoder.model.": encoder, "target_encoder.encodec_encoder.": encoder,
            "target_encoder.model.": quantizer, "wav_encoder.model.": encoder}


def _restore(state: dict, stripped: dict) -> None:
    restored = {}
    for key in stripped["shapes"]:
        prefix = next(p for p in _encodec_state() if key.startswith(p))
        restored[key] = _encodec_state()[prefix][key[len(prefix):]]
    assert sha256_of(restored) == stripped["sha256"], \
        "untrained EnCodec from build_encodec(seed) differs from the fixtures' (torch RNG changed?)"
    state.update(restored)


def official_content(name: str, with_encodec: bool = True) -> dict:
    content = torch.load(FIXTURES / f"{name}.pt", map_location="cpu", weights_only=True)
    if with_encodec:
        _restore(content["state_dict"], MANIFEST["variants"][name]["stripped"])
    return content


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")

    @functools.lru_cache(maxsize=None)
    def make(name: str) -> Path:
        path = root / f"{name}.pt"
        torch.save(official_content(name), path)
        return path
    return make


@pytest.fixture(scope="module")
def models(official_file):
    return functools.lru_cache(maxsize=None)(lambda name: load_checkpoint(official_file(name)))


def _reference(name: str) -> dict:
    with np.load(FIXTURES / f"{name}_reference.npz") as data:
        return {k: data[k] for k in data.files}


def _max_diff(ours: torch.Tensor, theirs: np.ndarray) -> float:
    assert tuple(ours.shape) == theirs.shape, (tuple(ours.shape), theirs.shape)
    return float((ours.detach() - torch.from_numpy(theirs)).abs().max())


@pytest.mark.parametrize("name", VARIANTS)
def test_embeddings_match_reference(models, name):
    model, payload = models(name)
    refs = _reference(name)
    # the dropped-tail clip once per frontend: EnCodec on CPU is the slow part
    clips = ("short", "long") if name.endswith("_st") else tuple(MANIFEST["inputs"])
    for clip in clips:
        spec = MANIFEST["inputs"][clip]
        audio = torch.from_numpy(fixture_audio(spec["seed"], spec["samples"]))
        ours = reference_features(model, audio, "all")  # (L, T, D); the last is layer=-1's
        assert _max_diff(ours, refs[f"{clip}_all"]) <= tolerance(name), clip
        assert _max_diff(ours[-1], refs[f"{clip}_last"]) <= tolerance(name), clip
        if clip == "short":  # layer=-1 itself (EnCodec is slow: not on every clip)
            assert _max_diff(reference_features(model, audio, -1), refs[f"{clip}_last"]) <= tolerance(name)


@pytest.mark.parametrize("name", VARIANTS)
def test_detected_config(models, name):
    model, payload = models(name)
    config, spec = model.config, MANIFEST["variants"][name]
    assert config.frontend == ("mel256" if spec["features_config"] == "mel.gin" else "encodec")
    assert (config.dim, config.encoder_layers, config.decoder_layers) == (40, 3, 2)
    assert (config.encoder_heads, config.decoder_heads, config.ff_dim) == (12, 12, 64)
    assert config.share_ffn  # the reference shares one FFN per stack
    assert config.num_streams == (1 if spec["self_trained"] else 8) and config.num_tokens == 64
    prov = payload["provenance"]
    assert prov["source_layout"] == "v2" and len(prov["source_sha256"]) == 64
    assert (payload["tokenizer"] is None) == spec["self_trained"]
    assert prov["variant"].endswith("_st") == spec["self_trained"]


def test_hear_path_matches_reference_on_whole_chunks(models):
    """4 s at 48 kHz through our HEAR API vs the reference on the same sound resampled
    to 24 kHz with torchaudio: one whole chunk, nothing masked by either."""
    spec = MANIFEST["hear_input"]
    audio = np.random.default_rng(spec["seed"]).uniform(-0.5, 0.5, spec["samples"]).astype(np.float32)
    for name in ("ec", "mel256_st"):
        model = HearModel(models(name)[0], sample_rate=spec["sample_rate"])
        embeddings, _ = get_timestamp_embeddings(torch.from_numpy(audio)[None], model)
        assert _max_diff(embeddings[0], _reference(name)["hear_last"]) <= tolerance(name), name


def test_convert_cli_writes_our_format(official_file, tmp_path):
    from encodecmae_hear.cli import main

    out = tmp_path / "converted.pt"
    assert main(["convert", str(official_file("mel256")), str(out)]) == 0
    payload = read_checkpoint(out)
    assert payload["provenance"]["source_layout"] == "v2"
    # the EnCodec tokenizer that made the targets travels along (strictly loadable)
    assert tokenizer_from_payload(payload) is not None
    assert torch.equal(payload["tokenizer"]["quantizer.vq.layers.3._codebook.embed"],
                       _encodec_state()["target_encoder.model."]["vq.layers.3._codebook.embed"])
    assert payload["provenance"]["variant"] == "mel256-ec-D=40 3-layer"
    converted, _ = load_checkpoint(out)
    direct, _ = load_checkpoint(official_file("mel256"))
    audio = torch.from_numpy(fixture_audio(1, 31_300))
    assert torch.equal(reference_features(converted, audio, "all"), reference_features(direct, audio, "all"))


def test_encodec_weights_from_local_file(models, tmp_path, monkeypatch):
    """An EnCodec-input file without wav_encoder.encoder.* takes EnCodec from
    $ENCODECMAE_ENCODEC_WEIGHTS, and says which file it needs when that is unset."""
    content = official_content("ec", with_encodec=False)
    path = tmp_path / "ec_no_encodec.pt"
    torch.save(content, path)
    monkeypatch.delenv("ENCODECMAE_ENCODEC_WEIGHTS", raising=False)
    with pytest.raises(CheckpointError, match="encodec_24khz-d7cc33bc.th"):
        load_checkpoint(path)
    weights = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(build_encodec(seed=MANIFEST["encodec_seed"]).state_dict(), weights)
    monkeypatch.setenv("ENCODECMAE_ENCODEC_WEIGHTS", str(weights))
    model, payload = load_checkpoint(path)
    assert payload["provenance"]["encodec_weights"] == str(weights)
    ours, full = model.state_dict(), models("ec")[0].state_dict()
    assert ours.keys() == full.keys() and all(torch.equal(ours[k], full[k]) for k in ours)


def test_unknown_keys_are_refused(tmp_path):
    content = official_content("mel256_st")
    content["state_dict"]["visible_encoder.encoder_layers.0.ls1.gamma"] = torch.ones(40)
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="ls1.gamma"):
        load_checkpoint(path)


def test_unshared_ffn_builds_per_layer_ffns(tmp_path):
    content = official_content("mel256_st")
    state = content["state_dict"]
    for i in range(3):  # give every encoder and decoder layer its own FFN tensors
        for key in [k for k in state if f"encoder_layers.{i}.ff_layer." in k]:
            state[key] = state[key].clone() + 0.01 * i
    path = tmp_path / "unshared.pt"
    torch.save(content, path)
    model, _ = load_checkpoint(path)
    assert not model.config.share_ffn
    assert not torch.equal(model.encoder.layers[0].ffn[0].weight, model.encoder.layers[1].ffn[0].weight)


def test_names_resolve_in_checkpoint_dir(official_file, tmp_path, monkeypatch):
    (tmp_path / "upstreams").mkdir()
    (tmp_path / "upstreams" / "mel256-ec-base_st.pt").write_bytes(official_file("mel256_st").read_bytes())
    monkeypatch.setenv("ENCODECMAE_CHECKPOINT_DIR", str(tmp_path))
    model = load_model("mel256-ec-base_st")
    assert model.mae.config.num_streams == 1
    with pytest.raises(FileNotFoundError, match=r"upstreams/mel256-ec-base_st"):
        load_model("ecmae-large")


def test_reference_quirk_is_ours_to_skip(models):
    """Our own API keeps a 1.30 s clip's last partial frame; the reference masks it as a
    padded key (valid length len // 320), which changes every frame's attention."""
    model, _ = models("ec")
    spec = MANIFEST["inputs"]["short"]
    audio = torch.from_numpy(fixture_audio(spec["seed"], spec["samples"]))
    ours = model.encode(audio[None], torch.tensor([spec["samples"]]))[-1][0]
    assert _max_diff(ours, _reference("ec")["short_last"]) > 1e-3


def test_v1_reference_embeddings(tmp_path):
    """A v1 file (tag v.1.0.0 code: Lightning checkpoint, config.gin beside it) against
    the v1 code's own outputs, under its rules (valid = len(chunk) // 320, no chunk
    dropped, 'all' ends with the last layer's x0)."""
    folder = tmp_path / "v1_ec"
    folder.mkdir()
    content = torch.load(FIXTURES / "v1_ec" / "model.pt", map_location="cpu", weights_only=True)
    _restore(content["state_dict"], MANIFEST["v1"]["stripped"])
    torch.save(content, folder / "model.pt")
    (folder / "config.gin").write_text((FIXTURES / "v1_ec" / "config.gin").read_text())
    model, payload = load_checkpoint(folder / "model.pt")
    assert payload["provenance"]["source_layout"] == "v1" and "assumed" not in payload["provenance"]
    refs = _reference("v1_ec")
    for clip in ("short", "tail"):  # tail: 4 s + 1500 samples, which v1 keeps
        spec = MANIFEST["inputs"][clip]
        audio = torch.from_numpy(fixture_audio(spec["seed"], spec["samples"]))
        ours = reference_features(model, audio, "all", layout="v1")
        assert _max_diff(ours, refs[f"{clip}_all"]) <= TOLERANCE["encodec"], clip
        if clip == "short":  # v1's layer=-1 is the stack output, not 'all'[-1]
            last = reference_features(model, audio, -1, layout="v1")
            assert _max_diff(last, refs[f"{clip}_last"]) <= TOLERANCE["encodec"], clip


def test_mel_settings_other_than_ours_are_refused(tmp_path):
    content = official_content("mel256_st")
    content["config"] = content["config"].replace("window_type = 'hanning'", "window_type = 'hamming'")
    path = tmp_path / "hamming.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="window_type = 'hamming'"):
        load_checkpoint(path)


def test_incomplete_official_file(tmp_path):
    path = tmp_path / "empty.pt"
    torch.save({"state_dict": {}, "config": "MODEL_DIM = 768", "imports": ""}, path)
    with pytest.raises(CheckpointError, match="incomplete official checkpoint"):
        load_checkpoint(path)


def test_manifest_pins_the_reference_code_the_fixtures_were_made_with():
    """SPEC: the v2 reference is habla-liaa/encodecmae main at commit 2dd6759, v1 its tag
    v.1.0.0; the fixture tool records them in the manifest."""
    assert MANIFEST["reference_commit"] == REFERENCE_COMMIT == "2dd6759"
    assert MANIFEST["v1"]["reference_tag"] == V1_TAG == "v.1.0.0"
    assert MANIFEST["reference"].startswith("habla-liaa/encodecmae ")
    assert MANIFEST["v1"]["reference"] == f"habla-liaa/encodecmae tag {V1_TAG}"


def _counted_in_reference_build(name: str) -> dict:
    """Unique parameters per part of the reference-built file: every state-dict tensor
    once (a shared FFN is one storage under each layer's key), the stripped EnCodec
    tensors from the manifest's shapes, the RVQ codebooks (buffers) left out."""
    parts = [("wav_encoder.encoder.", "frontend"), ("target_encoder.encodec_encoder.", "target_encodec_encoder"),
             ("wav_encoder.post_net.", "input_proj"), ("masker.positional_encoder.", "positions"),
             ("decoder.positional_encoder.", "positions"), ("visible_encoder.post_net.", "encoder_proj"),
             ("visible_encoder.", "encoder"), ("decoder.", "decoder"), ("head.", "head")]
    state = official_content(name, with_encodec=False)["state_dict"]
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    shapes.update({k: tuple(v) for k, v in MANIFEST["variants"][name]["stripped"]["shapes"].items()})
    counts, seen = {}, set()
    for key, shape in shapes.items():
        if key.startswith("target_encoder.model."):
            continue
        if key in state:
            storage = (state[key].untyped_storage().data_ptr(), state[key].storage_offset(), shape)
            if storage in seen:
                continue
            seen.add(storage)
        part = next(p for prefix, p in parts if key.startswith(prefix))
        counts[part] = counts.get(part, 0) + int(np.prod(shape))
    return {**counts, "total": sum(counts.values())}


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts_equal_the_reference_builds(models, name):
    """Our breakdown() of each converted model against the committed counts of the
    reference-built file (which are checked to be what that file holds). The targets'
    EnCodec encoder of mel models is the tokenizer's in ours, not the model's."""
    expected = REFERENCE_COUNTS["fixtures"][name]
    assert _counted_in_reference_build(name) == expected
    ours = breakdown(models(name)[0])
    for part in ("frontend", "input_proj", "positions", "encoder", "encoder_proj", "decoder", "head"):
        assert ours[part] == expected.get(part, 0), part
    assert ours["total"] == expected["total"] - expected.get("target_encodec_encoder", 0)
