"""Command-line entry point: ``python -m encodecmae_hear <command> ...``.

Each command is a module (or an object in one, `module:name`) with
``add_arguments(parser)`` and ``run(args) -> int``. It is imported only when its command
runs, so ``--help`` stays fast and importing the package stays free of side effects.
A user error (`UserError`, including unreadable checkpoints, or a missing file) ends
the command with a one-line message `COMMAND: error: ...` and exit status 2, and so do
bad arguments and a place the command cannot read or write (a missing, read-only, full
or file-blocked path: `place_error`). Ctrl-C ends it in one line with status 130; a closed
output pipe (`info | head`) ends it quietly with status 141, as it ends other tools.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from encodecmae_hear.errors import UserError, one_line

P = "encodecmae_hear"
# command name -> (module[:object], one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (f"{P}.commands.demo", "validate the bundled model and time embeddings on generated clips"),
    "info": (f"{P}.commands.info", "print a checkpoint's config, provenance and parameter counts"),
    "embed": (f"{P}.commands.embed", "embed audio files or folders through the HEAR API (resumable, torchrun)"),
    "export-onnx": (f"{P}.commands.export_onnx", "export a mobile checkpoint to ONNX (optionally int8), checked against PyTorch"),
    "convert": (f"{P}.commands.convert", "convert an official EnCodecMAE checkpoint to this project's format"),
    "fetch": (f"{P}.commands.fetch", "fetch a published EnCodecMAE model (or EnCodec's weights), pinned and checked; print its path"),
    "models": (f"{P}.commands.models", "list the models a name loads: bundled, local, fetched and published"),
    "manifest": (f"{P}.train.manifest", "scan audio folders into a training manifest (and tar shards)"),
    "pretrain": (f"{P}.train.pretrain", "pretrain EnCodecMAE (EnCodec targets); torchrun for several GPUs"),
    "cache-teachers": (f"{P}.train.teachers.cache_build", "compute teachers' frame features of a corpus once, for pretrain --teacher-cache"),
    "selftrain": (f"{P}.train.selftrain", "self-train a pretrained model on k-means ids of its own features"),
    "pretrain-mobile": (f"{P}.train.pretrain_mobile", "pretrain the mobile encoder: Audio2Vec CBoW / skip-gram or TemporalGap"),
    "distill": (f"{P}.train.distill", "distil an EnCodecMAE teacher into a mobile student (25 frames/s)"),
    "init": (f"{P}.train.init_checkpoint", "write an untrained checkpoint for a preset"),
    "bundle": (f"{P}.train.bundle", "turn a finished training run into a small release checkpoint"),
    "input-block": (f"{P}.train.input_block", "give a mobile student its own log-mel and chroma or pitch salience in its HEAR embedding, and a std over time in its scene embedding (statistics from pretraining audio)"),
    "embedding-stats": (f"{P}.train.embedding_stats", "store per-channel embedding statistics from pretraining audio in a checkpoint"),
    "hear": (f"{P}.evaluate.commands:hear", "HEAR evaluation in one go: embed, predict over seeds, table"),
    "hear-validate": (f"{P}.evaluate.commands:validate", "run the real hear-validator on a checkpoint"),
    "hear-embed": (f"{P}.evaluate.commands:embed", "HEAR task embeddings with heareval's runner (resumable)"),
    "hear-predict": (f"{P}.evaluate.commands:predict", "heareval downstream training and test scores per seed"),
    "hear-table": (f"{P}.evaluate.table", "HEAR results table (Markdown, CSV) and bar plot"),
    "synth-tasks": (f"{P}.evaluate.synthetic_tasks", "write the synthetic HEAR suite (scene k-fold + event task)"),
    "corpus": (f"{P}.corpus.build", "build the offline pretraining corpus from Debian packages"),
    "heldout-tasks": (f"{P}.corpus.heldout_tasks", "write HEAR tasks from held-out corpus sources"),
    "valid-tasks": (f"{P}.corpus.valid_tasks", "write the validation suite: held-out HEAR tasks for choosing models, apart from the proof"),
}


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end as every user error does: `COMMAND: error: ...`, status 2."""

    def __init__(self, *args, command: str = "encodecmae_hear", **kwargs):
        super().__init__(*args, **kwargs)
        self.command = command

    def error(self, message: str):
        self.exit(2, f"{self.command}: error: {' '.join(message.split())} (see --help)\n")


# errno -> what the user can do, for errors about a place on disk
PLACE_HINTS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "check its permissions, or choose another place",
    errno.EPERM: "the system refuses it (permissions, an immutable file?); choose another place",
    errno.EROFS: "it is on a read-only file system; choose another place",
    errno.ENOSPC: "the disk is full; free some space, or choose another place",
    errno.EDQUOT: "the disk quota is used up; free some space, or choose another place",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EEXIST: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "an input/output error (a failing disk or network file system?)",
}


def place_error(err: OSError) -> str | None:
    """One line for an OSError about a place on disk the user controls, else None."""
    if err.errno not in PLACE_HINTS or err.filename is None:
        return None
    from encodecmae_hear.files import shown  # here: files imports torch, --help stays fast

    hint = PLACE_HINTS[err.errno]
    said = err.strerror or ""
    return f"{shown(err.filename)}: {said}" + (f"; {hint}" if hint.lower() != said.lower() else "")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m encodecmae_hear",
        description="EnCodecMAE: pretraining, HEAR embeddings and evaluation. "
                    "`python -m encodecmae_hear COMMAND --help` explains a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def load_command(name: str):
    """The object with add_arguments / run behind a command name."""
    module_name, _, attr = COMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in COMMANDS else "encodecmae_hear"
    try:
        return _run(argv)
    except UserError as err:
        print(f"{name}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout was closed by the reader (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the final flush cannot fail again
        return 141
    except OSError as err:
        said = place_error(err) or (str(err) if isinstance(err, FileNotFoundError) else None)
        if said is None:
            raise
        print(f"{name}: error: {' '.join(said.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    finally:
        if "encodecmae_hear.files" in sys.modules:  # folders this command claimed
            sys.modules["encodecmae_hear.files"].release_all_folders()


def _run(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        parser.parse_args(argv)  # --help, or an unknown command (exit 2)
        parser.print_help()
        return 0
    name = argv[0]
    command = load_command(name)
    parser = OneLineParser(prog=f"python -m encodecmae_hear {name}", command=name,
                           description=COMMANDS[name][1],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(command.run(args) or 0)
