"""The train loop in-process: it learns a fixed batch, aborts on NaN, schedules the lr,
and its RNG state survives a weights_only checkpoint."""
import math
import random

import numpy as np
import pytest
import torch

from encodecmae_hear.model.config import preset
from encodecmae_hear.model.mae import EncodecMAE
from encodecmae_hear.train.data import ManifestSource
from encodecmae_hear.train.loop import NonFiniteLoss, TrainConfig, lr_at, train
from encodecmae_hear.train.objectives import KMeansTargets, assign
from encodecmae_hear.train.state import rng_state, set_rng_state
from tests.train_helpers import (
    metrics,
    one_thread,  # noqa: F401 (autouse fixture)
    write_corpus,
    write_manifest,
)


@pytest.fixture
def fixed_batch_source(tmp_path):
    # Two clips of exactly one crop: every step sees the same two crops.
    files = write_corpus(tmp_path / "audio", [("x.wav", 24000, 1.0, 1), ("y.flac", 16000, 1.0, 2)])
    return ManifestSource(write_manifest(tmp_path / "m.jsonl", files), crop_seconds=1.0)


def _student_and_objective(source, clusters=32):
    torch.manual_seed(0)
    teacher = EncodecMAE(preset("tiny"))
    wav = torch.stack([source[(0, i)][0] for i in range(len(source))])
    features, _ = teacher.last_layer_features(wav)
    centroids = features.reshape(-1, features.shape[-1])[torch.randperm(wav.shape[0] * 75)[:clusters]]
    student = EncodecMAE(preset("tiny"))
    student.new_head(1, clusters)
    return student, KMeansTargets(teacher, centroids.detach())


def test_loss_falls_on_a_fixed_batch(tmp_path, fixed_batch_source):
    student, objective = _student_and_objective(fixed_batch_source)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=30, batch_size=2, lr=3e-3,
                      warmup_steps=0, workers=0, log_every=1, checkpoint_every=1000, crop_seconds=1.0)
    assert train(student, objective, fixed_batch_source, cfg, provenance={}) == "done"
    losses = [m["loss"] for m in metrics(tmp_path / "run")]
    assert len(losses) == 30 and losses[0] > math.log(32) * 0.8
    assert np.mean(losses[-5:]) < 0.4 * losses[0], losses
    assert metrics(tmp_path / "run")[-1]["masked_accuracy"] > 0.5
    assert (tmp_path / "run" / "step-000000030.pt").is_file()


class _NaNAfter:
    """Wraps an objective; its loss turns NaN from the given step on."""

    def __init__(self, inner, after):
        self.inner, self.after, self.calls, self.name = inner, after, 0, "nan"

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loss(self, out, targets):
        metrics = self.inner.loss(out, targets)
        self.calls += 1
        if self.calls > self.after:
            metrics["loss"] = metrics["loss"] * float("nan")
        return metrics


def test_non_finite_loss_aborts_with_a_clear_message(tmp_path, fixed_batch_source):
    student, objective = _student_and_objective(fixed_batch_source)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=5, batch_size=2, workers=0,
                      checkpoint_every=2, crop_seconds=1.0)
    with pytest.raises(NonFiniteLoss, match="loss is nan at step 3"):
        train(student, _NaNAfter(objective, 3), fixed_batch_source, cfg, provenance={})
    # The checkpoint written before the failure is untouched.
    assert sorted(p.name for p in (tmp_path / "run").glob("step-*.pt")) == ["step-000000002.pt"]


def test_lr_warms_up_then_follows_the_schedule():
    cfg = TrainConfig(out_dir="", steps=100, lr=1e-4, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-5) and lr_at(9, cfg) == pytest.approx(1e-4)
    assert lr_at(50, cfg) == lr_at(99, cfg) == 1e-4  # the reference: constant
    cosine = TrainConfig(out_dir="", steps=100, lr=1e-4, warmup_steps=10, schedule="cosine")
    assert lr_at(10, cosine) == pytest.approx(1e-4)
    assert lr_at(100, cosine) == pytest.approx(1e-5) and lr_at(55, cosine) == pytest.approx(5.5e-5)


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    path = tmp_path / "rng.pt"
    torch.save({"rng": rng_state()}, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(path, weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_assign_picks_the_nearest_centroid():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    features = torch.tensor([[[9.0, 1.0], [1.0, 1.0], [-1.0, 8.0]]])
    assert assign(features, centroids).tolist() == [[1, 0, 2]]


def test_tar_shards_train_through_the_same_loop(tmp_path, fixed_batch_source):
    from encodecmae_hear.train.data import ShardSource
    from encodecmae_hear.train.manifest import read_manifest, write_shards

    write_shards(read_manifest(tmp_path / "m.jsonl"), tmp_path / "shards", per_shard=1)
    source = ShardSource(tmp_path / "shards", crop_seconds=1.0)
    student, objective = _student_and_objective(fixed_batch_source)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=2, batch_size=2, workers=2,
                      log_every=1, checkpoint_every=2, crop_seconds=1.0)
    assert train(student, objective, source, cfg, provenance={}) == "done"
    assert [m["skipped_files"] for m in metrics(tmp_path / "run")] == [0, 0]


def test_encodec_frontend_targets_reuse_the_frontend_latents():
    from encodecmae_hear.model.encodec import EncodecTokenizer, build_encodec
    from encodecmae_hear.train.objectives import EncodecTargets
    from tests.conftest import tone_mix

    encodec = build_encodec()
    tokenizer = EncodecTokenizer(encodec)
    torch.manual_seed(0)
    for layer in tokenizer.quantizer.vq.layers[:8]:
        layer._codebook.embed.normal_(0, 0.1)
        layer._codebook.inited.fill_(1)
    model = EncodecMAE(preset("tiny", "encodec"), encodec_model=encodec)
    objective = EncodecTargets(tokenizer, model.config, "test", share_frontend=True)
    wav = tone_mix(1.0, 24000, n=2)
    out = model(wav, torch.tensor([24000, 20000]))
    codes = objective.targets(wav, None, out)
    assert codes.shape == (2, 75, 8) and codes.unique().numel() > 8
    assert torch.equal(codes, tokenizer(wav))


def test_resumed_metrics_drop_redone_steps_and_cut_lines(tmp_path):
    from encodecmae_hear.train.loop import MetricsLog

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')
    log = MetricsLog(tmp_path, resume_step=2, enabled=True)
    log.write({"step": 3, "loss": 1.0})
    log.close()
    assert metrics(tmp_path) == [{"step": 1}, {"step": 2}, {"step": 3, "loss": 1.0}]


def test_frontend_features_are_the_models_own_mel_frames(fixed_batch_source):
    from encodecmae_hear.train.objectives import FrontendFeatures
    config = preset("tiny", "mel256")
    wav = torch.stack([fixed_batch_source[(0, i)][0] for i in range(2)])
    lengths = torch.tensor([24000, 12000])
    frames, padding = FrontendFeatures(config).last_layer_features(wav, lengths)
    model = EncodecMAE(config)
    features = model.frontend(wav)
    _, model_padding = model.input_tokens(features, lengths)
    assert frames.shape == (2, 74, 256) and torch.equal(frames, features)
    assert torch.equal(padding, model_padding) and padding[1].sum() > 30 and not padding[0].any()
