"""The measuring stages of the GPU check (embed, train_speed) and the sizes of all
four stages (GPU, and a CPU smoke run).

`run_stage` runs embed or train_speed in a child process and rewrites its stage file
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

import torch

from bench.train import model_flops_per_sample, peak_flops
from encodecmae_hear import files
from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.hear import get_timestamp_embeddings, load_model
from encodecmae_hear.model.config import SAMPLE_RATE, preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.objectives import FrontendFeatures, KMeansTargets

GPU = {"budget": 510,  # seconds; with start-up, the stops and the transfers, under 10 minutes
       "embed": {"share": 0.12, "presets": ("small", "base"), "frontends": ("mel256", "encodec"),
                 "dtypes": ("fp32", "bf16"), "seconds": 60.0, "repeats": 3},
       "train_speed": {"share": 0.26, "presets": ("small", "base"), "batch": 128, "crop": 4.0,
                       "compile": (False, True), "clusters": 512, "warmup": 3, "steps": 30, "max_s": 8.0},
       "train_run": {"share": 0.22, "steps": 2400, "files": 48, "file_seconds": 20.0, "extra": ()},
       # the mobile student at GPU size: batch 64 (the CPU release: 16), both widths side by side
       # steps: what 6 data-loader processes a run decode in the stage's time (about 4 steps/s
       # at 22 ms a 4 s crop of opus), so that the cosine schedule ends near the stop
       "distill_run": {"share": 0.40, "presets": ("mobile-quarter", "mobile-tiny"), "steps": 800,
                       "files": 48, "file_seconds": 20.0,
                       "extra": ("--batch-size", "64", "--warmup-steps", "100", "--workers", "6")}}
# Later options win: the same recipes at toy size.
SMOKE = {"budget": 150,
         "embed": {**GPU["embed"], "share": 0.25, "presets": ("tiny",), "frontends": ("mel256",),
                   "seconds": 2.0, "repeats": 1},
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
    cases = embed_cases(sizes) if name == "embed" else speed_cases(sizes)
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


def embed_case(case: dict, device: torch.device, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        path = Path(tmp) / "untrained.pt"
        save_checkpoint(path, EncodecMAE(preset(case["preset"], case["frontend"])),
                        provenance={"trained": False, "notes": "gpu-check: untrained, for speed"})
        model = load_model(str(path)).to(device)
    rate = model.sample_rate
    audio = (0.1 * torch.randn(1, int(case["audio_s"] * rate), generator=torch.Generator().manual_seed(0)))
    audio = audio.clamp(-1, 1).to(device)
    with torch.no_grad(), autocast(device, case["dtype"]):
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
        out.update(cosine_to_fp32_mean=round(float(cosine.mean()), 5),
                   cosine_to_fp32_min=round(float(cosine.min()), 5))
    return out


# --- 2. Pretraining throughput -----------------------------------------------------------

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
