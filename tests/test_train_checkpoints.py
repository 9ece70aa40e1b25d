"""Never lose work: a SIGKILL during a save, or a damaged newest file, leaves a checkpoint
to resume from; old checkpoints are pruned to the last K."""
import signal
import subprocess
import sys
import time

import torch

from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.state import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
)
from tests.train_helpers import ROOT

_SAVER = """
import sys, torch
from encodecmae_hear.checkpoint import save_checkpoint
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.state import checkpoint_path
run = sys.argv[1]
model = EncodecMAE(preset("tiny"))
save_checkpoint(checkpoint_path(run, 1), model, training={"step": 1})
big = torch.zeros(300_000_000, dtype=torch.uint8)  # a slow save: 300 MB of optimizer state
save_checkpoint(checkpoint_path(run, 2), model, training={"step": 2, "optimizer": big})
"""


def test_sigkill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path)], cwd=ROOT)
    deadline = time.time() + 120
    while not any(p.name.startswith(".step-000000002") and p.stat().st_size > 0
                  for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.time() < deadline, "the save ended before the kill"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not checkpoint_path(tmp_path, 2).exists()  # killed mid-write: never renamed
    path, payload = latest_checkpoint(tmp_path)
    assert path == checkpoint_path(tmp_path, 1) and payload["training"] == {"step": 1}
    prune_checkpoints(tmp_path, keep=3)  # the next save clears the stale temp file
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000001.pt"]


def test_a_damaged_newest_checkpoint_is_skipped_and_old_ones_pruned(tmp_path):
    model = EncodecMAE(preset("tiny"))
    for step in (10, 20, 30, 40):
        save_checkpoint(checkpoint_path(tmp_path, step), model, training={"step": step})
        prune_checkpoints(tmp_path, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-000000020.pt", "step-000000030.pt", "step-000000040.pt"]
    newest = checkpoint_path(tmp_path, 40)
    newest.write_bytes(newest.read_bytes()[:1000])  # e.g. a full disk
    warnings = []
    path, payload = latest_checkpoint(tmp_path, log=warnings.append)
    assert path == checkpoint_path(tmp_path, 30) and payload["training"]["step"] == 30
    assert "step-000000040.pt" in warnings[0] and "truncated or corrupt" in warnings[0]
    assert latest_checkpoint(tmp_path / "empty") is None
    torch.testing.assert_close(payload["model"]["head.weight"], model.state_dict()["head.weight"])
