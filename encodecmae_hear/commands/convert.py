"""`python -m encodecmae_hear convert OFFICIAL.pt OUT.pt`: an official EnCodecMAE
checkpoint (v2, or v1 with its config.gin) -> this project's checkpoint format, with
provenance (source file, sha256, layout, detected variant)."""
from __future__ import annotations

import argparse

from encodecmae_hear.checkpoint import (
    model_from_payload,
    payload_of,
    resolve_checkpoint,
    save_checkpoint,
    tokenizer_from_payload,
)
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


def run(args) -> int:
    source = resolve_checkpoint(args.source)
    converted = read_official(source, gin_path=args.gin, encodec_weights=args.encodec_weights)
    payload = payload_of(converted)
    model = model_from_payload(payload, source)  # strict loads: the mapping is complete
    tokenizer = tokenizer_from_payload(payload, source)
    save_checkpoint(args.out, model, tokenizer=tokenizer, provenance=converted.provenance, half=args.half)
    prov = converted.provenance
    print(f"{source} ({prov['source_layout']}, {prov['variant']}) -> {args.out}")
    for reason, count in prov["ignored_keys"].items():
        print(f"  ignored {count} keys: {reason}")
    return 0
