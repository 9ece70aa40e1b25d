"""Embedding speed and memory of the HEAR path (not a test: prints figures).

For each preset x frontend x duration, a fresh subprocess embeds one sound of noise
at 48 kHz with `get_timestamp_embeddings` and reports the real-time factor (audio
seconds per wall second) and the process's peak RSS. It also times the bare encoder
forward on the same audio already at 24 kHz and in 4 s windows, and prints the ratio
bare / HEAR (1.0 = the HEAR wrapper costs nothing; target >= 0.95).

    python bench/embed.py                         # small, base x encodec, mel256 x 10 s, 60 s, 1 h
    python bench/embed.py --presets mini --durations 10 60
    python bench/embed.py --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time


def run_case(preset: str, frontend: str, seconds: float, device: str, dtype: str) -> dict:
    import torch

    from encodecmae_hear.hear import HearModel, get_timestamp_embeddings
    from encodecmae_hear.model.config import CHUNK_SAMPLES
    from encodecmae_hear.model.config import preset as make_config
    from encodecmae_hear.model.mae import EncodecMAE

    torch.manual_seed(0)
    repeats = 3 if seconds <= 600 else 1
    model = HearModel(EncodecMAE(make_config(preset, frontend)), sample_rate=48000).to(device)
    audio = (0.1 * torch.randn(1, int(seconds * 48000))).clamp(-1, 1)
    autocast = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
                if dtype == "bf16" else contextlib.nullcontext())

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with autocast:
        get_timestamp_embeddings(audio[:, :48000], model)  # warm-up
        hear_s = float("inf")
        for _ in range(repeats):  # best of `repeats`: the machine's noise only adds time
            sync()
            start = time.perf_counter()
            emb, _ = get_timestamp_embeddings(audio, model)
            sync()
            hear_s = min(hear_s, time.perf_counter() - start)
    result = {"preset": preset, "frontend": frontend, "seconds": seconds, "device": device,
              "dtype": dtype, "frames": emb.shape[1], "hear_s": hear_s, "rtf": seconds / hear_s,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if seconds <= 600:  # bare forward on pre-cut 24 kHz windows, same batch size
        wav24 = torch.cat([c[None] for c, _ in model.chunker.chunks(audio[0])])
        lengths = torch.tensor([CHUNK_SAMPLES] * wav24.shape[0])
        bare_s = float("inf")
        with torch.no_grad(), autocast:
            for _ in range(repeats):
                sync()
                start = time.perf_counter()
                for i in range(0, wav24.shape[0], model.chunk_batch_size):
                    model.mae.encode(wav24[i:i + model.chunk_batch_size].to(device),
                                     lengths[i:i + model.chunk_batch_size].to(device))
                sync()
                bare_s = min(bare_s, time.perf_counter() - start)
        result["bare_s"] = bare_s
        result["bare_over_hear"] = result["bare_s"] / hear_s
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "base"])
    parser.add_argument("--frontends", nargs="+", default=["encodec", "mel256"])
    parser.add_argument("--durations", nargs="+", type=float, default=[10, 60, 3600])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        preset, frontend, seconds = args.case.split(",")
        print(json.dumps(run_case(preset, frontend, float(seconds), args.device, args.dtype)))
        return
    header = f"{'preset':6s} {'frontend':8s} {'audio':>7s} {'RTF':>8s} {'peak RSS':>10s} {'bare/HEAR':>9s}"
    print(f"device {args.device}, {args.dtype}\n{header}")
    for preset in args.presets:
        for frontend in args.frontends:
            for seconds in args.durations:
                out = subprocess.run([sys.executable, __file__, "--case", f"{preset},{frontend},{seconds}",
                                      "--device", args.device, "--dtype", args.dtype],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"{preset:6s} {frontend:8s} {seconds:6.0f}s  FAILED: {out.stderr.strip()[-300:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                ratio = f"{r['bare_over_hear']:.3f}" if "bare_over_hear" in r else "-"
                print(f"{preset:6s} {frontend:8s} {seconds:6.0f}s {r['rtf']:7.1f}x "
                      f"{r['peak_rss_mb']:8.0f}MB {ratio:>9s}", flush=True)


if __name__ == "__main__":
    main()
