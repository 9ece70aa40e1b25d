"""Official EnCodecMAE checkpoints (GitHub habla-liaa/encodecmae) -> this project's model.

Two layouts exist, both read with `weights_only=True`:

* v2 (the current release, e.g. `mel256-ec-base_st.pt`): `{"imports", "config",
  "state_dict"}`, `config` being the gin `config_str()` of the training run. Sizes,
  frontend and head come from it (see gin_config.py); training, data and path bindings
  are not read.
* v1 (tag v.1.0.0, EnCodec input only): a PyTorch Lightning checkpoint whose
  `state_dict` uses `feat_projector`, `decoder_projector` and one `positional_encoder`
  shared by encoder and decoder; its gin file was published beside it as `config.gin`
  and is read from there when present (else 12 heads, the only value the reference used,
  is assumed and recorded).

Every source key is mapped to one of ours or ignored for a stated reason; any other key
is an error. The reference hands one FFN module to every layer of a stack, so the file
holds the same FFN tensors under each layer: they are checked to be identical and the
model is built with `share_ffn=True` (with `share_ffn=False` if they differ).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from encodecmae_hear.errors import UserError
from encodecmae_hear.files import sha256_of
from encodecmae_hear.model import frontend as fe
from encodecmae_hear.model.config import CODEBOOK_WEIGHTS, SAMPLE_RATE, ModelConfig
from encodecmae_hear.hub.encodec_weights import EncodecWeightsError, encodec_weights
from encodecmae_hear.model.encodec import build_encodec
from encodecmae_hear.official.gin import GinConfig, GinError, Ref

_STACK = r"encoder_layers\.(\d+)\.(att_layer\.w[qkvo]\.weight|ff_layer\.[02]\.(?:weight|bias)|norm[12]\.(?:weight|bias))"
_LAYER_RENAMES = {"att_layer": "attention", "ff_layer": "ffn"}
# source pattern -> our name (regex replacement); per layout
_RULES = {
    "v2": [
        (r"wav_encoder\.post_net\.(weight|bias)", r"input_proj.\1"),
        (r"wav_encoder\.encoder\.model\.(.+)", r"frontend.encoder.\1"),
        (r"masker\.positional_encoder\.scale", "encoder_positions.scale"),
        (r"decoder\.positional_encoder\.scale", "decoder_positions.scale"),
        (r"visible_encoder\.post_net\.(weight|bias)", r"encoder_proj.\1"),
    ],
    "v1": [
        (r"feat_projector\.(weight|bias)", r"input_proj.\1"),
        (r"wav_encoder\.model\.(.+)", r"frontend.encoder.\1"),
        (r"positional_encoder\.scale", "encoder_positions.scale"),  # and decoder_positions
        (r"decoder_projector\.(weight|bias)", r"encoder_proj.\1"),
    ],
}
_COMMON = [
    (rf"visible_encoder\.{_STACK}", r"encoder.layers.\1.\2"),
    (rf"decoder\.{_STACK}", r"decoder.layers.\1.\2"),
    (r"(visible_encoder|decoder)\.final_norm\.(weight|bias)", r"\1.final_norm.\2"),
    (r"head\.layer\.(weight|bias)", r"head.\1"),
]
_IGNORED = {
    r"target_encoder\..+": "training targets (EnCodec quantizer / encoder), not used for embeddings",
    r"extra_head\..+": "v1 training-only head for extra targets",
}


class OfficialCheckpointError(UserError, ValueError):
    pass


@dataclass
class Converted:
    """An official file in this project's terms; checkpoint.py makes the payload of it."""
    config: ModelConfig
    state: dict            # our EncodecMAE state dict, float32
    tokenizer: dict | None  # EnCodec tokenizer state (model/encodec.py keys), if the file has it
    provenance: dict


def detect_layout(obj) -> str | None:
    """'v2', 'v1' or None for an object loaded from a file."""
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        return None
    if isinstance(obj.get("config"), str) and "imports" in obj:
        return "v2"
    if any(k.startswith("feat_projector.") for k in obj["state_dict"]):
        return "v1"
    return None


