"""The measuring stages of the GPU check (embed, embed_files, train_speed) and the sizes of all
five stages (GPU, and a CPU smoke run).

`run_stage` runs embed, embed_files or train_speed in a child process and rewrites its stage file
after every case, so that the parent keeps what was measured if the child dies; the two
training runs (train_run, distill_run) are in gpu_check/runs.py.
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.train import model_flops_per_sample, peak_flops
from encodecmae_hear import files
from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.cli import main as cli_main
from encodecmae_hear.hear import get_timestamp_embeddings, load_model
from encodecmae_hear.model.config import CHUNK_SAMPLES, SAMPLE_RATE, preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.objectives import FrontendFeatures, KMeansTargets

GPU = {"budget": 510,  # seconds; with start-up, the stops and the transfers, under 10 minutes
       "embed": {"share": 0.10, "presets": ("small", "base"), "frontends": ("mel256", "encodec"),
                 "dtypes": ("fp32", "bf16"), "seconds": 60.0, "repeats": 3},
       # embed end to end, files to .npy files: 1 s clips, 10 s clips, long files (s, count)
       "embed_files": {"share": 0.14, "presets": ("small", "base"), "frontend": "mel256", "dtype": "bf16",
                       "batch": 64, "sets": {"1s": (1.0, 2000), "10s": (10.0, 300), "long": (600.0, 3)}},
       "train_speed": {"share": 0.22, "presets": ("small", "base"), "batch": 128, "crop": 4.0,
                       "compile": (False, True), "clusters": 512, "warmup": 3, "steps": 30, "max_s": 8.0},
       "train_run": {"share": 0.22, "steps": 2400, "files": 48, "file_seconds": 20.0, "extra": ()},
       # the mobile student at GPU size: batch 64 (the CPU release: 16), both widths side by side
       # steps: what 6 data-loader processes a run decode in the stage's time (about 4 steps/s
       # at 22 ms a 4 s crop of opus), so that the cosine schedule ends near the stop
       "distill_run": {"share": 0.32, "presets": ("mobile-quarter", "mobile-tiny"), "steps": 640,
                       "files": 48, "file_seconds": 20.0,
                       "extra": ("--batch-size", "64", "--warmup-steps", "100", "--workers", "6")}}
FILES_RATE = 16000  # the embed_files stage's input files: 16-bit WAV at 16 kHz
# Later options win: the same recipes at toy size.
SMOKE = {"budget": 150,
         "embed": {**GPU["embed"], "share": 0.25, "presets": ("tiny",), "frontends": ("mel256",),
                   "seconds": 2.0, "repeats": 1},
         "embed_files": {**GPU["embed_files"], "share": 0.25, "presets": ("tiny",), "batch": 2,
                         "sets": {"1s": (1.0, 3), "long": (9.0, 2)}},
         "train_speed": {**GPU["train_speed"], "share": 0.25, "presets": ("tiny",), "batch": 4, "crop": 1.0,
                         "compile": (False,), "clusters": 16, "warmup": 1, "steps": 2, "max_s": 5.0},
         "train_run": {"share": 0.25, "steps": 3, "files": 6, "file_seconds": 2.0,
                       "extra": ("--preset", "tiny", "--batch-size", "4", "--clusters", "16",
                                 "--kmeans-clips", "6", "--crop-seconds", "1", "--warmup-steps", "1",
                                 "--log-every", "1", "--workers", "0")},
         "distill_run": {"share": 0.25, "presets": ("mobile-tiny",), "steps": 3, "files": 6,
                         "file_seconds": 2.0,
                         "extra": ("--batch-size", "4", "--crop-seconds", "1", "--warmup-steps", "1",
                                   "--log-every", "1", "--workers", "0")}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def fresh(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_stage(name: str, stage_file: Path, deadline: float, smoke: bool) -> None:
    sizes = (SMOKE if smoke else GPU)[name]
    device = torch.device("cpu" if smoke else "cuda")
    record = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
              "sizes": sizes, "results": [], "status": "ok"}
    cases = {"embed": embed_cases, "embed_files": embed_files_cases, "train_speed": speed_cases}[name](sizes)
    for case, measure in cases:
        if time.time() > deadline - 5:
            record["status"], record["error"] = "partial", f"time budget: {case} and later cases not run"
            break
        fresh(device)
        try:
            case.update(measure(case, device, deadline))
        except Exception as err:  # e.g. out of memory: record it, go on with the next case
            case["error"] = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            record["status"] = "partial"
        record["results"].append(case)
        files.write_json(stage_file, record, indent=1)
        print(json.dumps(case), flush=True)
    files.write_json(stage_file, record, indent=1)


# --- 1. HEAR embedding speed -------------------------------------------------------------

def embed_cases(sizes: dict):
    for name in sizes["presets"]:
        for frontend in sizes["frontends"]:
            for dtype in sizes["dtypes"]:
                case = {"preset": name, "frontend": frontend, "dtype": dtype, "audio_s": sizes["seconds"]}
                yield case, lambda c, device, deadline: embed_case(c, device, sizes["repeats"])


_fp32_embeddings: dict = {}


def untrained_checkpoint(path: Path, name: str, frontend: str) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, EncodecMAE(preset(name, frontend)),
                    provenance={"trained": False, "notes": "gpu-check: untrained, for speed"})
    return path


def embed_case(case: dict, device: torch.device, repeats: int) -> dict:
    """The dtype goes through load_model's option, as a user gives it (an autocast
    around an fp32 model would not reach the Transformer: hear.py sets its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = untrained_checkpoint(Path(tmp) / "untrained.pt", case["preset"], case["frontend"])
        model = load_model(str(path), dtype=case["dtype"]).to(device)
    rate = model.sample_rate
    audio = (0.1 * torch.randn(1, int(case["audio_s"] * rate), generator=torch.Generator().manual_seed(0)))
    audio = audio.clamp(-1, 1).to(device)
    with torch.no_grad():
        get_timestamp_embeddings(audio[:, :rate], model)  # warm-up
        best = float("inf")
        for _ in range(repeats):  # best of `repeats`: noise only adds time
            sync(device)
            start = time.perf_counter()
            embeddings, _ = get_timestamp_embeddings(audio, model)
            sync(device)
            best = min(best, time.perf_counter() - start)
    out = {"seconds": round(best, 4), "rtf": round(case["audio_s"] / best, 1),
           "frames": int(embeddings.shape[1]), "out_dtype": str(embeddings.dtype).replace("torch.", ""),
           "peak_memory_gb": peak_memory_gb(device)}
    key = (case["preset"], case["frontend"])
    if case["dtype"] == "fp32":
        _fp32_embeddings[key] = embeddings.float().cpu()
    elif key in _fp32_embeddings:
        cosine = torch.nn.functional.cosine_similarity(embeddings.float().cpu(), _fp32_embeddings[key],
                                                       dim=-1)  # per frame
        out.update(cosine_to_fp32_mean=round(float(cosine.mean()), 7),
                   cosine_to_fp32_min=round(float(cosine.min()), 7))
    return out


