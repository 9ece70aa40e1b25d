"""`info`: what a checkpoint holds: config, provenance, parameter counts."""
from __future__ import annotations

import argparse
import json

from encodecmae_hear.checkpoint import load_checkpoint, resolve_checkpoint
from encodecmae_hear.model.mobile import MobileModel, macs_per_second
from encodecmae_hear.model.params import breakdown, count_parameters, encoder_paper_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="checkpoint path or name (default: the bundled checkpoints/default.pt)")


def describe(path) -> str:
    path = resolve_checkpoint(path)
    model, payload = load_checkpoint(path, architecture=None)
    if isinstance(model, MobileModel):
        counts = {"encoder": count_parameters(model.encoder), "total": count_parameters(model)}
    else:
        counts = breakdown(model)
    lines = [f"checkpoint: {path}", "config:"]
    lines += [f"  {k}: {v}" for k, v in payload["config"].items()]
    lines.append("provenance:")
    lines += [f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
              for k, v in payload["provenance"].items()]
    lines.append("parameters (stored, unique):")
    lines += [f"  {k}: {v:,}" for k, v in counts.items()]
    if isinstance(model, MobileModel):
        lines.append(f"multiply-accumulates per second of audio: {macs_per_second(model, head=True):,}")
    else:
        lines.append(f"  paper rule (encoder layers, FFN per layer): {encoder_paper_count(model.config):,}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(describe(args.checkpoint or ""))
    return 0
