"""`demo`: the main job on the bundled model. Checks it with the real hear-validator,
then embeds a few generated clips and prints shapes and speed."""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time

import torch

from encodecmae_hear.checkpoint import resolve_checkpoint
from encodecmae_hear.hear import get_scene_embeddings, get_timestamp_embeddings, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="checkpoint path or name (default: the bundled checkpoints/default.pt)")
    parser.add_argument("--skip-validator", action="store_true",
                        help="do not run hear-validator (it takes about a minute)")


def generated_clips(sample_rate: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    clips = {}
    for seconds in (1.0, 4.0, 10.0):
        t = torch.arange(int(seconds * sample_rate)) / sample_rate
        chirp = torch.sin(2 * math.pi * (200 + 400 * t) * t)
        noise = 0.05 * torch.randn(t.shape, generator=g)
        clips[f"chirp+noise {seconds:g}s"] = (0.5 * chirp + noise).float()[None]
    return clips


def run_validator(path: str) -> bool:
    exe = shutil.which("hear-validator") or shutil.which("hear-validator", path=sys.prefix + "/bin")
    if exe is None:
        print("hear-validator is not installed (run `make install`)")
        return False
    print(f"$ hear-validator encodecmae_hear --model {path}")
    result = subprocess.run([exe, "encodecmae_hear", "--model", path], capture_output=True, text=True)
    if result.returncode != 0:
        print("  " + "\n  ".join((result.stdout + result.stderr).strip().splitlines()[-15:]))
    print("hear-validator:", "PASSED" if result.returncode == 0 else f"FAILED (exit {result.returncode})")
    return result.returncode == 0


def run(args: argparse.Namespace) -> int:
    path = str(resolve_checkpoint(args.model or ""))
    model = load_model(path)
    provenance = model.provenance
    print(f"model: {path}")
    print(f"  {model.mae.config.frontend} frontend, dim {model.mae.config.dim}, "
          f"{model.mae.num_layers} encoder layers, trained: {provenance.get('trained')}")
    if provenance.get("notes"):
        print(f"  notes: {provenance['notes']}")
    ok = True if args.skip_validator else run_validator(path)

    print(f"\nembeddings at {model.sample_rate} Hz:")
    for name, audio in generated_clips(model.sample_rate).items():
        start = time.perf_counter()
        emb, ts = get_timestamp_embeddings(audio, model)
        scene = get_scene_embeddings(audio, model)
        elapsed = time.perf_counter() - start
        seconds = audio.shape[1] / model.sample_rate
        print(f"  {name:20s} timestamp {tuple(emb.shape)}  scene {tuple(scene.shape)}  "
              f"hop {ts[0, 1] - ts[0, 0]:.3f} ms  {seconds / elapsed:6.1f}x real time")
    return 0 if ok else 1
