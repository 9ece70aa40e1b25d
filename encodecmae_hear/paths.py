"""Where the project's own files are, in one place: the bundled model, the evaluation
configs and the source tree the package runs from (for provenance)."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_TREE = PACKAGE_DIR.parent            # the checkout, when run from one
BUNDLED_CHECKPOINT = SOURCE_TREE / "checkpoints" / "default.pt"
EVAL_CONFIGS = SOURCE_TREE / "eval_configs"
