"""`info`: what a checkpoint holds: config, provenance, parameter counts."""
from __future__ import annotations

import argparse
import json

from .checkpoint import load_checkpoint
from .hear import default_checkpoint
from .params import breakdown, encoder_paper_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="checkpoint file (default: the bundled checkpoints/default.pt)")


def describe(path) -> str:
    model, payload = load_checkpoint(path)
    counts = breakdown(model)
    lines = [f"checkpoint: {path}", "config:"]
    lines += [f"  {k}: {v}" for k, v in payload["config"].items()]
    lines.append("provenance:")
    lines += [f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
              for k, v in payload["provenance"].items()]
    lines.append("parameters (stored, unique):")
    lines += [f"  {k}: {v:,}" for k, v in counts.items()]
    lines.append(f"  paper rule (encoder layers, FFN per layer): {encoder_paper_count(model.config):,}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(describe(args.checkpoint or default_checkpoint()))
    return 0
