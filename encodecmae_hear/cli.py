"""Command-line entry point: ``python -m encodecmae_hear <command> ...``.

Each command lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``. The modules are imported only when their command runs, so
``--help`` stays fast and importing the package stays free of side effects.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bundle": ("encodecmae_hear.bundle", "turn a finished training run into a small release checkpoint"),
    "convert": ("encodecmae_hear.convert", "convert an official EnCodecMAE checkpoint to this project's format"),
    "corpus": ("encodecmae_hear.corpus", "build the offline pretraining corpus from Debian packages"),
    "demo": ("encodecmae_hear.demo", "validate the bundled model and time embeddings on generated clips"),
    "embedding-stats": ("encodecmae_hear.embedding_stats", "store per-channel embedding statistics from pretraining audio in a checkpoint"),
    "hear": ("encodecmae_hear.hear_eval", "HEAR evaluation in one go: embed, predict over seeds, table"),
    "hear-embed": ("encodecmae_hear.hear_embed", "HEAR task embeddings with heareval's runner (resumable)"),
    "hear-predict": ("encodecmae_hear.hear_predict", "heareval downstream training and test scores per seed"),
    "hear-table": ("encodecmae_hear.hear_table", "HEAR results table (Markdown, CSV) and bar plot"),
    "hear-validate": ("encodecmae_hear.hear_validate", "run the real hear-validator on a checkpoint"),
    "heldout-tasks": ("encodecmae_hear.heldout_tasks", "write HEAR tasks from held-out corpus sources"),
    "info": ("encodecmae_hear.info", "print a checkpoint's config, provenance and parameter counts"),
    "init": ("encodecmae_hear.init_checkpoint", "write an untrained checkpoint for a preset"),
    "manifest": ("encodecmae_hear.manifest", "scan audio folders into a training manifest (and tar shards)"),
    "pretrain": ("encodecmae_hear.pretrain", "pretrain EnCodecMAE (EnCodec targets); torchrun for several GPUs"),
    "selftrain": ("encodecmae_hear.selftrain", "self-train a pretrained model on k-means ids of its own features"),
    "synth-tasks": ("encodecmae_hear.synthetic_tasks", "write the synthetic HEAR suite (scene k-fold + event task)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m encodecmae_hear",
        description="EnCodecMAE: pretraining, HEAR embeddings and evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        # Arguments are registered lazily in main() for the chosen command only.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        module = importlib.import_module(COMMANDS[name][0])
        command_parser = argparse.ArgumentParser(
            prog=f"python -m encodecmae_hear {name}", description=COMMANDS[name][1],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(command_parser)
        args = command_parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0
