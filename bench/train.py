"""Training throughput benchmark (not a test): prints figures per preset.

    python bench/train.py                       # tiny, mini, small on this machine
    python bench/train.py --presets base --batch 64 --steps 20 --device cuda
    python bench/train.py --presets "" --threads 1 --loader-seconds 10   # the loader only

Per preset: optimizer steps/s and samples/s of the model alone (targets precomputed),
the same with EnCodec targets computed on the fly, an MFU estimate (model FLOPs per
step from the config, over the device's peak: a table for GPUs, a measured fp32 matmul
rate for CPUs), and peak memory. Separately: the data loader's throughput in 4 s crops
per second, in the main process and per loader process, on the same generated audio
stored three ways (loader_data): files at 16-48 kHz, Opus tar shards, raw shards.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from encodecmae_hear.audio import resample  # noqa: E402
from encodecmae_hear.model.config import SAMPLE_RATE, preset  # noqa: E402
from encodecmae_hear.model.encodec import (
    EncodecTokenizer,  # noqa: E402
    build_encodec,  # noqa: E402
)
from encodecmae_hear.model.mae import EncodecMAE  # noqa: E402
from encodecmae_hear.train.data import ManifestSource, make_loader, open_source  # noqa: E402
from encodecmae_hear.train.manifest import describe, write_shards  # noqa: E402
from encodecmae_hear.train.objectives import EncodecTargets  # noqa: E402
from encodecmae_hear.train.raw_shards import write_raw_shards  # noqa: E402

GPU_PEAK_TFLOPS = {"H100": 989, "H200": 989, "A100": 312, "A10": 125, "L4": 121, "L40": 181,
                   "4090": 165, "3090": 71, "V100": 125, "T4": 65}  # dense bf16/fp16


def model_flops_per_sample(config, frames: int) -> float:
    """Forward + backward (3x forward) FLOPs of the trained parts for one crop."""
    d, ff, visible = config.dim, config.ff_dim, int(frames * (1 - config.mask_prop))

    def stack(layers, heads, tokens):
        inner = (d // heads) * heads
        per_token = 8 * d * inner + 4 * tokens * inner + 4 * d * ff
        return layers * per_token * tokens

    forward = (2 * config.feature_dim * d * frames + stack(config.encoder_layers, config.encoder_heads, visible)
               + 2 * d * d * visible + stack(config.decoder_layers, config.decoder_heads, frames)
               + 2 * d * config.num_streams * config.num_tokens * frames)
    return 3.0 * forward


def peak_flops(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} table bf16 peak"
        return float("nan"), f"{name} (peak unknown)"
    a = torch.randn(1024, 1024)
    a @ a
    start, n = time.perf_counter(), 20
    for _ in range(n):
        a @ a
    rate = n * 2 * 1024**3 / (time.perf_counter() - start)
    return rate, f"measured fp32 matmul ({torch.get_num_threads()} threads)"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_preset(name, frontend, batch, steps, device, precision):
    torch.manual_seed(0)
    encodec = build_encodec()
    tokenizer = EncodecTokenizer(encodec)
    for layer in tokenizer.quantizer.vq.layers[:8]:  # codebooks: random frames, as an init would
        layer._codebook.inited.fill_(1)
    config = preset(name, frontend)
    model = EncodecMAE(config, encodec_model=encodec if frontend == "encodec" else None).to(device).train()
    objective = EncodecTargets(tokenizer, config, "bench", share_frontend=frontend == "encodec").to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    wav = (torch.randn(batch, 4 * SAMPLE_RATE) * 0.1).to(device)
    lengths = torch.full((batch,), wav.shape[1], device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    fixed = objective.targets(wav, lengths, {})

    def step(with_targets: bool):
        with autocast:
            out = model(wav, lengths)
        targets = objective.targets(wav, lengths, out) if with_targets else fixed
        objective.loss(out, targets)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    results = {}
    for label, with_targets in (("model", False), ("with targets", True)):
        step(with_targets)  # warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(with_targets)
        sync(device)
        results[label] = steps / (time.perf_counter() - start)
    frames = model.frontend(wav[:1, :]).shape[1] if frontend == "mel256" else 300
    return results, model_flops_per_sample(config, frames) * batch


LOADER_SOURCES = ("files", "opus-tar", "raw")


def loader_data(kind: str, tmp: Path):
    """The same audio (16 files of 30 s stereo noise) as a training source of `kind`:
    "files": a manifest of WAV / FLAC / Ogg Vorbis at 16-48 kHz (decoded and resampled per
    crop); "opus-tar": mono 24 kHz Opus in tar shards (`make corpus`'s packed copy);
    "raw": raw shards (mono 24 kHz int16, memory-mapped; train/raw_shards.py)."""
    rng = np.random.default_rng(0)
    records = []
    for i, (sr, ext) in enumerate([(44100, "flac"), (16000, "wav"), (48000, "ogg"), (24000, "wav")] * 4):
        path = tmp / f"{i}.{ext}"
        sf.write(path, (0.1 * rng.standard_normal((sr * 30, 2))).astype(np.float32), sr)
        records.append(describe(path, 0.2)[0])
    if kind == "files":
        return ManifestSource(records), None
    if kind == "raw":
        done = write_raw_shards(records, tmp / "raw")
        return open_source(tmp / "raw", 0), done["bytes"] / (done["hours"] * 3600)
    opus = []
    for i, record in enumerate(records):
        audio, sr = sf.read(record["path"], dtype="float32")
        path = tmp / f"{i}.opus"
        sf.write(path, resample(audio.mean(axis=1), sr, SAMPLE_RATE), SAMPLE_RATE, format="OGG", subtype="OPUS")
        opus.append(describe(path, 0.2)[0])
    write_shards(opus, tmp / "tar", per_shard=4)
    return open_source(tmp / "tar", 0), sum(p.stat().st_size for p in (tmp / "tar").glob("*.tar")) / (16 * 30)


def bench_loader(kind: str, workers: int, seconds: float) -> tuple[float, float | None]:
    """-> (4 s crops per second, bytes stored per second of audio) of a loader over the
    `kind` source, micro-batches of 8, `workers` loader processes (0: this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, stored = loader_data(kind, Path(tmp))
        loader = iter(make_loader(source, 8, 0, 1, 0, 0, num_workers=workers, prefetch=2))
        for _ in range(2 * workers + 1):  # start the workers and drain what they prefetched
            next(loader)
        start, crops = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            crops += next(loader)["wav"].shape[0]
        return crops / (time.perf_counter() - start), stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,mini,small")
    parser.add_argument("--frontend", default="mel256", choices=("mel256", "encodec"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", default="0,1", help="data-loader worker counts to time")
    parser.add_argument("--loader-sources", default=",".join(LOADER_SOURCES),
                        help=f"data sources to time the loader on ({', '.join(LOADER_SOURCES)})")
    parser.add_argument("--loader-seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    peak, peak_note = peak_flops(device)
    print(f"device {device} ({peak_note}: {peak / 1e12:.3f} TFLOP/s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {precision}, batch {args.batch} x 4 s crops, "
          f"{args.frontend} frontend")
    print(f"{'preset':8} {'steps/s':>8} {'samples/s':>10} {'+targets steps/s':>17} "
          f"{'+targets samples/s':>19} {'MFU':>6} {'peak mem':>10}")
    for name in filter(None, args.presets.split(",")):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        results, flops = bench_preset(name, args.frontend, args.batch, args.steps, device, precision)
        memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                  else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        mfu = results["model"] * flops / peak
        print(f"{name:8} {results['model']:8.3f} {results['model'] * args.batch:10.2f} "
              f"{results['with targets']:17.3f} {results['with targets'] * args.batch:19.2f} "
              f"{mfu:6.1%} {memory / 2**30:8.2f} GiB" + ("" if device.type == "cuda" else " (process RSS)"))
    print("data loader: micro-batches of 8 crops of 4 s, mono 24 kHz, from 16 files of 30 s "
          "(loader_data: files at 16-48 kHz, Opus tar shards, raw shards)")
    for kind in args.loader_sources.split(","):
        for workers in map(int, args.workers.split(",")):
            rate, stored = bench_loader(kind, workers, args.loader_seconds)
            where = f"{workers} loader processes" if workers else "in the main process"
            per = f", {rate / workers:.0f} per loader process" if workers else ""
            size = f"; {stored * 3600 / 1e6:.1f} MB per hour of audio" if stored else ""
            print(f"  {kind:8s} {where}: {rate:.0f} crops/s{per} ({rate * 4:.0f} s of audio/s){size}",
                  flush=True)


if __name__ == "__main__":
    main()
