"""Embedding speed and memory of the HEAR path under each `dtype` option (fp32, bf16,
int8), and of the reference implementation (not a test: prints figures).

For each preset x frontend x duration, fresh subprocesses embed one sound of noise:
ours through `get_timestamp_embeddings` at 48 kHz, once per dtype, and, with
`--reference-src`, the reference's `extract_features_from_array` on the same noise
resampled to 24 kHz (its own rate). Each prints the real-time factor (audio seconds
per wall second, best of a few runs) and its peak RSS. The variants run interleaved,
`--rounds` times, and the best of each is kept: other jobs on the machine only add time.

* `bf16 cos`, `int8 cos`: cosine similarity of the bf16 / int8 embeddings to the fp32
  ones of the same model on the first 10 s, per frame and per encoder layer; the lowest
  layer mean is shown.
* `bare/HEAR`: the fp32 model's window forward on audio already at 24 kHz and cut into
  4 s windows, over the HEAR path (1.0 = the wrapper costs nothing).
* The reference (GitHub habla-liaa/encodecmae, v2 code) is built from its own gin
  configs by tools/make_official_fixtures.py, with random weights and an untrained
  EnCodec, and runs in a Python that has its dependencies (`--reference-python`).
* `--interleaved`: also every dtype in one process, timed call by call in turn, with
  their speeds over fp32 (on a busy machine steadier than the separate processes).
* bf16 and the reference run on durations up to 600 s only (bf16 is slower than fp32 on
  CPUs without bf16 matrix units). Without --reference-src only ours are shown.

    python bench/embed.py                         # small, base x encodec, mel256 x 10 s, 60 s, 1 h
    python bench/embed.py --durations 60 --threads 2 --rounds 3   # ours only: fp32, bf16, int8
    python bench/embed.py --presets mini --durations 10 60 --dtypes fp32
    python bench/embed.py --durations 60 --threads 2 --rounds 3 --reference-src ../encodecmae \\
        --reference-python ../refvenv/bin/python
    python bench/embed.py --device cuda
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_SECONDS = 10.0
SIDE_MAX_SECONDS = 600  # bf16 and the reference run on durations up to this only
DTYPES = ("fp32", "bf16", "int8")  # hear.DTYPES, named here so that --help needs no torch
REFERENCE_FEATURES = {"encodec": "ec", "mel256": "mel256"}  # our frontend -> fixture variant


def noise(seconds: float, rate: int = 48000):
    import torch

    torch.manual_seed(0)
    return (0.1 * torch.randn(1, int(seconds * rate))).clamp(-1, 1)


def best_time(fn, repeats: int, sync=lambda: None) -> float:
    best = float("inf")
    for _ in range(repeats):  # the machine's noise only adds time
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def dtype_cosine(mae, device: str, dtype: str) -> dict:
    """Per-layer cosine of `dtype` to fp32 embeddings ("input+concat": every block)."""
    import torch

    from encodecmae_hear.hear import HearModel, get_timestamp_embeddings

    audio = noise(ACCURACY_SECONDS).to(device)
    fp32, bf16 = (get_timestamp_embeddings(audio, HearModel(mae, layer="input+concat", dtype=d).to(device))[0]
                  for d in ("fp32", dtype))
    blocks = fp32.shape[-1] // mae.config.dim
    cos = torch.nn.functional.cosine_similarity(
        fp32.view(-1, blocks, mae.config.dim), bf16.view(-1, blocks, mae.config.dim), dim=-1)
    return {"cos_layer_mean_min": cos.mean(0).min().item(), "cos_frame_min": cos.min().item()}


def run_ours(preset: str, frontend: str, seconds: float, device: str, dtype: str, repeats: int,
             malloc: str = "tuned") -> dict:
    import torch

    from encodecmae_hear import hear
    from encodecmae_hear.hear import HearModel, get_timestamp_embeddings
    from encodecmae_hear.model.config import CHUNK_SAMPLES
    from encodecmae_hear.model.config import preset as make_config
    from encodecmae_hear.model.mae import EncodecMAE

    if malloc == "default":  # glibc's own thresholds (allocator.py)
        hear.keep_freed_memory = lambda: False
    def fresh():  # the same random weights every time
        torch.manual_seed(0)
        return EncodecMAE(make_config(preset, frontend)).eval()

    model = HearModel(fresh(), sample_rate=48000, dtype=dtype).to(device)  # int8: as load_model
    # leaves it, without the fp32 Linear weights
    audio = noise(seconds).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    get_timestamp_embeddings(audio[:, :48000], model)  # warm-up
    hear_s = best_time(lambda: get_timestamp_embeddings(audio, model), repeats, sync)
    result = {"rtf": seconds / hear_s, "peak_rss_mb": peak_rss_mb()}
    if dtype == "fp32" and seconds <= 600:  # bare window forward on pre-cut 24 kHz windows
        wav24 = torch.stack([c for c, _ in model.chunker.chunks(audio[0].cpu())]).to(device)
        lengths = torch.full((wav24.shape[0],), CHUNK_SAMPLES, device=device)
        step = model.windows_per_batch(torch.device(device))
        bare_s = best_time(lambda: [model.encode_windows(wav24[i:i + step], lengths[i:i + step])
                                    for i in range(0, wav24.shape[0], step)], repeats, sync)
        result["bare_over_hear"] = bare_s / hear_s
    if dtype != "fp32":
        result.update(dtype_cosine(fresh(), device, dtype))
    return result


def run_interleaved(preset: str, frontend: str, seconds: float, device: str, dtypes, repeats: int) -> dict:
    """Every dtype's model in this one process, timed call by call in turn (`repeats`
    rounds, the best of each kept): on a busy machine the ratios between the options
    hold better than in separate processes, which run at different moments."""
    import torch

    from encodecmae_hear.hear import HearModel, get_timestamp_embeddings
    from encodecmae_hear.model.config import preset as make_config
    from encodecmae_hear.model.mae import EncodecMAE

    models = {}
    for dtype in dtypes:
        torch.manual_seed(0)
        models[dtype] = HearModel(EncodecMAE(make_config(preset, frontend)).eval(), dtype=dtype).to(device)
    audio = noise(seconds).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for model in models.values():
        get_timestamp_embeddings(audio[:, :48000], model)  # warm-up
    best = {dtype: float("inf") for dtype in dtypes}
    for _ in range(repeats):
        for dtype, model in models.items():
            best[dtype] = min(best[dtype], best_time(lambda: get_timestamp_embeddings(audio, model), 1, sync))
    return {dtype: seconds / best[dtype] for dtype in dtypes}


def run_reference(preset: str, frontend: str, seconds: float, ref_src: str, repeats: int) -> dict:
    import torch

    from encodecmae_hear.audio import resample

    spec = importlib.util.spec_from_file_location("fixtures", ROOT / "tools" / "make_official_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    ref = Path(ref_src).resolve()
    sys.path.insert(0, str(ref))
    os.chdir(tempfile.mkdtemp())  # ginpipe resolves modules from the working directory first
    fixtures.patch_encodec_offline()
    features, _ = fixtures.VARIANTS[REFERENCE_FEATURES[frontend]]
    payload = fixtures.build_official(ref, features, False, fixtures.REAL_SIZES[preset], None)
    path = Path.cwd() / f"{preset}_{frontend}.pt"
    torch.save(payload, path)
    model = fixtures.load_with_reference(path)
    audio = resample(noise(seconds)[0], 48000, 24000).numpy()
    model.extract_features_from_array(audio[:24000], layer=-1)  # warm-up
    ref_s = best_time(lambda: model.extract_features_from_array(audio, layer=-1), repeats)
    return {"rtf": seconds / ref_s, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    preset, frontend, seconds, variant = args.case.split(",")
    repeats = args.repeats if float(seconds) <= 600 else 1
    if variant == "interleaved":
        return run_interleaved(preset, frontend, float(seconds), args.device, args.dtypes, repeats)
    if variant == "reference":
        return run_reference(preset, frontend, float(seconds), args.reference_src, repeats)
    return run_ours(preset, frontend, float(seconds), args.device, variant, repeats, args.malloc)


def spawn(args, preset: str, frontend: str, seconds: float, variant: str) -> dict | str:
    python, env = sys.executable, dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if variant == "reference":
        python = args.reference_python or sys.executable
    cmd = [python, __file__, "--case", f"{preset},{frontend},{seconds},{variant}", "--dtypes", *args.dtypes,
           "--device", args.device, "--threads", str(args.threads or 0), "--repeats", str(args.repeats),
           "--malloc", args.malloc]
    if args.reference_src:
        cmd += ["--reference-src", args.reference_src]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return f"FAILED: {out.stderr.strip()[-300:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "base"])
    parser.add_argument("--frontends", nargs="+", default=["encodec", "mel256"])
    parser.add_argument("--durations", nargs="+", type=float, default=[10, 60, 3600], help="seconds of audio")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in every run "
                        "(ours and the reference alike); 0 leaves torch's default")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs in each process, after a "
                        "warm-up (one for audio over 600 s)")
    parser.add_argument("--reference-src", help="work tree of the reference (habla-liaa/encodecmae, v2) "
                        "holding its `encodecmae` package: also time its extraction")
    parser.add_argument("--reference-python", help="a Python with the reference's dependencies "
                        "(gin-config, ginpipe, pytorch-lightning, librosa, loguru, huggingface_hub, "
                        "encodec); default: this one")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="glibc's allocator as the HEAR model sets it (encodecmae_hear/allocator.py), "
                             "or glibc's defaults, to see what the setting gives")
    parser.add_argument("--interleaved", action="store_true",
                        help="also time every dtype in one process, call by call in turn, and "
                             "print their speeds relative to fp32 (steadier on a busy machine)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    import torch

    cpu = "" if args.device != "cpu" else f", CPU {torch.backends.cpu.get_cpu_capability()}"
    print(f"device {args.device}, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}"
          f"{cpu}, malloc {args.malloc}, load {os.getloadavg()[0]:.1f}")
    ours = list(args.dtypes)
    columns = ours + (["reference"] if args.reference_src else [])
    lower = [d for d in ours if d != "fp32"]
    print(f"{'preset':6s} {'frontend':8s} {'audio':>6s} " + " ".join(f"{d[:9]:>9s}" for d in columns)
          + "".join(f" {d + '/ref':>9s}" for d in ours if args.reference_src)
          + "".join(f" {d + ' cos':>9s}" for d in lower)
          + f" {'peak RSS MB ' + '/'.join(columns):>30s} {'bare/HEAR':>9s}")
    for preset in args.presets:
        for frontend in args.frontends:
            for seconds in args.durations:
                variants = [v for v in ours if v != "bf16" or seconds <= SIDE_MAX_SECONDS]
                if args.reference_src and seconds <= SIDE_MAX_SECONDS:
                    variants.append("reference")
                best: dict[str, dict] = {}
                for _ in range(args.rounds):
                    for variant in variants:
                        r = spawn(args, preset, frontend, seconds, variant)
                        if isinstance(r, str):
                            print(f"{preset} {frontend} {seconds:.0f}s {variant} {r}", flush=True)
                            continue
                        if variant not in best or r["rtf"] > best[variant]["rtf"]:
                            best[variant] = {**r, "peak_rss_mb": max(r["peak_rss_mb"],
                                                                     best.get(variant, r)["peak_rss_mb"])}
                rtf = {v: best[v]["rtf"] if v in best else None for v in columns}
                ref = rtf.get("reference")
                row = f"{preset:6s} {frontend:8s} {seconds:5.0f}s " + " ".join(
                    f"{fmt(rtf[v], '8.1f', '       -')}x" for v in columns)
                if args.reference_src:
                    row += "".join(f" {fmt(rtf[v] / ref if rtf[v] and ref else None, '9.2f', '        -')}"
                                   for v in ours)
                row += "".join(f" {fmt(best.get(v, {}).get('cos_layer_mean_min'), '9.6f', '        -')}"
                               for v in lower)
                rss = "/".join(fmt(best.get(v, {}).get("peak_rss_mb"), ".0f") for v in columns)
                row += f" {rss:>30s} {fmt(best.get('fp32', {}).get('bare_over_hear'), '9.3f', '        -')}"
                print(row, flush=True)
                if args.interleaved:
                    r = spawn(args, preset, frontend, seconds, "interleaved")
                    print(f"{'':6s} {'':8s} {'':6s} " + (r if isinstance(r, str) else " ".join(
                        f"{fmt(r.get(v), '8.1f', '       -')}x" for v in ours)
                        + "  in one process, interleaved; over fp32: " + ", ".join(
                        f"{v} {r[v] / r['fp32']:.2f}" for v in ours if v != "fp32" and "fp32" in r)), flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
