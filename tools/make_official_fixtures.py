"""Writes tests/fixtures/official/: small EnCodecMAE checkpoints in the official layout,
made and run by the reference implementation itself, with its embeddings.

    python tools/make_official_fixtures.py REF_SOURCE_DIR [OUT_DIR] [--real-size large]

REF_SOURCE_DIR is a work tree of the reference (GitHub habla-liaa/encodecmae, v2 code:
main at commit REFERENCE_COMMIT; with --v1, tag V1_TAG; both recorded in the manifest)
that holds the `encodecmae` package; it must be importable together with its own
dependencies (gin-config, ginpipe, pytorch-lightning, librosa, loguru, huggingface_hub,
encodec). This script contains no reference code: it imports the reference package from
REF_SOURCE_DIR and drives it through its public functions:

1. the reference's gin configs (configs/models/encodecmae.gin, configs/features/*.gin,
   configs/features/st.gin for self-trained models) plus macro overrides for small
   sizes are parsed with the reference's module list (configs/imports) and the model
   is built by gin; every non-EnCodec weight is perturbed with seeded noise so that a
   wrong key mapping (a bias, a LayerNorm, a positional scale) cannot go unnoticed;
2. it is saved as `{"imports", "config": gin.config_str(), "state_dict"}` (the v2
   layout that the reference's hub loader reads) and loaded back with the reference's
   own `encodecmae.hub.load_model` (its download replaced by the local file);
3. `extract_features_from_array` runs with layer=-1 and layer='all' on fixed inputs.

No network: EnCodec's `encodec_model_24khz(pretrained=True)` is patched to build the
untrained model under torch.manual_seed(ENCODEC_SEED), which is exactly what
`encodecmae_hear.model.encodec.build_encodec(seed=ENCODEC_SEED)` builds. To keep the
committed files small, the EnCodec tensors (`wav_encoder.encoder.*`,
`target_encoder.*`) are removed from the stored checkpoints; the manifest records
their names, shapes and a sha256, and the tests put them back from build_encodec
and check the hash before comparing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REFERENCE_COMMIT = "2dd6759"  # habla-liaa/encodecmae main: the v2 code (SPEC); recorded in the manifest
V1_TAG = "v.1.0.0"            # the v1 layout's code
ENCODEC_SEED = 0
WEIGHT_SEED = 1234
SMALL = {"MODEL_DIM": 40, "NUM_ENCODER_LAYERS": 3, "NUM_TARGET_TOKENS": 64}
SMALL_FF_DIM = 64
# name -> (frontend features config, self-trained)
VARIANTS = {
    "ec": ("wav_only.gin", False),
    "mel256": ("mel.gin", False),
    "ec_st": ("wav_only.gin", True),
    "mel256_st": ("mel.gin", True),
}
# Macro overrides that give the released sizes (the gin defaults are Base's).
REAL_SIZES = {"small": {"NUM_ENCODER_LAYERS": 5}, "base": {},
              "large": {"NUM_ENCODER_LAYERS": 20, "MODEL_DIM": 1024}}
# Fixed inputs: name -> (seed, samples at 24 kHz). "short": 1.30 s, not a multiple of
# 320 (the reference masks its last frame); "long": 4 s + 3000 samples (two chunks,
# nothing masked); "tail": 4 s + 1500 samples (the reference drops the tail).
INPUTS = {"short": (1, 31_300), "long": (2, 99_000), "tail": (3, 97_500)}
# HEAR check: 4 s of uniform noise at 48 kHz (numpy PCG64, seed 4), resampled to
# 24 kHz with torchaudio before it goes to the reference.
HEAR_INPUT = (4, 192_000, 48_000)
STRIPPED_PREFIXES = ("wav_encoder.encoder.", "target_encoder.")
V1_STRIPPED_PREFIXES = ("wav_encoder.model.", "target_encoder.")  # EnCodec in the v1 layout


def fixture_audio(seed: int, n: int) -> np.ndarray:
    """The fixed test signal (also used by tests/test_official.py): uniform noise in
    [-0.5, 0.5) from numpy's PCG64, plus a 440 Hz tone, float32."""
    t = np.arange(n) / 24_000
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, n)
    return (0.6 * noise + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def patch_encodec_offline() -> None:
    import encodec

    original = encodec.EncodecModel.encodec_model_24khz

    def untrained_24khz(pretrained=True, repository=None):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ENCODEC_SEED)
            return original(pretrained=False)

    encodec.EncodecModel.encodec_model_24khz = staticmethod(untrained_24khz)