# --- 2. Embedding files to disk ----------------------------------------------------------

def embed_files_cases(sizes: dict):
    inputs = tempfile.TemporaryDirectory(prefix="gpu-check-audio-")  # kept for the stage's life
    for name in sizes["presets"]:
        for files_name, (clip_s, count) in sizes["sets"].items():
            case = {"preset": name, "frontend": sizes["frontend"], "dtype": sizes["dtype"],
                    "files": files_name, "clip_s": clip_s, "count": count, "batch": sizes["batch"]}
            yield case, lambda c, device, deadline: embed_files_case(c, device, deadline,
                                                                     Path(inputs.name))


def audio_folder(root: Path, clip_s: float, count: int) -> Path:
    """`count` 16-bit 16 kHz WAV files of `clip_s` s of noise, written once per size."""
    folder = root / f"{count}x{clip_s:g}s"
    if not folder.is_dir():
        rng = np.random.default_rng(0)
        (folder / "one").mkdir(parents=True)
        for i in range(count):
            audio = (0.1 * rng.standard_normal(int(clip_s * FILES_RATE))).clip(-1, 1).astype(np.float32)
            sf.write(folder / ("one" if i == 0 else "") / f"{i:06d}.wav", audio, FILES_RATE, subtype="PCM_16")
    return folder


def flops_per_audio_second(checkpoint: Path) -> float:
    """FLOPs of the HEAR path's window forward (frontend and encoder, as counted by
    torch's FlopCounterMode, in fp32 on CPU: the same count under every dtype) per
    second of audio."""
    model = load_model(str(checkpoint))
    wav = 0.1 * torch.randn(1, CHUNK_SAMPLES)
    with FlopCounterMode(display=False) as counter:
        model.encode_windows(wav, torch.tensor([CHUNK_SAMPLES]))
    return counter.get_total_flops() / (CHUNK_SAMPLES / SAMPLE_RATE)


