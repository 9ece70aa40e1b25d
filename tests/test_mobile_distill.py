"""Distillation (train/distill.py): teacher frames aligned to the student's 25 frames/s in
count and time, the loss over valid frames, learning through the loop, and the command."""
import math
import subprocess

import pytest
import torch

from encodecmae_hear.cli import main
from encodecmae_hear.errors import UserError
from encodecmae_hear.mobile_hear import load_model
from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.model.mobile import MobileModel, mobile_preset
from encodecmae_hear.train.distill import (
    DistillTask,
    Specialist,
    TeacherTargets,
    align,
    build_objective,
    parse_blocks,
)
from encodecmae_hear.train.loop import TrainConfig, train
from encodecmae_hear.train.mobile_objectives import to_16k
from encodecmae_hear.train.teachers import load_teacher
from tests.test_mobile_train import source  # noqa: F401 (fixture)
from tests.train_helpers import (  # noqa: F401 (one_thread: autouse fixture)
    ROOT,
    cli,
    metrics,
    one_thread,
    run_cli,
    write_corpus,
    write_manifest,
)


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


# ---- the recipe, pinned against values worked out by hand ----

class ScriptedTeacher(torch.nn.Module):
    """A stand-in teacher whose blocks are fixed tensors: block b, frame i, channel 0 is
    10 b + i and channel 1 is -i (6 frames, 2 channels), whatever the audio."""

    num_layers = 1

    def encode(self, wav, lengths=None, with_input=True):
        i = torch.arange(6.0)
        return [torch.stack([10 * b + i, -i], -1)[None].expand(wav.shape[0], -1, -1) for b in range(2)]


def test_targets_are_the_teacher_blocks_standardised_with_its_statistics_then_averaged_in_threes():
    stats = {"mean": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "std": torch.tensor([[2.0, 4.0], [0.5, 1.0]])}
    wav = torch.zeros(1, 6 * 320)  # six teacher frames, two student frames
    targets = TeacherTargets(ScriptedTeacher(), (0, 1), stats).targets(wav, None, None)
    # Frames 0-2 average to i = 1, frames 3-5 to i = 4.
    # Block 0: channel 0 (1 - 1) / 2, (4 - 1) / 2; channel 1 (-1 - 2) / 4, (-4 - 2) / 4.
    torch.testing.assert_close(targets["blocks"][0][0], torch.tensor([[0.0, -0.75], [1.5, -1.5]]))
    # Block 1: channel 0 (11 - 3) / 0.5, (14 - 3) / 0.5; channel 1 (-1 - 4) / 1, (-4 - 4) / 1.
    torch.testing.assert_close(targets["blocks"][1][0], torch.tensor([[16.0, -5.0], [22.0, -8.0]]))
    assert targets["valid"].tolist() == [2]
    raw = TeacherTargets(ScriptedTeacher(), (1,)).targets(wav, None, None)["blocks"][0][0]
    torch.testing.assert_close(raw, torch.tensor([[11.0, -1.0], [14.0, -4.0]]))


def test_loss_is_l1_minus_log_sigmoid_cosine_averaged_over_valid_frames_then_blocks():
    objective = TeacherTargets(ScriptedTeacher(), (0, 1))
    # Block 0: frame 0 pred (1, 0), target (0, 2): L1 (1 + 2) / 2 = 1.5, cosine 0;
    #          frame 1 pred (3, 4), target (4, 3): L1 (1 + 1) / 2 = 1, cosine 24 / 25;
    #          frame 2 is past the valid frames (anything there is ignored).
    # Block 1: the prediction equals the target: L1 0, cosine 1 on both valid frames.
    pred0 = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [50.0, -7.0]]])
    target0 = torch.tensor([[[0.0, 2.0], [4.0, 3.0], [0.0, 0.0]]])
    same = torch.tensor([[[2.0, 1.0], [-1.0, 5.0], [1.0, 1.0]]])
    out = {"predictions": [pred0, same], "valid": torch.tensor([3])}
    targets = {"blocks": [target0, same.clone()], "valid": torch.tensor([2])}
    got = objective.loss(out, targets)

    def term(l1, cos):  # l1 - log(sigmoid(cos)) = l1 + log(1 + e^-cos)
        return l1 + math.log1p(math.exp(-cos))

    block0 = (term(1.5, 0.0) + term(1.0, 0.96)) / 2
    block1 = term(0.0, 1.0)
    assert float(got["loss"]) == pytest.approx((block0 + block1) / 2, rel=1e-6)
    assert float(got["l1"]) == pytest.approx((1.25 + 0.0) / 2, rel=1e-6)
    assert float(got["cosine"]) == pytest.approx((0.48 + 1.0) / 2, rel=1e-6)


