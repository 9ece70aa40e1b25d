"""`python -m encodecmae_hear convert OFFICIAL.pt OUT.pt`: an official EnCodecMAE
checkpoint (v2, or v1 with its config.gin) -> this project's checkpoint format, with
provenance (source file, sha256, layout, detected variant). The source is read through
the same door as `load_model` (`checkpoint.read_checkpoint`: weights_only, a damaged or
foreign file is a one-line error), and OUT may not be the source itself."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from encodecmae_hear.checkpoint import (
    OfficialFormat,
    model_from_payload,
    payload_of,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    tokenizer_from_payload,
)
from encodecmae_hear.errors import UserError
from encodecmae_hear.official.convert import read_official


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="official checkpoint file, or a name in $ENCODECMAE_CHECKPOINT_DIR")
    parser.add_argument("out", help="where to write the converted checkpoint")
    parser.add_argument("--gin", default=None,
                        help="v1 files only: the gin config published with it (default: config.gin beside it)")
    parser.add_argument("--encodec-weights", default=None,
                        help="EnCodec 24 kHz weights file, for EnCodec-input files without them "
                             "(default: $ENCODECMAE_ENCODEC_WEIGHTS)")
    parser.add_argument("--half", action="store_true", help="store float16 weights")


def same_file(a, b) -> bool:
    """Whether paths a and b name one file (b need not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def run(args) -> int:
    source = resolve_checkpoint(args.source)
    if same_file(source, args.out):
        raise UserError(f"OUT {args.out} is the source file itself: converting would replace the "
                        f"official file; choose another OUT")
    try:
        read_checkpoint(source)  # weights_only; damaged or code-carrying files end here
    except OfficialFormat as official:
        content = official.content
    else:
        raise UserError(f"{source} is already in this project's format: nothing to convert "
                        f"(load it directly, or copy it)")
    if Path(args.out).is_dir():
        raise UserError(f"OUT {args.out} is a folder; give the file to write, e.g. {Path(args.out) / 'model.pt'}")
    converted = read_official(source, content, gin_path=args.gin, encodec_weights=args.encodec_weights)
    payload = payload_of(converted)
    model = model_from_payload(payload, source)  # strict loads: the mapping is complete
    tokenizer = tokenizer_from_payload(payload, source)
    save_checkpoint(args.out, model, tokenizer=tokenizer, provenance=converted.provenance, half=args.half)
    prov = converted.provenance
    print(f"{source} ({prov['source_layout']}, {prov['variant']}) -> {args.out}")
    for reason, count in prov["ignored_keys"].items():
        print(f"  ignored {count} keys: {reason}")
    return 0
