"""`python -m encodecmae_hear fetch NAME`: a published EnCodecMAE model into the local
cache, pinned and checked, and its path printed (the file heareval's `--model` takes).

    python -m encodecmae_hear fetch mel256-ec-base_st
    python -m encodecmae_hear fetch mel256-ec-base_st --convert mel256-ec-base_st.ours.pt
    python -m encodecmae_hear fetch v1/base --revision <commit>
    python -m encodecmae_hear fetch --encodec          # the official EnCodec 24 kHz weights

Only the path goes to stdout, so `--model "$(python -m encodecmae_hear fetch NAME)"` works;
what was fetched (repo, commit, sha256) goes to stderr. Offline, a cached name prints its
path at once; an uncached one fails in one line that says how to place the file by hand.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from encodecmae_hear.checkpoint import model_from_payload, read_any, write_payload
from encodecmae_hear.errors import UserError
from encodecmae_hear.hub.encodec_weights import encodec_weights
from encodecmae_hear.hub.names import PAPER_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=None,
                        help=f"a published model, e.g. {PAPER_MODEL} or v1/base "
                             f"(`python -m encodecmae_hear models` lists them)")
    parser.add_argument("--revision", default=None,
                        help="hub commit, branch or tag to fetch, and pin from now on "
                             "(default: the pinned commit, else main)")
    parser.add_argument("--convert", default=None, metavar="OUT.pt",
                        help="also write it in this project's checkpoint format, with where it "
                             "came from in its provenance")
    parser.add_argument("--encodec", action="store_true",
                        help="fetch the official EnCodec 24 kHz weights (pretraining targets) instead")


def run(args: argparse.Namespace) -> int:
    if args.encodec:
        if args.name or args.convert or args.revision:
            raise UserError("--encodec fetches the EnCodec weights alone: give no NAME, --convert or --revision")
        path, sha256 = encodec_weights(None, download=True)
        print(f"fetch: EnCodec 24 kHz weights, sha256 {sha256}", file=sys.stderr)
        print(path)
        return 0
    if not args.name:
        raise UserError(f"name a published model (e.g. {PAPER_MODEL}), or pass --encodec")
    path, payload = read_any(args.name, args.revision)
    record = payload["provenance"].get("published")
    if record is None:
        raise UserError(f"{args.name!r} is a local file or model ({path}), not a published name: "
                        f"nothing to fetch")
    print(f"fetch: {record['repo']}/{record['file']} at commit {record['commit']}, "
          f"sha256 {record['sha256']}", file=sys.stderr)
    if args.convert:
        out = Path(args.convert)
        if out.resolve() == path.resolve():
            raise UserError(f"--convert {out} is the fetched file itself; choose another path")
        model_from_payload(payload, path)  # strict: the conversion is complete
        write_payload(payload, out)
        print(f"fetch: converted to {out}", file=sys.stderr)
        print(out)
        return 0
    print(path)
    return 0
