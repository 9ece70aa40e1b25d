"""The mobile objectives through the real train loop: each loss falls on generated audio,
slices are where they should be, and a resumed run ends bit-for-bit where an
uninterrupted one does."""
import numpy as np
import pytest
import torch

from encodecmae_hear.audio import resample
from encodecmae_hear.model.mobile import MobileModel, mobile_preset
from encodecmae_hear.train.data import ManifestSource
from encodecmae_hear.train.loop import TrainConfig, train
from encodecmae_hear.train.mobile_objectives import MOBILE_OBJECTIVES, build_task, gather_slices
from encodecmae_hear.train.state import latest_checkpoint
from tests.train_helpers import (
    metrics,
    one_thread,  # noqa: F401 (autouse fixture)
    write_corpus,
    write_manifest,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # Two 4 s clips, one crop each: every step sees the same two crops.
    folder = tmp_path_factory.mktemp("mobile")
    files = write_corpus(folder / "audio", [("x.wav", 24000, 4.0, 1), ("y.flac", 16000, 4.0, 2)])
    return ManifestSource(write_manifest(folder / "m.jsonl", files), crop_seconds=4.0)


def config(out, steps, **changes):
    return TrainConfig(out_dir=str(out), steps=steps, batch_size=2, lr=3e-3, warmup_steps=0,
                       workers=0, log_every=1, checkpoint_every=2, crop_seconds=4.0, **changes)


@pytest.mark.parametrize("objective", MOBILE_OBJECTIVES)
def test_each_objective_learns_through_the_train_loop(tmp_path, source, objective):
    torch.manual_seed(0)
    task, scorer = build_task(mobile_preset("mobile-tiny", head=objective))
    assert train(task, scorer, source, config(tmp_path, 4), provenance={}) == "done"
    losses = [m["loss"] for m in metrics(tmp_path)]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
    _, payload = latest_checkpoint(tmp_path)
    model = MobileModel(task.config)
    model.load_state_dict(payload["model"], strict=True)  # a plain model from a task's file


def test_resume_reaches_the_weights_of_an_uninterrupted_run(tmp_path, source):
    def fresh():
        torch.manual_seed(0)
        return build_task(mobile_preset("mobile-tiny", head="cbow"))

    task, scorer = fresh()
    train(task, scorer, source, config(tmp_path / "whole", 4), provenance={})
    first, scorer = fresh()
    train(first, scorer, source, config(tmp_path / "parts", 2), provenance={})
    _, payload = latest_checkpoint(tmp_path / "parts")
    resumed, scorer = fresh()
    resumed.load_state_dict(payload["model"], strict=True)
    train(resumed, scorer, source, config(tmp_path / "parts", 4), provenance={}, resume=payload)
    for key, value in task.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    losses = [[m["loss"] for m in metrics(tmp_path / run)] for run in ("whole", "parts")]
    assert losses[0] == losses[1]


def test_audio2vec_slices_are_adjacent_and_inside_the_valid_audio():
    mel = torch.arange(400.0)[None, :, None].expand(2, -1, 64)  # frame index as value
    slices = gather_slices(mel, torch.tensor([[0, 64], [80, 144]]), 64)
    assert torch.equal(slices[1, 1, :, 5], torch.arange(144.0, 208.0))
    torch.manual_seed(0)
    task, _ = build_task(mobile_preset("mobile-tiny", head="skipgram"))
    wav = torch.randn(3, 96000) * 0.1
    lengths = torch.tensor([96000, 84000, 48000])  # 400, 350 and 200 valid mel frames
    out = task(wav, lengths, generator=torch.Generator().manual_seed(3))
    starts = out["starts"]  # (B, 5)
    assert torch.equal(starts.diff(dim=1), torch.full((3, 4), 64))
    assert starts[0, 0] <= 400 - 320 and starts[1, 0] <= 350 - 320
    assert starts[2, 0] == 0  # too short for the group: it starts at the beginning
    mel16 = task.log_mel(resample(wav, 24000, 16000))
    for b in range(3):
        for k, slot in enumerate((0, 1, 3, 4)):  # outer slices are the targets
            s0 = int(starts[b, slot])
            torch.testing.assert_close(out["target"][b, k], mel16[b, s0:s0 + 64])
    assert out["prediction"].shape == out["target"].shape == (3, 4, 64, 64)


def test_temporal_gap_targets_are_normalised_gaps():
    torch.manual_seed(0)
    task, scorer = build_task(mobile_preset("mobile-tiny", head="temporalgap"))
    out = task(torch.randn(64, 96000) * 0.1, None, generator=torch.Generator().manual_seed(0))
    gap = out["gap"]
    assert gap.shape == (64,) and gap.min() >= 0 and gap.max() <= 1 and gap.std() > 0.1
    room = 400 - 64  # frames in a 4 s crop minus one slice
    assert torch.allclose(gap * room, (gap * room).round(), atol=1e-4)  # whole frames apart
    assert scorer.loss(out, gap)["loss"] > 0


def test_crops_too_short_for_the_slices_are_refused():
    task, _ = build_task(mobile_preset("mobile-tiny", head="cbow"))
    with pytest.raises(ValueError, match="needs 320 \\(3.20 s\\)"):
        task(torch.zeros(2, 72000), None)  # 3 s


def test_pretrain_mobile_command_runs_resumes_and_releases(tmp_path, source):
    from encodecmae_hear.checkpoint import load_checkpoint
    from tests.train_helpers import run_cli

    files = write_corpus(tmp_path / "audio", [("a.wav", 16000, 5.0, 1), ("b.wav", 24000, 3.5, 1)])
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    common = ["--objective", "temporalgap", "--preset", "mobile-tiny", "--data", manifest,
              "--out", tmp_path / "run", "--batch-size", "2", "--workers", "0", "--log-every", "1",
              "--checkpoint-every", "1", "--resume"]
    run_cli("pretrain-mobile", *common, "--steps", "2")
    out = run_cli("pretrain-mobile", *common, "--steps", "3")
    assert "resumed at step 2" in out
    model, payload = load_checkpoint(tmp_path / "run" / "model.pt", architecture="mobile")
    assert model.config.head == "temporalgap" and model.config.width == 0.125
    assert payload["provenance"]["objective"] == "temporalgap" and payload["provenance"]["steps"] == 3
    assert [m["step"] for m in metrics(tmp_path / "run")] == [1, 2, 3]
    status, out = run_cli_status("pretrain-mobile", *common, "--objective", "cbow", "--steps", "4")
    assert status == 2 and "was trained with --objective temporalgap; pass the same" in out


def run_cli_status(*args):
    from tests.train_helpers import cli
    proc = cli(*args)
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out