def map_keys(state: dict, layout: str, path="checkpoint") -> tuple[dict, dict]:
    """Source state dict -> (our state dict, {ignored key: reason}). Unknown keys raise."""
    rules = [(re.compile(p + r"\Z"), r) for p, r in _RULES[layout] + _COMMON]
    out, ignored, unknown = {}, {}, []
    for key, tensor in state.items():
        for pattern, repl in rules:
            if pattern.match(key):
                new = pattern.sub(repl, key).replace("visible_encoder.", "encoder.")
                for old, ours in _LAYER_RENAMES.items():
                    new = new.replace(f".{old}.", f".{ours}.")
                out[new] = tensor
                if layout == "v1" and new == "encoder_positions.scale":
                    out["decoder_positions.scale"] = tensor  # v1 adds one encoder's positions twice
                break
        else:
            reason = next((r for p, r in _IGNORED.items() if re.fullmatch(p, key)), None)
            if reason is None:
                unknown.append(key)
            else:
                ignored[key] = reason
    if unknown:
        raise OfficialCheckpointError(
            f"{path}: {len(unknown)} keys this converter does not know, e.g. {unknown[:5]}; "
            f"refusing to drop them silently")
    return out, ignored


def _count_layers(state: dict, stack: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{stack}\.layers\.(\d+)\.", k))}
    if found != set(range(len(found))):
        raise OfficialCheckpointError(f"{stack} layers are not numbered 0..n-1: {sorted(found)}")
    return len(found)


def _ffn_shared(state: dict, stack: str, layers: int) -> bool:
    first = {k.split(".ffn.", 1)[1]: v for k, v in state.items() if k.startswith(f"{stack}.layers.0.ffn.")}
    return all(torch.equal(v, state[f"{stack}.layers.{i}.ffn.{name}"])
               for i in range(1, layers) for name, v in first.items())


def _check_defaults(gin: GinConfig, path) -> None:
    """Settings that would change the computation without changing any tensor shape."""
    expected = [("TransformerEncoder", "norm_type", "ResiDual"), ("MultiHeadAttention", "att_scale", None),
                ("MultiHeadAttention", "qk_proj_dim", None), ("MultiHeadAttention", "v_proj_dim", None),
                ("EncodecEncoder", "scale", 1.0), ("TransformerEncoder", "init_values", None),
                ("MultiHeadAttention", "mask_value", -1e9), ("ReadAudioProcessor", "max_length", 4),
                ("WavEncoder", "hop_length", 320), ("EncodecMAE", "positional_encoder",
                 Ref("tasks.models.transformers.SinusoidalPositionalEmbeddings"))]
    for name, param, value in expected:
        for scope in ("", "encoder", "decoder"):
            try:
                got = gin.get(name, param, scope, default=value)
            except GinError:  # bound to a macro the file does not define: not checkable
                continue
            if isinstance(value, Ref) and isinstance(got, Ref):
                got = value if got.name == value.name else got
            if got != value:
                raise OfficialCheckpointError(f"{path}: {scope}/{name}.{param} = {got!r}; this "
                                              f"converter supports only {value!r}")


# MelspectrogramProcessor's defaults in the reference (its `dither` is not passed on)
_MEL_DEFAULTS = dict(sample_frequency=16000, frame_shift=10, frame_length=25, htk_compat=False,
                     use_energy=False, window_type="povey", num_mel_bins=23, norm_stats=[0, 1],
                     low_freq=20, high_freq=0)


def _mel_settings_ok(gin: GinConfig, path) -> None:
    ours = dict(sample_frequency=SAMPLE_RATE, frame_shift=fe.MEL_SHIFT_MS, frame_length=fe.MEL_FRAME_MS,
                htk_compat=True, use_energy=False, window_type="hanning", num_mel_bins=fe.MEL_BINS,
                norm_stats=[fe.MEL_MEAN, fe.MEL_STD], low_freq=20, high_freq=0)
    for param, value in ours.items():
        got = gin.get("MelspectrogramProcessor", param, default=_MEL_DEFAULTS[param])
        if got != value:
            raise OfficialCheckpointError(f"{path}: mel frontend {param} = {got!r}, ours is {value!r}")


def build_config(state: dict, gin: GinConfig | None, layout: str, path="checkpoint"):
    """Our ModelConfig from the mapped state dict (shapes) and the gin config (heads,
    frontend, head layout); returns (config, notes)."""
    notes = {}
    dim, feature_dim = state["input_proj.weight"].shape
    frontend = {128: "encodec", 256: "mel256"}.get(feature_dim)
    if frontend is None:
        raise OfficialCheckpointError(f"{path}: input projection takes {feature_dim} features; "
                                      f"known frontends take 128 (EnCodec) or 256 (mel)")
    if gin is not None:
        try:
            _check_defaults(gin, path)
            if layout == "v2":
                encoder = gin.get("WavEncoder", "encoder")
                kind = {"EncodecEncoder": "encodec", "Identity": "mel256"}.get(getattr(encoder, "name", None))
                if kind != frontend:
                    raise OfficialCheckpointError(f"{path}: WavEncoder.encoder = {encoder!r} does not "
                                                  f"match {feature_dim}-d input features")
                if frontend == "mel256":
                    _mel_settings_ok(gin, path)
            heads = [gin.get("MultiHeadAttention", "num_heads", s) for s in ("encoder", "decoder")]
            out_shape = (gin.get("FrameLevelClassificationHead", "num_streams", default=8),
                         gin.get("FrameLevelClassificationHead", "num_tokens"))
        except GinError as err:
            raise OfficialCheckpointError(f"{path}: config: {err}") from None
    else:
        heads = [12, 12]
        rows = state["head.weight"].shape[0]
        out_shape = (rows // 1024, 1024) if rows % 1024 == 0 else (1, rows)
        notes["assumed"] = "no gin config: 12 heads and 1024 tokens per stream assumed"
    enc_layers, dec_layers = _count_layers(state, "encoder"), _count_layers(state, "decoder")
    shared = [_ffn_shared(state, s, n) for s, n in (("encoder", enc_layers), ("decoder", dec_layers))]
    if shared[0] != shared[1]:
        raise OfficialCheckpointError(f"{path}: FFN shared in one stack but not the other")
    streams, tokens = out_shape
    return ModelConfig(frontend=frontend, dim=dim, encoder_layers=enc_layers, encoder_heads=heads[0],
                       decoder_layers=dec_layers, decoder_heads=heads[1],
                       ff_dim=state["encoder.layers.0.ffn.0.weight"].shape[0], share_ffn=shared[0],
                       num_streams=streams, num_tokens=tokens,
                       stream_weights=tuple(_stream_weights(streams))), notes


def _stream_weights(streams: int):
    return CODEBOOK_WEIGHTS if streams == len(CODEBOOK_WEIGHTS) else (1.0,) * streams


def _encodec_encoder_state(weights: str | None, path, download: bool) -> tuple[dict, str]:
    """The official EnCodec encoder's weights, for a file that lacks them: given, cached, or
    (for a published model the user named) downloaded. -> (state, where they came from)."""
    try:
        found, _ = encodec_weights(weights, download=download)
    except EncodecWeightsError as err:
        raise OfficialCheckpointError(
            f"{path}: this EnCodec-input model's file has no EnCodec encoder weights "
            f"(wav_encoder.encoder.*): {err}; `python -m encodecmae_hear fetch --encodec` "
            f"downloads them") from None
    state = {f"frontend.encoder.{k}": v for k, v in build_encodec(found).encoder.state_dict().items()}
    return state, str(found)


def convert(obj: dict, path="checkpoint", gin_text: str | None = None,
            encodec_weights: str | None = None, sha256: str | None = None,
            download_encodec: bool = False) -> Converted:
    """A loaded official checkpoint -> its config, weights, tokenizer and provenance."""
    layout = detect_layout(obj)
    if layout is None:
        raise OfficialCheckpointError(f"{path}: not an official EnCodecMAE checkpoint")
    if layout == "v2":
        gin_text = obj["config"]
    state, ignored = map_keys(obj["state_dict"], layout, path)
    try:
        gin = GinConfig.parse(gin_text) if gin_text is not None else None
    except GinError as err:
        raise OfficialCheckpointError(f"{path}: config: {err}") from None
    missing = [k for k in ("input_proj.weight", "encoder.layers.0.ffn.0.weight", "head.weight") if k not in state]
    if missing:
        raise OfficialCheckpointError(f"{path}: incomplete official checkpoint: nothing maps to {missing}")
    config, notes = build_config(state, gin, layout, path)
    encodec_source = "checkpoint"
    if config.frontend == "encodec" and not any(k.startswith("frontend.encoder.") for k in state):
        encoder_state, encodec_source = _encodec_encoder_state(encodec_weights, path, download_encodec)
        state.update(encoder_state)
    tokenizer = _tokenizer_state(obj["state_dict"], state, ignored)
    reasons = sorted(set(ignored.values()))
    provenance = {
        "source": "official EnCodecMAE checkpoint (habla-liaa/encodecmae)",
        "source_file": str(path), "source_sha256": sha256, "source_layout": layout,
        "variant": describe(config), "encodec_weights": encodec_source if config.frontend == "encodec" else None,
        "ignored_keys": {r: sum(1 for v in ignored.values() if v == r) for r in reasons},
        "targets": "encodec" if config.num_streams == 8 else "kmeans (self-trained)", **notes,
    }
    return Converted(config, {k: v.float() for k, v in state.items()}, tokenizer, provenance)


def _tokenizer_state(source: dict, mapped: dict, ignored: dict) -> dict | None:
    """The EnCodec tokenizer (encoder + RVQ codebooks, tokenizer.py's keys) that made a
    pretrained model's targets, when the file holds all of it; None otherwise."""
    quantizer = {k[len("target_encoder.model."):]: v for k, v in source.items()
                 if k.startswith("target_encoder.model.")}
    encoder = {k[len("target_encoder.encodec_encoder."):]: v for k, v in source.items()
               if k.startswith("target_encoder.encodec_encoder.")}
    encoder = encoder or {k[len("frontend.encoder."):]: v for k, v in mapped.items()
                          if k.startswith("frontend.encoder.")}
    if not quantizer or not encoder:
        return None
    for key in ignored:
        if key.startswith("target_encoder."):
            ignored[key] = "carried into the checkpoint's tokenizer (training targets)"
    return {**{f"encoder.{k}": v for k, v in encoder.items()},
            **{f"quantizer.{k}": v for k, v in quantizer.items()}}


def describe(config) -> str:
    size = {(768, 5): "small", (768, 10): "base", (1024, 20): "large"}.get(
        (config.dim, config.encoder_layers), f"D={config.dim} {config.encoder_layers}-layer")
    st = "_st" if config.num_streams == 1 else ""
    return f"{'ec' if config.frontend == 'encodec' else 'mel256'}-ec-{size}{st}"


def read_official(path, obj=None, gin_path=None, encodec_weights=None,
                  download_encodec: bool = False) -> Converted:
    """An official file -> `Converted`. `obj` is the file's content if already loaded.
    For v1 files the gin config is `gin_path`, else `config.gin` beside the file.
    `download_encodec` lets an EnCodec-input file without its encoder fetch the official
    EnCodec weights (a published model the user named; never for a local file)."""
    path = Path(path)
    if obj is None:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    gin_text = None
    if detect_layout(obj) == "v1":
        gin_file = Path(gin_path) if gin_path else path.with_name("config.gin")
        gin_text = gin_file.read_text() if gin_file.is_file() else None
    return convert(obj, path, gin_text, encodec_weights, sha256_of(path), download_encodec)
