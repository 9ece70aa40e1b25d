"""The mobile line on ONE CPU core (not a test: prints figures).

For each model, the whole timestamp-embedding path of the HEAR API (input checks,
windows, encoder, timestamps) on one sound of noise at 16 kHz: the real-time factor
(audio seconds per wall second, best of 3) with torch.set_num_threads(1), and for the
mobile models also through their ONNX export in onnxruntime with one intra-op thread,
fp32 and dynamic int8. Beside it: stored parameters, multiply-accumulates per second of
audio (convolutions and linear layers; attention's two matmuls for EnCodecMAE), and
sizes on disk (fp32 checkpoint; ONNX fp32 / int8). EnCodecMAE mini / small / base
(mel256) run through encodecmae_hear.hear at sample_rate 16000. Weights are random
(speed does not depend on them) unless --student names a trained checkpoint. Each
timing runs in a fresh process.

    python bench/mobile.py                        # 60 s of audio
    python bench/mobile.py --seconds 10 --student runs/student/model.pt
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOBILE = ("mobile-full", "mobile-half", "mobile-quarter", "mobile-tiny")
ENCODECMAE = ("mini", "small", "base")


def mae_macs_per_second(config) -> float:
    """Per frame: input projection, then per layer attention projections 4 D^2, FFN
    2 D ff, and QK^T plus AV over the 300-frame window, 2 x 300 x D; 75 frames/s."""
    d, per_layer = config.dim, 4 * config.dim ** 2 + 2 * config.dim * config.ff_dim + 2 * 300 * config.dim
    return 75 * (config.feature_dim * d + config.encoder_layers * per_layer)


def build(name: str, student: str | None):
    """-> (torch HEAR model, the model to save / export or None)."""
    import torch

    from encodecmae_hear.checkpoint import load_checkpoint
    from encodecmae_hear.hear import HearModel
    from encodecmae_hear.mobile_hear import MobileHear
    from encodecmae_hear.model.config import preset
    from encodecmae_hear.model.mae import EncodecMAE
    from encodecmae_hear.model.mobile import MobileModel, mobile_preset

    torch.manual_seed(0)
    if name in ENCODECMAE:
        return HearModel(EncodecMAE(preset(name, "mel256")), sample_rate=16000), None
    if name == "student":
        if student:
            model, _ = load_checkpoint(student, architecture="mobile")
        else:  # the bundled teacher's five 256-wide blocks on a mobile-quarter encoder
            model = MobileModel(mobile_preset("mobile-quarter", head="distill", distill_dims=(256,) * 5))
        return MobileHear(model.eval()), model
    model = MobileModel(mobile_preset(name)).eval()
    return MobileHear(model), model


def time_case(name: str, backend: str, onnx_path: str, seconds: float, student: str | None) -> dict:
    import torch

    from encodecmae_hear import hear as mae_hear
    from encodecmae_hear import mobile_hear
    from encodecmae_hear.mobile_hear import MobileHear, OnnxFrames

    torch.set_num_threads(1)
    hear, _ = build(name, student)
    get_timestamp_embeddings = (mae_hear if name in ENCODECMAE else mobile_hear).get_timestamp_embeddings
    if backend != "torch":
        hear = MobileHear(OnnxFrames(onnx_path, threads=1))
    noise = torch.randn(1, int(seconds * 16000), generator=torch.Generator().manual_seed(0))
    audio = (0.1 * noise).clamp(-1, 1)
    emb, _ = get_timestamp_embeddings(audio[:, :16000], hear)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        emb, _ = get_timestamp_embeddings(audio, hear)
        best = min(best, time.perf_counter() - start)
    return {"rtf": seconds / best, "frames": emb.shape[1], "width": emb.shape[2]}


def describe(name: str, student: str | None, folder: Path) -> dict:
    """Params, MACs, sizes on disk; exports the mobile models to ONNX (fp32, int8)."""
    from encodecmae_hear.checkpoint import save_checkpoint
    from encodecmae_hear.commands.export_onnx import compare, export, quantise
    from encodecmae_hear.model.mobile import macs_per_second
    from encodecmae_hear.model.params import count_parameters

    hear, model = build(name, student)
    row = {"name": name}
    if model is None:
        row["params"] = count_parameters(hear.mae.input_proj) + count_parameters(hear.mae.encoder)
        row["macs"] = mae_macs_per_second(hear.mae.config)
        save_checkpoint(folder / f"{name}.pt", hear.mae)
        row["pt_mb"] = (folder / f"{name}.pt").stat().st_size / 1e6
        return row
    row["params"] = count_parameters(model)
    row["macs"] = macs_per_second(model, head=True)
    save_checkpoint(folder / f"{name}.pt", model)
    row["pt_mb"] = (folder / f"{name}.pt").stat().st_size / 1e6
    fp32 = export(model, folder / f"{name}.onnx", hear.output)
    int8 = quantise(fp32, folder / f"{name}.int8.onnx")
    row.update(onnx_mb=fp32.stat().st_size / 1e6, int8_mb=int8.stat().st_size / 1e6,
               parity=compare(model, fp32, hear.output)["max_abs_diff"],
               int8_cost=compare(model, int8, hear.output))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--models", nargs="+", default=[*MOBILE, "student", *ENCODECMAE])
    parser.add_argument("--student", default=None,
                        help="a trained student checkpoint (default: random weights)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, backend, onnx_path = args.case.split(",")
        print(json.dumps(time_case(name, backend, onnx_path, args.seconds, args.student)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"one CPU core, {args.seconds:.0f} s of 16 kHz audio, HEAR timestamp-embedding path; RTF best of 3")
    print(f"{'model':15s} {'params':>9s} {'MMAC/s':>8s} {'.pt MB':>7s} {'onnx MB':>8s} {'int8 MB':>8s} "
          f"{'torch RTF':>10s} {'ort RTF':>8s} {'int8 RTF':>9s} {'int8 cos':>9s} {'int8 rel':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            row = describe(name, args.student, Path(tmp))
            rtf = {}
            for backend in ("torch", "ort", "int8") if "onnx_mb" in row else ("torch",):
                onnx = Path(tmp) / (f"{name}.onnx" if backend == "ort" else f"{name}.int8.onnx")
                cmd = [sys.executable, __file__, "--case", f"{name},{backend},{onnx}",
                       "--seconds", str(args.seconds)] + (["--student", args.student] if args.student else [])
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"{name} {backend} failed: {out.stderr[-1500:]}")
                rtf[backend] = json.loads(out.stdout.strip().splitlines()[-1])["rtf"]
            cost, nan = row.get("int8_cost", {}), float("nan")
            print(f"{name:15s} {row['params'] / 1e6:8.2f}M {row['macs'] / 1e6:8.1f} {row['pt_mb']:7.2f} "
                  f"{row.get('onnx_mb', nan):8.2f} {row.get('int8_mb', nan):8.2f} {rtf['torch']:9.1f}x "
                  f"{rtf.get('ort', nan):7.1f}x {rtf.get('int8', nan):8.1f}x "
                  f"{cost.get('cosine', nan):9.4f} {cost.get('relative_rms', nan):9.4f}", flush=True)
            if "parity" in row and row["parity"] > 1e-4:
                print(f"  warning: ONNX differs from PyTorch by {row['parity']:.2e}")


if __name__ == "__main__":
    main()