# ---- targets that keep the weak directions, and the specialised teachers ----

SCRIPTED_STATS = {"mean": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
                  "std": torch.tensor([[2.0, 4.0], [0.5, 1.0]]),
                  "scene_layer": "input+concat", "scene_mean": torch.tensor([0.0, 0.0, 0.0, 1.0]),
                  "scene_projection": torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 2.0, 0.0, 0.0]])}


@pytest.mark.parametrize("kind", ["whitened", "both"])
def test_whitened_targets_project_the_joined_standardised_blocks_on_the_scene_axes(kind):
    settings = {"blocks": [0, 1], "standardised": True, "targets": kind}
    objective = build_objective(ScriptedTeacher(), {"embedding_stats": SCRIPTED_STATS}, settings)
    blocks = objective.targets(torch.zeros(1, 6 * 320), None, None)["blocks"]
    # The standardised, aligned blocks (worked out above) joined: frame 0 (0, -0.75, 16, -5),
    # frame 1 (1.5, -1.5, 22, -8); minus the scene mean (0, 0, 0, 1); on the axes
    # (1, 0, 0, 1) and (0, 2, 0, 0): frame 0 (0 - 6, -1.5) and frame 1 (1.5 - 9, -3).
    whitened = torch.tensor([[-6.0, -1.5], [-7.5, -3.0]])
    assert len(blocks) == (1 if kind == "whitened" else 3)
    torch.testing.assert_close(blocks[-1][0], whitened)
    if kind == "both":
        torch.testing.assert_close(blocks[0][0], torch.tensor([[0.0, -0.75], [1.5, -1.5]]))


def test_the_objective_a_run_records_standardises_with_the_teachers_statistics():
    settings = {"blocks": [1], "standardised": True}
    objective = build_objective(ScriptedTeacher(), {"embedding_stats": SCRIPTED_STATS}, settings)
    block = objective.targets(torch.zeros(1, 6 * 320), None, None)["blocks"][0][0]
    torch.testing.assert_close(block, torch.tensor([[16.0, -5.0], [22.0, -8.0]]))
    raw = build_objective(ScriptedTeacher(), {"embedding_stats": SCRIPTED_STATS},
                          {**settings, "standardised": False})
    torch.testing.assert_close(raw.targets(torch.zeros(1, 6 * 320), None, None)["blocks"][0][0],
                               torch.tensor([[11.0, -1.0], [14.0, -4.0]]))


