"""Distillation (train/distill.py): teacher frames aligned to the student's 25 frames/s in
count and time, the loss over valid frames, learning through the loop, and the command."""
import math

import pytest
import torch

from encodecmae_hear.errors import UserError
from encodecmae_hear.mobile_hear import load_model
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.model.mobile import MobileModel, mobile_preset
from encodecmae_hear.train.distill import DistillTask, TeacherTargets, align, parse_blocks
from encodecmae_hear.train.loop import TrainConfig, train
from encodecmae_hear.train.mobile_objectives import to_16k
from tests.test_mobile_train import source  # noqa: F401 (fixture)
from tests.train_helpers import metrics, one_thread, run_cli, write_corpus, write_manifest  # noqa: F401


def test_align_averages_three_teacher_frames_into_one_student_frame():
    centres = (torch.arange(300.0) + 0.5) * 1000 / 75  # teacher frame centres, ms
    aligned = align(centres[None, :, None])[0, :, 0]
    torch.testing.assert_close(aligned, (torch.arange(100.0) + 0.5) * 40)  # student centres
    assert align(torch.zeros(1, 301, 4)).shape == (1, 100, 4)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return EncodecMAE(preset("tiny", "mel256")).eval()


@pytest.mark.parametrize("seconds", [1.0, 2.5, 4.0])
def test_teacher_and_student_frame_counts_agree(teacher, seconds):
    wav = torch.randn(2, int(seconds * 24000)) * 0.1
    targets = TeacherTargets(teacher, (0, 2)).targets(wav, None, None)
    student = DistillTask(mobile_preset("mobile-tiny", head="distill", distill_dims=(64, 64))).eval()
    with torch.no_grad():
        out = student(wav)
    teacher_frames, student_frames = targets["blocks"][0].shape[1], out["predictions"][0].shape[1]
    assert student_frames == math.ceil(seconds * 25)
    assert student_frames - 1 <= teacher_frames <= student_frames  # mel256 drops a partial frame
    assert targets["valid"].tolist() == [int(seconds * 25)] * 2 == out["valid"].tolist()  # whole frames


@pytest.mark.parametrize("j", [5, 50, 95])
def test_a_click_lands_in_the_same_frame_for_teacher_and_student(teacher, j):
    silence, click = torch.zeros(1, 96000), torch.zeros(1, 96000)
    click[0, int((j + 0.5) * 0.04 * 24000)] = 0.9
    objective = TeacherTargets(teacher, (0,))  # the input block: the teacher's local mel features
    change = (objective.targets(click, None, None)["blocks"][0] -
              objective.targets(silence, None, None)["blocks"][0]).abs().sum(-1)[0]
    assert int(change.argmax()) == j
    student = MobileModel(mobile_preset("mobile-tiny"))
    mels = [student.log_mel(to_16k(x, None)[0])[0] for x in (click, silence)]
    energy = (mels[0] - mels[1]).abs().sum(-1).unflatten(0, (-1, 4)).sum(1)  # per student frame
    assert int(energy.argmax()) == j


def test_loss_counts_only_valid_frames(teacher):
    objective = TeacherTargets(teacher, (1,))
    target = torch.randn(2, 10, 64)
    pred = target + 0.1 * torch.randn(2, 10, 64)
    targets = {"blocks": [target], "valid": torch.tensor([10, 6])}
    out = {"predictions": [pred], "valid": torch.tensor([10, 10])}
    spoiled = pred.clone()
    spoiled[1, 6:] += 100  # past the teacher's valid frames
    base = objective.loss(out, targets)
    assert torch.equal(base["loss"], objective.loss({**out, "predictions": [spoiled]}, targets)["loss"])
    assert float(objective.loss(out, {**targets, "blocks": [pred]})["cosine"]) == pytest.approx(1.0)
    assert float(base["loss"]) > float(objective.loss(out, {**targets, "blocks": [pred]})["loss"])


def test_blocks_by_name():
    assert parse_blocks("all", 4) == (0, 1, 2, 3, 4)
    assert parse_blocks("input, last", 4) == (0, 4) and parse_blocks("1,-1", 4) == (2, 4)
    with pytest.raises(UserError, match="layers 0..3"):
        parse_blocks("4", 4)
    with pytest.raises(UserError, match="comma list"):
        parse_blocks("middle", 4)


def test_distillation_learns_through_the_train_loop(tmp_path, source, teacher):  # noqa: F811
    torch.manual_seed(0)
    student = DistillTask(mobile_preset("mobile-tiny", head="distill", distill_dims=(64, 64)))
    cfg = TrainConfig(out_dir=str(tmp_path), steps=4, batch_size=2, lr=3e-3, warmup_steps=0,
                      workers=0, log_every=1, checkpoint_every=4, crop_seconds=4.0)
    assert train(student, TeacherTargets(teacher, (0, 2)), source, cfg, provenance={}) == "done"
    losses = [m["loss"] for m in metrics(tmp_path)]
    assert losses[-1] < losses[0], losses


def test_distill_command_with_the_bundled_teacher(tmp_path):
    files = write_corpus(tmp_path / "audio", [("a.wav", 16000, 5.0, 1), ("b.wav", 24000, 4.0, 1)])
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    run_cli("distill", "--preset", "mobile-tiny", "--data", manifest, "--out", tmp_path / "run",
            "--steps", "2", "--batch-size", "2", "--workers", "0", "--log-every", "1", "--resume")
    model = load_model(str(tmp_path / "run" / "model.pt"))
    distill = model.provenance["distill"]
    assert distill["blocks"] == [0, 1, 2, 3, 4] and distill["standardised"] is True
    assert model.output == "distill" and model.timestamp_embedding_size == 5 * 256
    assert [m["step"] for m in metrics(tmp_path / "run")] == [1, 2]
