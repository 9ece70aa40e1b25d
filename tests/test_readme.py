"""README is a guide a newcomer reads in five minutes, and its commands run as written:
every fenced block marked ```sh runnable runs here, in a view of the checkout; every
`make TARGET` it names is a target; its links point at files that exist; and `make help`
fits 100 columns, grouped by audience."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_helpers import ROOT

README = ROOT / "README.md"
TEXT = README.read_text()
BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
RUNNABLE = [body for info, body in BLOCK.findall(TEXT) if "runnable" in info.split()]
HELP_GROUPS = ["Use", "Evaluate", "Train", "Reproduce our models", "Develop"]


def shell_env() -> dict:
    """This Python's environment first on PATH, as after `source .venv/bin/activate`."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture
def checkout_view(tmp_path):
    """A folder that holds the checkout's top-level entries as links, so README's
    commands run as written while what they write stays in tmp_path."""
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "runs", "tasks", "embeddings"}:
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def test_readme_is_at_most_250_lines():
    assert len(TEXT.splitlines()) <= 250


def test_readme_marks_cheap_blocks_as_runnable():
    assert len(RUNNABLE) >= 2
    assert all(body.strip() for body in RUNNABLE)


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_runnable_block_runs_as_written(index, checkout_view):
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", RUNNABLE[index]], cwd=checkout_view,
                          env=shell_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README block {index} failed:\n{RUNNABLE[index]}\n" + (
        done.stdout + done.stderr)[-3000:]


def make_targets() -> set[str]:
    database = subprocess.run(["make", "-pRrq", "-f", "Makefile", "nothing-at-all"], cwd=ROOT,
                              capture_output=True, text=True, env=shell_env()).stdout
    return set(re.findall(r"^([a-z][a-z0-9-]*):", database, re.M))


def test_every_make_target_in_readme_exists():
    named = set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", TEXT))
    assert named, "README names no make target"
    assert named <= make_targets(), named - make_targets()


def test_readme_links_point_at_files():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXT):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_make_help_is_grouped_and_fits_100_columns():
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, env=shell_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if not line.startswith(" ")] == HELP_GROUPS
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    described = {line.split()[0] for line in lines if line.startswith(" ")}
    assert {"demo", "embed", "hear", "pretrain", "gpu-check", "default-model", "test"} <= described
