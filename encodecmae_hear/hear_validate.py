"""``hear-validate``: run the real hear-validator on the module and checkpoint.

    python -m encodecmae_hear hear-validate --model runs/base/model.pt
"""
from __future__ import annotations

import argparse

from . import hear_runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", metavar="CKPT",
                        help="checkpoint passed to load_model (default: the bundled model)")
    parser.add_argument("--device", default="", help="cpu, cuda or cuda:N")
    parser.add_argument("--module", default=hear_runner.MODULE, help="HEAR module to validate")


def run(args: argparse.Namespace) -> int:
    plan = hear_runner.Plan(run_dir=hear_runner.Path("."), tasks_dir=hear_runner.Path("."),
                            model=args.model, device=args.device, module=args.module)
    return hear_runner.validate(plan)