def test_balanced_weighting_scales_each_dimension_by_its_spread_in_the_batch():
    # Target frames (1, 1) and (11, 2): population std 5 and 0.5 (above the floor, 0.1 of
    # their mean 2.75), so the weights are 1/5 and 1/0.5 over their mean 1.1.
    # Prediction frames (2, 1.1) and (11, 1.0).
    target = torch.tensor([[[1.0, 1.0], [11.0, 2.0]]])
    pred = torch.tensor([[[2.0, 1.1], [11.0, 1.0]]])
    w = (0.2 / 1.1, 2 / 1.1)

    def cosine(a, b):
        a, b = [x * wi for x, wi in zip(a, w)], [x * wi for x, wi in zip(b, w)]
        return sum(x * y for x, y in zip(a, b)) / math.hypot(*a) / math.hypot(*b)

    l1 = ((1.0 * w[0] + 0.1 * w[1]) / 2, (0.0 * w[0] + 1.0 * w[1]) / 2)
    cos = (cosine((2.0, 1.1), (1.0, 1.0)), cosine((11.0, 1.0), (11.0, 2.0)))
    expected = sum(a + math.log1p(math.exp(-c)) for a, c in zip(l1, cos)) / 2
    objective = TeacherTargets(ScriptedTeacher(), (0,), dim_weighting="balanced")
    got = objective.loss({"predictions": [pred], "valid": torch.tensor([2])},
                         {"blocks": [target], "valid": torch.tensor([2])})
    assert float(got["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(got["l1"]) == pytest.approx(sum(l1) / 2, rel=1e-5)
    plain = TeacherTargets(ScriptedTeacher(), (0,)).loss({"predictions": [pred], "valid": torch.tensor([2])},
                                                         {"blocks": [target], "valid": torch.tensor([2])})
    assert float(plain["l1"]) == pytest.approx((0.55 + 0.5) / 2, rel=1e-5)
    # A dimension that does not vary in the batch is weighted as one at the floor:
    # stds (5, 0) -> (5, 0.25), weights 1/5 and 1/0.25 over their mean 2.1.
    flat = torch.tensor([[[1.0, 3.0], [11.0, 3.0]]])
    got = objective.loss({"predictions": [flat + 1], "valid": torch.tensor([2])},
                         {"blocks": [flat], "valid": torch.tensor([2])})
    assert float(got["l1"]) == pytest.approx((0.2 + 4) / 2.1 / 2, rel=1e-5)


class ChunkMean(torch.nn.Module):
    """Stands in for Silero's network: h is the mean of the chunk's 512 new samples."""

    def forward(self, x, state):
        h = x[:, 64:].mean(-1, keepdim=True).expand(-1, 128)  # (B, 128)
        return h[:, 0], torch.stack([h, state[1]])


def test_specialised_teacher_features_are_read_at_the_student_frame_centres(monkeypatch):
    vad = load_teacher("vad")
    monkeypatch.setattr(vad, "model", ChunkMean())
    # A 24 kHz ramp equal to its own time: student frame j, centred at (j + 1/2) x 40 ms,
    # reads that time (less half a 16 kHz sample; the resampler's gain is 1 within 0.1 %).
    wav = (torch.arange(96_000, dtype=torch.float64) / 24_000).float()[None]
    got = Specialist("vad", vad, 1.0).features(wav, torch.tensor([96_000]))[0, :, 0].double()
    assert got.shape == (100,)
    expected = (torch.arange(100, dtype=torch.float64) + 0.5) * 0.04 - 0.5 / 16_000
    torch.testing.assert_close(got[1:-1], expected[1:-1], atol=2e-4, rtol=1e-3)


def test_distill_with_every_kind_of_target(tmp_path):
    files = write_corpus(tmp_path / "audio", [("a.wav", 16000, 5.0, 1), ("b.wav", 24000, 4.0, 1)])
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    cache = tmp_path / "cache"
    assert main(["cache-teachers", "--data", str(manifest), "--teachers", "vad", "--out", str(cache)]) == 0
    args = ["distill", "--preset", "mobile-tiny", "--data", manifest, "--out", tmp_path / "run",
            "--batch-size", "2", "--workers", "0", "--log-every", "1", "--targets", "both",
            "--dim-weighting", "balanced",
            "--teachers", "crepe,vad", "--teacher-weights", "0.5,2", "--teacher-cache", tmp_path / "cache"]
    run_cli(*args, "--steps", "1")
    run_cli(*args, "--steps", "2", "--resume")
    model = load_model(str(tmp_path / "run" / "model.pt"))
    distill = model.provenance["distill"]
    assert distill["targets"] == "both" and distill["dim_weighting"] == "balanced"
    assert distill["teacher_cache"] == str(cache)  # VAD read from it, CREPE (not cached) computed
    assert [(t["name"], t["weight"]) for t in distill["teachers"]] == [("crepe", 0.5), ("vad", 2.0)]
    # five standardised blocks, the 512 scene axes of the bundled teacher, CREPE's 360, VAD's 128
    assert model.config.distill_dims == (256,) * 5 + (512, 360, 128)
    assert model.timestamp_embedding_size == 5 * 256 + 512 + 360 + 128
    logged = metrics(tmp_path / "run")
    assert [m["step"] for m in logged] == [1, 2] and {"loss_crepe", "cosine_vad"} <= set(logged[-1])


def test_an_official_checkpoint_as_teacher(tmp_path):
    files = write_corpus(tmp_path / "audio", [("a.wav", 24000, 4.5, 1), ("b.wav", 16000, 4.0, 1)])
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    teacher = ROOT / "tests" / "fixtures" / "official" / "mel256.pt"
    dry = subprocess.run(["make", "-n", "distill", f"TEACHER={teacher}", f"DATA={manifest}", "BATCH=2"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"--teacher {teacher}" in dry
    run_cli("distill", "--teacher", teacher, "--preset", "mobile-tiny", "--data", manifest, "--out",
            tmp_path / "run", "--steps", "1", "--batch-size", "2", "--workers", "0", "--log-every", "1")
    model = load_model(str(tmp_path / "run" / "model.pt"))
    distill = model.provenance["distill"]
    assert distill["teacher"] == str(teacher) and distill["standardised"] is False  # it holds no statistics
    assert model.config.distill_dims == (40,) * 4  # MODEL_DIM 40: the input and 3 layers
    refused = cli("distill", "--teacher", teacher, "--preset", "mobile-tiny", "--data", manifest, "--out",
                  tmp_path / "w", "--steps", "1", "--batch-size", "2", "--targets", "whitened")
    said, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "needs a teacher with scene whitening" in said, said
