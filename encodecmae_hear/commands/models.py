"""`python -m encodecmae_hear models`: the models a name can load, with sizes: bundled,
local ($ENCODECMAE_CHECKPOINT_DIR), fetched and pinned (hub cache), and, when online, the
published ones the hub lists. Offline it lists the names this code knows instead."""
from __future__ import annotations

import argparse

from encodecmae_hear.hub import store
from encodecmae_hear.hub.names import V1_PREFIX, V1_SIZES, V2_REPO, all_known
from encodecmae_hear.locate import BUNDLED_DIR, bundled_names, checkpoint_dir, local_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action="store_true",
                        help="do not ask the hub for its listing (as with HF_HUB_OFFLINE=1)")


def megabytes(size) -> str:
    return f"{size / 1e6:8.1f} MB" if size is not None else "       ? MB"


def run(args: argparse.Namespace) -> int:
    print("bundled (offline, no download):")
    for name in bundled_names():
        print(f"  {name:34s} {megabytes((BUNDLED_DIR / f'{name}.pt').stat().st_size)}")
    root = checkpoint_dir()
    print(f"local ({root}):")
    for name in local_names():
        print(f"  {name:34s} {megabytes((root / f'{name}.pt').stat().st_size)}")
    print(f"fetched and pinned ({store.cache_dir()}):")
    for record in store.pinned():
        name = record["file"][:-len(".pt")] if record["repo"] == V2_REPO else \
            f"{V1_PREFIX}{record['repo'].rsplit('encodecmae-', 1)[-1]}"
        print(f"  {name:34s} {megabytes(record.get('size'))}  commit {record['commit'][:12]}  "
              f"sha256 {record['sha256'][:12]}")
    listed = None if args.offline else store.listed_files(V2_REPO)
    if listed is None:
        print("published (not listed: offline or the hub unreachable; known names):\n  "
              + "\n  ".join(all_known()))
        return 0
    print(f"published ({store.endpoint()}/{V2_REPO}):")
    for path, size in sorted(listed):
        if path.endswith(".pt"):
            print(f"  {path[:-len('.pt')]:34s} {megabytes(size)}")
    print(f"  v1: {', '.join(V1_PREFIX + s for s in V1_SIZES)} (one repository each)")
    return 0
