"""`export-onnx`: a mobile checkpoint (`pretrain-mobile`, `distill`) as one ONNX graph.

    python -m encodecmae_hear export-onnx runs/student/model.pt student.onnx [--int8]

The graph holds the whole embedding path after the HEAR input checks: 16 kHz waveform
(B, N), any N -> zero-padding to whole frames -> log-mel (STFT op) -> encoder (each
BatchNorm folded into its convolution) [-> distill head] [, input block] -> frames
(B, ceil(N / 640), E).
The model's config and output travel in the file's metadata, so
`encodecmae_hear.mobile_hear.load_model("student.onnx")` serves it through onnxruntime.
Every export is checked against PyTorch on generated audio; the command prints the
largest difference and the sizes on disk. `--int8` also writes OUT.int8.onnx,
onnxruntime's dynamic int8 quantisation of the encoder's weights, and prints what it costs.
Needs the [mobile] extra (onnx, onnxruntime, onnxscript).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from encodecmae_hear import files
from encodecmae_hear.checkpoint import load_checkpoint
from encodecmae_hear.errors import UserError
from encodecmae_hear.mobile_hear import ONNX_METADATA_KEY, OUTPUTS, OnnxFrames
from encodecmae_hear.model.mobile import SAMPLE_RATE, MobileModel

PARITY_TOLERANCE = 1e-4  # max abs difference of fp32 frames, ONNX vs PyTorch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a mobile checkpoint (pretrain-mobile, distill)")
    parser.add_argument("out", help="the .onnx file to write")
    parser.add_argument("--output", choices=OUTPUTS, default=None,
                        help="what the graph returns (default: 'distill' for a distilled student, "
                             "else 'encoder')")
    parser.add_argument("--int8", action="store_true",
                        help="also write OUT.int8.onnx (dynamic int8 quantisation) and measure its cost")


class Exported(nn.Module):
    """The embedding path as one module: wav (B, N) at 16 kHz -> frames (B, T, E)."""

    def __init__(self, model: MobileModel, output: str):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for block in self.model.encoder.blocks:  # conv -> BN becomes one conv
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
        self.output = output

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model.hear_frames(wav, self.output)


def export(model: MobileModel, out, output: str = "encoder", provenance: dict | None = None) -> Path:
    """Writes `out` (atomically) and returns its path."""
    import onnx  # optional dependency (extra [mobile])

    module = Exported(model, output).eval()
    example = torch.randn(2, 3 * SAMPLE_RATE) * 0.1
    dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("samples", min=1, max=2**31 - 1)}
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps
        program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=(dims,),
                                    input_names=["wav"], output_names=["frames"], verbose=False)
    proto = program.model_proto
    meta = {"config": model.config.to_dict(), "output": output, "sample_rate": SAMPLE_RATE,
            "frame_hop": model.config.frame_hop, "provenance": provenance or {}}
    onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: json.dumps(meta)})
    files.write_bytes(out, proto.SerializeToString())
    return Path(out)


def quantise(src, out) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised on the fly) of the
    encoder and head; the frontend and the input block (DFT, mel and chroma matrices)
    stay float32."""
    import onnx  # optional dependencies (extra [mobile])
    from onnxruntime.quantization import QuantType, quantize_dynamic

    spectral = ("model.frontend.", "model.input_block.")  # DFTs and filterbanks stay float32
    frontend = [node.name for node in onnx.load(str(src)).graph.node
                if any(name.startswith(spectral) for name in node.input)]
    tmp = files.temp_path(out)
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, nodes_to_exclude=frontend)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return Path(out)


def compare(model: MobileModel, path, output: str, seconds: float = 3.3) -> dict:
    """ONNX vs PyTorch frames on generated audio: max abs difference, relative RMS error
    and the mean per-frame cosine similarity."""
    generator = torch.Generator().manual_seed(0)
    wav = (torch.rand(2, int(seconds * SAMPLE_RATE), generator=generator) * 2 - 1) * 0.3
    with torch.no_grad():
        expected = model.hear_frames(wav, output)
    got = OnnxFrames(str(path))(wav)
    if got.shape != expected.shape:
        raise RuntimeError(f"{path}: ONNX frames have shape {tuple(got.shape)}, "
                           f"PyTorch {tuple(expected.shape)}")
    error = got - expected
    return {"max_abs_diff": float(error.abs().max()),
            "relative_rms": float(error.pow(2).mean().sqrt() / expected.pow(2).mean().sqrt()),
            "cosine": float(torch.nn.functional.cosine_similarity(got, expected, dim=-1).mean())}


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith(".onnx"):
        raise UserError(f"the output file must end in .onnx, got {args.out}")
    model, payload = load_checkpoint(args.checkpoint, architecture="mobile")
    output = args.output or ("distill" if model.config.head == "distill" else "encoder")
    if output == "distill" and model.config.head != "distill":
        raise UserError(f"--output distill needs a distilled student; {args.checkpoint} has head "
                        f"{model.config.head!r}")
    fp32 = export(model, args.out, output, payload["provenance"])
    check = compare(model, fp32, output)
    print(f"{fp32}: {fp32.stat().st_size / 1e6:.2f} MB; vs PyTorch: max abs diff "
          f"{check['max_abs_diff']:.2e}")
    if check["max_abs_diff"] > PARITY_TOLERANCE:
        raise RuntimeError(f"{fp32} differs from PyTorch by {check['max_abs_diff']:.2e} "
                           f"(> {PARITY_TOLERANCE}): the export is wrong")
    if args.int8:
        int8 = quantise(fp32, Path(args.out).with_suffix(".int8.onnx"))
        cost = compare(model, int8, output)
        print(f"{int8}: {int8.stat().st_size / 1e6:.2f} MB; vs PyTorch fp32: max abs diff "
              f"{cost['max_abs_diff']:.3g}, relative RMS error {cost['relative_rms']:.3g}, "
              f"mean cosine {cost['cosine']:.4f}")
    return 0