def embed_files_case(case: dict, device: torch.device, deadline: float, inputs: Path) -> dict:
    """`embed FOLDER --out OUT` (the CLI's main, in this process) end to end: model load,
    decoding, resampling, the HEAR path, .npy writes. Timed after a warm-up run on one
    of the files (imports, CUDA start, kernels); the steady rate leaves out the model
    load, timed apart."""
    folder = audio_folder(inputs, case["clip_s"], case["count"])
    with tempfile.TemporaryDirectory(prefix="gpu-check-embed-") as tmp:
        checkpoint = untrained_checkpoint(Path(tmp) / "untrained.pt", case["preset"], case["frontend"])
        flops = flops_per_audio_second(checkpoint)

        def embed(source: Path, out: Path) -> float:
            start = time.perf_counter()
            code = cli_main(["embed", str(source), "--out", str(out), "--model", str(checkpoint),
                             "--device", device.type, "--dtype", case["dtype"], "--batch", str(case["batch"])])
            sync(device)
            if code != 0:
                raise RuntimeError(f"embed exited {code}")
            return time.perf_counter() - start

        embed(folder / "one", Path(tmp) / "warm-up")
        start = time.perf_counter()
        load_model(str(checkpoint), dtype=case["dtype"]).to(device)
        sync(device)
        load_s = time.perf_counter() - start
        all_s = embed(folder, Path(tmp) / "all")
        outputs = sorted((Path(tmp) / "all").rglob("*.embedding.npy"))
        written = sum(p.stat().st_size for p in (Path(tmp) / "all").rglob("*.npy"))
        frames = int(np.load(outputs[0], mmap_mode="r").shape[0]) if outputs else 0
    audio_s = case["clip_s"] * case["count"]
    steady = audio_s / (all_s - load_s) if all_s > load_s else float("nan")
    peak, _ = peak_flops(device)
    return {"audio_s": audio_s, "seconds": round(all_s, 3), "load_s": round(load_s, 3),
            "outputs": len(outputs), "frames_first": frames, "written_mb": round(written / 2**20, 1),
            "rtf_end_to_end": round(audio_s / all_s, 2), "rtf": round(steady, 2),
            "gflops_per_audio_s": round(flops / 1e9, 2),
            "mfu": round(steady * flops / peak, 4) if math.isfinite(peak) and math.isfinite(steady) else None}


# --- 3. Pretraining throughput -----------------------------------------------------------

def speed_cases(sizes: dict):
    for compiled in sizes["compile"]:  # eager figures of every size first: compiling takes long
        for name in sizes["presets"]:
            case = {"preset": name, "frontend": "mel256", "batch": sizes["batch"], "crop_s": sizes["crop"],
                    "precision": "bf16", "compile": compiled, "targets": f"mel-kmeans {sizes['clusters']}"}
            yield case, lambda c, device, deadline: speed_case(c, device, deadline, sizes)


def speed_case(case: dict, device: torch.device, deadline: float, sizes: dict) -> dict:
    """The train loop's step (loop.train) on one fixed batch: forward under autocast,
    targets, loss, backward, clipping, AdamW."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    config = preset(case["preset"], "mel256")
    model = EncodecMAE(config)
    model.new_head(1, sizes["clusters"])
    model.to(device).train()
    objective = KMeansTargets(FrontendFeatures(config), torch.randn(sizes["clusters"], 256),
                              config.masked_loss_weight).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    if case["compile"]:  # as loop.train does for --compile
        for stack in (model.encoder, model.decoder):
            stack.compile(dynamic=True)
    samples = int(case["crop_s"] * SAMPLE_RATE)
    wav = (0.1 * torch.randn(case["batch"], samples)).to(device)
    lengths = torch.full((case["batch"],), samples, device=device)
    masks = torch.Generator()

    def step(i: int) -> None:
        masks.manual_seed(i)
        with autocast(device, "bf16"):
            out = model(wav, lengths, generator=masks)
        loss = objective.loss(out, objective.targets(wav, lengths, out))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for i in range(sizes["warmup"]):
        step(i)
    sync(device)
    warmup_s = time.perf_counter() - start
    start, steps = time.perf_counter(), 0
    while (steps < sizes["steps"] and time.perf_counter() - start < sizes["max_s"]
           and time.time() < deadline - 5):
        step(1000 + steps)
        steps += 1
        sync(device)
    seconds = time.perf_counter() - start
    rate = steps / seconds
    out = {"steps_per_s": round(rate, 3), "samples_per_s": round(rate * case["batch"], 1),
           "timed_steps": steps, "warmup_steps": sizes["warmup"], "warmup_s": round(warmup_s, 1),
           "peak_memory_gb": peak_memory_gb(device)}
    if device.type == "cuda":  # MFU over the bf16 peak of bench/train.py's table
        flops = model_flops_per_sample(config, model.frontend(wav[:1]).shape[1]) * case["batch"]
        peak, _ = peak_flops(device)
        out["mfu"] = round(rate * flops / peak, 3) if math.isfinite(peak) else None
    return out
