"""The real hear-validator (hearvalidator 2021.0.6) accepts the module with the bundled
model, through the same command a HEAR user types."""
import shutil
import subprocess
import sys
from pathlib import Path

from encodecmae_hear.checkpoint import default_checkpoint


def validator_exe() -> str:
    exe = Path(sys.executable).parent / "hear-validator"
    found = str(exe) if exe.exists() else shutil.which("hear-validator")
    assert found, "hear-validator is not installed: run `make install`"
    return found


def test_hear_validator_accepts_the_bundled_model():
    result = subprocess.run([validator_exe(), "encodecmae_hear", "--model",
                             str(default_checkpoint()), "--device", "cpu"],
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Looks good!" in output
    assert "Model sample rate is: 48000" in output
    assert "Max timestamp 3993.3" in output  # 4 s clip: 300 frames, last centre 3993.3 ms
