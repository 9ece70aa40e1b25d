"""Where the project's own files are, in one place: the bundled models, the evaluation
configs, the HEAR tools' shims and the source tree the package runs from (provenance).

The bundled model and the evaluation configs have one copy, at the top of the checkout
(`checkpoints/`, `eval_configs/`). A built wheel carries them inside the package, as
`encodecmae_hear/checkpoints/` and `encodecmae_hear/eval_configs/` (setup.py maps the
folders in), so an installed package reads its own copies and a checkout reads the top.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED = (PACKAGE_DIR / "eval_configs").is_dir()     # a built wheel, not a checkout
SOURCE_TREE = None if INSTALLED else PACKAGE_DIR.parent  # the checkout, when run from one
DATA_ROOT = PACKAGE_DIR if INSTALLED else PACKAGE_DIR.parent
BUNDLED_DIR = DATA_ROOT / "checkpoints"
BUNDLED_CHECKPOINT = BUNDLED_DIR / "default.pt"
BUNDLED_STUDENT = BUNDLED_DIR / "mobile-student.pt"  # encodecmae_hear.mobile_hear's default
EVAL_CONFIGS = DATA_ROOT / "eval_configs"
SHIM_DIR = PACKAGE_DIR / "evaluate" / "shims"            # what the HEAR tools get on sys.path
