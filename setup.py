"""Which files the package carries (the rest of the metadata is in setup.cfg).

The bundled model and the HEAR task configs have one copy, at the top of the checkout
(checkpoints/, eval_configs/). The build maps those folders into the package as
`encodecmae_hear.checkpoints` and `encodecmae_hear.eval_configs`, data-only packages, so
a wheel (and an sdist, and `pip install git+...`) carries them at
encodecmae_hear/checkpoints/ and encodecmae_hear/eval_configs/; encodecmae_hear/paths.py
finds them there. `make test` builds the wheel and runs it in a fresh venv
(tools/wheel_check.py).
"""
from setuptools import find_packages, setup

BUNDLED = {"encodecmae_hear.checkpoints": "checkpoints", "encodecmae_hear.eval_configs": "eval_configs"}

setup(
    packages=find_packages(include=["encodecmae_hear", "encodecmae_hear.*"]) + list(BUNDLED),
    package_dir=BUNDLED,
    package_data={
        "encodecmae_hear": ["evaluate/*.csv", "evaluate/shims/*.py", "evaluate/shims/*/*.py"],
        "encodecmae_hear.checkpoints": ["default.pt", "mobile-*.pt", "README.md", "CORPUS.md", "MOBILE.md"],
        "encodecmae_hear.eval_configs": ["*.json"],
    },
)
