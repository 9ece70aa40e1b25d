"""The .pth file that `make install` writes (compat.pth_text) and the post-import hook it
installs (shims/encodecmae_hear_fixes.py): cheap at start-up, and heareval's prediction
module fixed when, and only when, it is imported. Each case runs in a fresh interpreter
that processes the .pth file as site-packages would (site.addsitedir); two interpreters
in all, since importing heareval takes seconds. The real prediction runner on an event
task runs in `make wheel-check` (tools/wheel_check.py)."""
import json
import os
import subprocess
import sys

import pytest

from encodecmae_hear.evaluate import compat
from encodecmae_hear.paths import SHIM_DIR

FIXES = compat.FIXES_MODULE
STATE = """
def state():
    fixes = sys.modules.get("@FIXES@")
    return {
        "finders": [type(f).__name__ for f in sys.meta_path],
        "shims_after_site": min(i for i, p in enumerate(sys.path) if p == "@SHIMS@")
                            > max(i for i, p in enumerate(sys.path) if p.endswith("site-packages")),
        "fixes_file": getattr(fixes, "__file__", None),
        "heavy": sorted(m for m in ("torch", "pytorch_lightning", "heareval", "encodecmae_hear")
                        if m in sys.modules),
        "weights_env": os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
"""

# As a venv with the .pth file: start-up, then a program that uses Lightning, then heareval.
AS_INSTALLED = """
result = {"start": state()}
from pytorch_lightning.loops.fit_loop import FitLoop
result["lightning_alone"] = {**state(),
                             "property": isinstance(getattr(FitLoop, "current_epoch", None), property)}
import heareval.predictions.task_predictions as tp
loop = FitLoop(min_epochs=1, max_epochs=20)
loop.current_epoch = 10          # what heareval does before testing (hear-eval-kit #432)
import @FIXES@ as fixes
fixes.install()                  # a second install: the fixes are not applied twice
try:
    fixes.install(seed_offset=2)
    error = ""
except RuntimeError as err:
    error = str(err)
result["heareval"] = {**state(), "completed": loop.epoch_progress.current.completed,
                      "epoch": loop.current_epoch, "seed": tp.seed_everything(42, workers=False),
                      "error": error}
"""

# As compat.main: the shims folder appended, the hook installed with a seed offset.
AS_COMPAT = """
sys.path.append("@SHIMS@")
import @FIXES@ as fixes
fixes.install(seed_offset=3)
import heareval.predictions.task_predictions as tp
result = {**state(), "seed": tp.seed_everything(42, workers=False)}
"""


def run_with_pth(tmp_path, code: str) -> dict:
    """Run `code` (@FIXES@, @SHIMS@: the module's name, SHIM_DIR) after processing
    compat's .pth file; -> its `result`."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / compat.PTH_NAME).write_text(compat.pth_text())
    program = (f"import json, os, sys, site\nsite.addsitedir({str(site_dir)!r})\n"
               + STATE + code + "\nprint(json.dumps(result))\n")
    program = program.replace("@FIXES@", FIXES).replace("@SHIMS@", str(SHIM_DIR))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", compat.SEED_ENV)}
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return run_with_pth(tmp_path_factory.mktemp("installed"), AS_INSTALLED)


@pytest.fixture(scope="module")
def through_compat(tmp_path_factory):
    return run_with_pth(tmp_path_factory.mktemp("compat"), AS_COMPAT)


def test_pth_text_puts_shims_on_the_path_and_installs_the_hook():
    lines = compat.pth_text().splitlines()
    assert lines == [str(SHIM_DIR), f"import {FIXES}; {FIXES}.install()"]
    assert (SHIM_DIR / f"{FIXES}.py").is_file() and (SHIM_DIR / "tensorflow").is_dir()


def test_start_up_only_adds_a_finder_and_imports_nothing_heavy(installed):
    start = installed["start"]
    assert start["finders"][0] == "PostImportFinder"
    assert start["shims_after_site"]                         # a real TensorFlow comes first
    assert start["fixes_file"] == str(SHIM_DIR / f"{FIXES}.py")
    assert start["heavy"] == [] and start["weights_env"] is None


def test_a_program_without_heareval_is_left_alone(installed):
    alone = installed["lightning_alone"]
    assert "pytorch_lightning" in alone["heavy"] and "heareval" not in alone["heavy"]
    assert alone["property"] is False                        # Lightning 1.9 as shipped
    assert alone["weights_env"] is None


def test_importing_herevals_predictions_applies_the_fixes_once(installed):
    fixed = installed["heareval"]
    assert fixed["completed"] == 10 and fixed["epoch"] == 10  # the setter now takes effect
    assert fixed["weights_env"] == "1"
    assert fixed["seed"] == 42                               # heareval's own seed, shifted 0 times
    assert "already fixed with seed offset 0; cannot change it to 2" in fixed["error"]
    assert fixed["finders"].count("PostImportFinder") == 1


def test_compat_installs_the_same_hook_with_a_seed_offset(through_compat):
    assert through_compat["seed"] == 45                      # 42 + 3
    assert through_compat["finders"].count("PostImportFinder") == 1   # the .pth's, updated
    assert through_compat["weights_env"] == "1"