def gin_text(ref: Path, features: str, st: bool, macros: dict, ff_dim: int | None) -> str:
    from ginpipe.core import process_appends

    configs = ref / "encodecmae" / "configs"
    parts = [(configs / "models" / "encodecmae.gin").read_text(),
             (configs / "features" / features).read_text()]
    if st:
        parts.append((configs / "features" / "st.gin").read_text())
    parts.append("MAX_AUDIO_DURATION=4\nMAX_LR=0.0001\n")
    parts += [f"{k}={v}" for k, v in macros.items()]
    if ff_dim is not None:
        for scope in ("encoder", "decoder"):
            parts.append(f"{scope}/encodecmae.models.transformers.TransformerEncoder.ff_dim={ff_dim}")
    parts.append("encodecmae.hub.get_model.model=@encodecmae.models.EncodecMAE\n"
                 "encodecmae.hub.get_model.processor=@encodecmae.tasks.features.SequentialProcessor")
    _, text = process_appends(None, "\n".join(parts) + "\n")  # ginpipe's `+=` handling
    return text


def perturb(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(WEIGHT_SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.startswith(STRIPPED_PREFIXES + V1_STRIPPED_PREFIXES):  # EnCodec stays as built
                continue
            if p.ndim == 0:     # positional scales
                p.copy_(torch.rand((), generator=gen) + 0.5)
            elif p.ndim == 1:   # biases and LayerNorms
                p.add_(0.2 * torch.randn(p.shape, generator=gen))


def build_official(ref: Path, features: str, st: bool, macros: dict, ff_dim) -> dict:
    import encodecmae.hub as hub
    import gin
    from ginpipe.core import gin_configure_externals

    imports = (ref / "encodecmae" / "configs" / "imports").read_text()
    gin.clear_config()
    gin_configure_externals({"module_list_str": imports})
    gin.parse_config(gin_text(ref, features, st, macros, ff_dim))
    model_cls, _ = hub.get_model()
    torch.manual_seed(WEIGHT_SEED)
    model = model_cls()
    perturb(model)
    payload = {"imports": imports, "config": gin.config_str(), "state_dict": model.state_dict()}
    gin.clear_config()
    return payload


def load_with_reference(path: Path):
    import encodecmae.hub as hub

    name = path.stem
    hub.get_available_models = lambda: [name]
    hub.hf_hub_download = lambda repo_id, filename: str(path)
    model = hub.load_model(name, device="cpu")
    # A self-training config keeps its target loader in the processor list, which
    # breaks the reference's own inference (KeyError 'filename_targets'): drop it.
    procs = model.processor._processors
    model.processor._processors = [p for p in procs if type(p).__name__ != "LoadNumpyProcessor"]
    return model


def run_reference(model, audio: np.ndarray, layer):
    return np.asarray(model.extract_features_from_array(audio, layer=layer), dtype=np.float32)


def sha256_of(tensors: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def make_variant(ref: Path, out: Path, name: str, tmp: Path) -> dict:
    import torchaudio

    features, st = VARIANTS[name]
    payload = build_official(ref, features, st, SMALL, SMALL_FF_DIM)
    full = tmp / f"{name}.pt"
    torch.save(payload, full)
    model = load_with_reference(full)

    refs = {}
    for clip, (seed, n) in INPUTS.items():
        audio = fixture_audio(seed, n)
        refs[f"{clip}_last"] = run_reference(model, audio, -1)[0]      # (T, D)
        refs[f"{clip}_all"] = run_reference(model, audio, "all")       # (L, T, D)
    seed, n, rate = HEAR_INPUT
    audio48 = torch.from_numpy(np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32))
    audio24 = torchaudio.functional.resample(audio48, rate, 24_000).numpy()
    refs["hear_last"] = run_reference(model, audio24, -1)[0]
    np.savez_compressed(out / f"{name}_reference.npz", **refs)

    state = payload["state_dict"]
    stripped = {k: v for k, v in state.items() if k.startswith(STRIPPED_PREFIXES)}
    kept = dict(payload, state_dict={k: v for k, v in state.items() if k not in stripped})
    torch.save(kept, out / f"{name}.pt")
    return {"features_config": features, "self_trained": st,
            "stripped": {"sha256": sha256_of(stripped),
                         "shapes": {k: list(v.shape) for k, v in sorted(stripped.items())}},
            "outputs": {k: list(v.shape) for k, v in refs.items()}}


def make_v1(ref: Path, out: Path) -> dict:
    """The v1 layout (tag v.1.0.0): a Lightning-style checkpoint `model.pt` with its
    `config.gin` and `imports` beside it, as its hub published them, loaded and run by
    the v1 code's own hub loader. EnCodec input only (v1 had no mel models)."""
    import encodecmae.hub as hub
    import gin
    from ginpipe.core import gin_configure_externals

    folder = out / "v1_ec"
    folder.mkdir(exist_ok=True)
    configs = ref / "encodecmae" / "configs"
    imports = (configs / "imports").read_text()
    text = "\n".join([(configs / "models" / "encodecmae.gin").read_text(), "MAX_LR=0.0001"]
                     + [f"{k}={v}" for k, v in SMALL.items()]
                     + [f"{s}/tasks.models.transformers.TransformerEncoder.{p}={v}"
                        for s in ("encoder", "decoder") for p, v in (("ff_dim", SMALL_FF_DIM), ("compile", False))]
                     + ["encodecmae.hub.get_model.model=@tasks.models.EncodecMAE"]) + "\n"
    gin.clear_config()
    gin_configure_externals({"module_list_str": imports})
    gin.parse_config(text)
    torch.manual_seed(WEIGHT_SEED)
    model = hub.get_model()()
    perturb(model)
    state = model.state_dict()
    lightning = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.0.0", "state_dict": state}
    config_str = gin.config_str()
    gin.clear_config()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"model.pt": Path(tmp) / "model.pt", "config.gin": Path(tmp) / "config.gin",
                 "imports": Path(tmp) / "imports"}
        torch.save(lightning, files["model.pt"])
        files["config.gin"].write_text(config_str)
        files["imports"].write_text(imports)
        hub.models = {"v1_ec": "local/v1_ec"}
        hub.hf_hub_download = lambda repo_id, filename: str(files[filename])
        ref_model = hub.load_model("v1_ec", device="cpu")
    refs = {}
    for clip, (seed, n) in INPUTS.items():
        audio = fixture_audio(seed, n)
        refs[f"{clip}_last"] = np.asarray(ref_model.extract_features_from_array(audio, layer=-1))[0]
        refs[f"{clip}_all"] = np.asarray(ref_model.extract_features_from_array(audio, layer="all"))
    np.savez_compressed(out / "v1_ec_reference.npz", **refs)
    stripped = {k: v for k, v in state.items() if k.startswith(V1_STRIPPED_PREFIXES)}
    lightning["state_dict"] = {k: v for k, v in state.items() if k not in stripped}
    torch.save(lightning, folder / "model.pt")
    (folder / "config.gin").write_text(config_str)
    (folder / "imports").write_text(imports)
    return {"self_trained": False, "outputs": {k: list(v.shape) for k, v in refs.items()},
            "stripped": {"sha256": sha256_of(stripped),
                         "shapes": {k: list(v.shape) for k, v in sorted(stripped.items())}}}


def real_size(ref: Path, size: str, out: Path) -> None:
    """Full-size structural check (not committed): the official file, and the
    reference's output on the short clip, under OUT/real_<size>/."""
    macros = REAL_SIZES[size]
    target = out / f"real_{size}"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("ec", "mel256_st"):
        features, st = VARIANTS[name]
        payload = build_official(ref, features, st, macros, None)
        path = target / f"{name}.pt"
        torch.save(payload, path)
        model = load_with_reference(path)
        n_params = sum(p.numel() for p in model.parameters())
        seed, n = INPUTS["short"]
        np.save(target / f"{name}_short_all.npy", run_reference(model, fixture_audio(seed, n), "all"))
        print(f"{size} {name}: {n_params} unique parameters in the reference model; "
              f"{len(payload['state_dict'])} state_dict keys")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref_source", type=Path, help="work tree holding the reference's encodecmae package")
    parser.add_argument("out", type=Path, nargs="?", default=Path("tests/fixtures/official"))
    parser.add_argument("--real-size", choices=("small", "base", "large"),
                        help="instead: write a full-size check under OUT/real_<size>")
    parser.add_argument("--v1", action="store_true",
                        help="REF_SOURCE_DIR holds the v1 code (tag v.1.0.0): write OUT/v1_ec/ "
                             "and add it to OUT/manifest.json")
    args = parser.parse_args()
    ref = args.ref_source.resolve()
    if not (ref / "encodecmae" / "hub.py").is_file():
        parser.error(f"{ref} does not hold the reference's encodecmae package")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ref))
    os.chdir(tempfile.mkdtemp())  # ginpipe resolves modules from the working directory first
    torch.set_num_threads(2)
    patch_encodec_offline()
    if args.real_size:
        real_size(ref, args.real_size, out)
        return 0
    if args.v1:
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["v1"] = {"reference": f"habla-liaa/encodecmae tag {V1_TAG}", "reference_tag": V1_TAG,
                          **make_v1(ref, out)}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return 0
    manifest = {"reference": "habla-liaa/encodecmae (v2 code)", "reference_commit": REFERENCE_COMMIT,
                "encodec_seed": ENCODEC_SEED,
                "weight_seed": WEIGHT_SEED, "macros": SMALL, "ff_dim": SMALL_FF_DIM,
                "inputs": {k: {"seed": s, "samples": n} for k, (s, n) in INPUTS.items()},
                "hear_input": dict(zip(("seed", "samples", "sample_rate"), HEAR_INPUT)),
                "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in VARIANTS:
            manifest["variants"][name] = make_variant(ref, out, name, Path(tmp))
            print("wrote", name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
