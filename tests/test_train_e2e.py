"""End to end on generated audio: pretrain, stop with SIGTERM and resume bit-for-bit,
DDP on two CPU processes, then self-train with lineage and a corrupt file in the corpus."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from encodecmae_hear.checkpoint import load_checkpoint, read_checkpoint
from encodecmae_hear.cli import main
from tests.train_helpers import (
    ROOT,
    cli,
    metrics,
    one_thread,  # noqa: F401 (autouse fixture)
    run_cli,
    tiny_args,
    write_corpus,
    write_manifest,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return write_manifest(folder / "m.jsonl", write_corpus(folder / "audio"))


@pytest.fixture(scope="module")
def run_a(corpus, tmp_path_factory):
    """An uninterrupted 4-step tiny pretraining run (the reference for the others)."""
    out = tmp_path_factory.mktemp("runs") / "A"
    run_cli("pretrain", *tiny_args(corpus, out, 4))
    return out


def _same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_writes_a_loadable_model_with_its_targets_recorded(run_a):
    model, payload = load_checkpoint(run_a / "model.pt")
    assert payload["provenance"]["targets"] == "encodec-untrained-kmeans"
    assert payload["provenance"]["steps"] == 4 and payload["training"] == {}
    assert payload["tokenizer"] is not None
    records = metrics(run_a)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"masked_loss_s7", "unmasked_accuracy", "grad_norm", "lr", "samples_per_s"} <= set(records[0])
    assert model.encode(torch.randn(1, 24000) * 0.1)[-1].shape == (1, 74, 64)  # mel: 74 frames in 1 s


def test_sigterm_then_resume_reaches_the_same_weights(run_a, corpus, tmp_path):
    out = tmp_path / "B"
    proc = cli("pretrain", *tiny_args(corpus, out, 4))
    deadline = time.time() + 180
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, log[-3000:]
    stopped = sorted(out.glob("step-*.pt"))
    assert len(stopped) == 1 and stopped[0].name < "step-000000004.pt"  # stopped early
    assert not (out / "model.pt").exists()
    run_cli("pretrain", *tiny_args(corpus, out, 4), "--resume")
    a = read_checkpoint(run_a / "step-000000004.pt")
    b = read_checkpoint(out / "step-000000004.pt")
    assert _same_state(a["model"], b["model"])
    assert _same_state(a["tokenizer"], b["tokenizer"])
    assert a["training"]["optimizer"]["state"].keys() == b["training"]["optimizer"]["state"].keys()
    for key, state in a["training"]["optimizer"]["state"].items():
        assert _same_state(state, b["training"]["optimizer"]["state"][key])
    assert [r["loss"] for r in metrics(run_a)] == [r["loss"] for r in metrics(out)]


def test_sigint_then_resume_reaches_the_same_weights(run_a, corpus, tmp_path, monkeypatch):
    """Ctrl-C: a real SIGINT, raised in-process during step 2 (so it lands at a known
    step), makes pretrain save step 2 and return 130; --resume then reaches run A."""
    out = tmp_path / "C"
    clip, steps = torch.nn.utils.clip_grad_norm_, []

    def clip_and_interrupt_step_2(*args, **kwargs):
        steps.append(len(steps) + 1)
        if len(steps) == 2:
            signal.raise_signal(signal.SIGINT)
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_interrupt_step_2)
    try:
        status = main(["pretrain", *tiny_args(corpus, out, 4)])
    except KeyboardInterrupt:  # a failure of this test, not the end of the session
        pytest.fail("SIGINT was not handled: KeyboardInterrupt escaped pretrain")
    assert status == 130
    assert [p.name for p in out.glob("step-*.pt")] == ["step-000000002.pt"]
    assert not (out / "model.pt").exists() and "SIGINT: saving step 2" in (out / "train.log").read_text()
    monkeypatch.undo()
    assert main(["pretrain", *tiny_args(corpus, out, 4), "--resume"]) == 0
    a, b = read_checkpoint(run_a / "step-000000004.pt"), read_checkpoint(out / "step-000000004.pt")
    assert _same_state(a["model"], b["model"])
    for key, state in a["training"]["optimizer"]["state"].items():
        assert _same_state(state, b["training"]["optimizer"]["state"][key])
    assert [r["loss"] for r in metrics(run_a)] == [r["loss"] for r in metrics(out)]


def test_refuses_to_overwrite_a_run_without_resume(run_a, corpus, capsys):
    assert main(["pretrain", *tiny_args(corpus, run_a, 4)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_ddp_on_two_processes_equals_one_process_with_accumulation(run_a, corpus, tmp_path):
    # Global batch 4 as 2 processes x 2 crops, against run A: 1 process x 2 crops x 2 steps.
    out = tmp_path / "ddp"
    args = tiny_args(corpus, out, 4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "encodecmae_hear", "pretrain", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    ddp = read_checkpoint(out / "step-000000004.pt")
    assert ddp["provenance"]["world_size"] == 2
    single = read_checkpoint(run_a / "step-000000004.pt")
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=0, atol=1e-6)
    # The weights are blind to a global gradient scale (clipping at 1.0, then AdamW):
    # the gradient norm before clipping is not (DDP's sum instead of mean, or a lost
    # division by the accumulation count, doubles it). Losses: the global batch's.
    ddp_steps, single_steps = metrics(out), metrics(run_a)
    assert [r["step"] for r in ddp_steps] == [r["step"] for r in single_steps] == [1, 2, 3, 4]
    for key in ("grad_norm", "loss", "masked_loss", "unmasked_loss", "masked_accuracy"):
        assert [r[key] for r in ddp_steps] == pytest.approx([r[key] for r in single_steps], rel=1e-5), key


def test_selftrain_keeps_lineage_and_skips_a_corrupt_file(run_a, tmp_path):
    files = write_corpus(tmp_path / "audio", [(f"{i}.wav", 24000, 1.0, 1) for i in range(4)])
    manifest = write_manifest(tmp_path / "m.jsonl", files)
    files[2].write_bytes(b"\x00corrupt" * 64)  # breaks after the scan
    out = tmp_path / "st"
    assert main(["selftrain", "--from", str(run_a / "model.pt"), "--data", str(manifest),
                 "--out", str(out), "--steps", "2", "--batch-size", "4", "--crop-seconds", "1",
                 "--workers", "0", "--clusters", "16", "--kmeans-clips", "3", "--log-every", "1"]) == 0
    student, payload = load_checkpoint(out / "model.pt")
    teacher, parent = load_checkpoint(run_a / "model.pt")
    assert (student.config.num_streams, student.config.num_tokens) == (1, 16)
    lineage = payload["provenance"]["lineage"]["parent"]
    assert lineage["path"] == str((run_a / "model.pt").resolve())
    assert lineage["provenance"] == parent["provenance"]
    assert payload["provenance"]["kmeans"]["clusters"] == 16
    assert payload["provenance"]["targets"] == "kmeans-teacher-features"
    # The student started from the teacher: 2 small steps away from it.
    w_student, w_teacher = student.encoder.layers[0].attention.wq.weight, teacher.encoder.layers[0].attention.wq.weight
    assert (w_student - w_teacher).abs().max() < 1e-3
    assert [r["skipped_files"] for r in metrics(out)] == [1, 2]
    assert "skipped unreadable audio" in (out / "train.log").read_text()
    centroids = read_checkpoint(out / "step-000000002.pt")["training"]["objective"]["centroids"]
    assert centroids.shape == (16, 64)


def test_bundle_makes_a_small_release_of_a_finished_run(run_a, tmp_path):
    release = tmp_path / "release.pt"
    assert main(["bundle", str(run_a), "-o", str(release), "--half", "--hardware", "test CPU"]) == 0
    payload = read_checkpoint(release)
    assert payload["tokenizer"] is None and payload["training"] == {}
    assert all(t.dtype == torch.float16 for t in payload["model"].values() if t.is_floating_point())
    prov = payload["provenance"]
    assert prov["train_config"]["steps"] == prov["steps"] == 4 and prov["git_commit"]
    assert prov["hardware"] == "test CPU" and prov["bundle"]["from_step_checkpoint"] == "step-000000004.pt"
    records = metrics(run_a)
    assert prov["final"]["loss"] == records[-1]["loss"]
    assert prov["train_seconds"] == pytest.approx(sum(1 / r["steps_per_s"] for r in records), abs=0.06)
    released, _ = load_checkpoint(release)  # float32 compute
    trained, _ = load_checkpoint(run_a / "model.pt")
    wav = torch.randn(1, 24000) * 0.1
    a, b = released.encode(wav)[-1], trained.encode(wav)[-1]
    assert a.dtype == torch.float32 and (a - b).abs().max() < 2e-2 * b.abs().max()


def test_bundle_refuses_an_unfinished_run(run_a, tmp_path, capsys):
    payload = read_checkpoint(run_a / "step-000000004.pt")
    payload["provenance"] = {**payload["provenance"], "steps": 3}
    (tmp_path / "run").mkdir()
    torch.save(payload, tmp_path / "run" / "step-000000003.pt")
    release = tmp_path / "release.pt"
    assert main(["bundle", str(tmp_path / "run"), "-o", str(release)]) == 2
    assert "at step 3 of 4" in capsys.readouterr().err and not release.exists()
    assert main(["bundle", str(tmp_path / "run"), "-o", str(release), "--allow-unfinished"]) == 0
    assert read_checkpoint(release)["tokenizer"] is None
    assert main(["bundle", str(tmp_path / "empty"), "-o", str(release)]) == 2


def test_bundle_records_the_layer_load_model_uses_by_default(run_a, tmp_path, capsys):
    from encodecmae_hear.hear import load_model
    release = tmp_path / "release.pt"
    assert main(["bundle", str(run_a), "-o", str(release), "--hear-layer", "mean",
                 "--hear-layer-reason", "validation"]) == 0
    assert read_checkpoint(release)["provenance"]["hear_layer"] == {"layer": "mean", "reason": "validation"}
    assert load_model(str(release)).layer == "mean"
    assert load_model(str(release), layer=0).layer == 0  # an explicit option wins
    assert main(["bundle", str(run_a), "-o", str(release), "--hear-layer", "0"]) == 0
    assert load_model(str(release)).layer == 0
    assert main(["bundle", str(run_a), "-o", str(tmp_path / "bad.pt"), "--hear-layer", "7"]) == 2
    assert "out of range" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()
    assert load_model(str(run_a / "model.pt")).layer == 1  # no recommendation: the last of 2 layers


def test_mel_kmeans_targets_train_resume_and_refuse_the_other_objective(corpus, tmp_path):
    out = tmp_path / "mel"
    args = tiny_args(corpus, out, 2, "--targets", "mel-kmeans", "--clusters", "8", "--kmeans-clips", "6")
    run_cli("pretrain", *args)
    model, payload = load_checkpoint(out / "model.pt")
    assert (model.config.num_streams, model.config.num_tokens) == (1, 8)
    prov = payload["provenance"]
    assert prov["targets"] == "kmeans-mel-frames" and prov["objective"] == "kmeans"
    assert prov["kmeans"]["clusters"] == 8 and payload["tokenizer"] is None
    state = read_checkpoint(out / "step-000000002.pt")["training"]["objective"]
    assert state["centroids"].shape == (8, 256)
    assert [r["step"] for r in metrics(out)] == [1, 2]
    run_cli("pretrain", *tiny_args(corpus, out, 3, "--targets", "mel-kmeans", "--resume"))
    assert torch.equal(read_checkpoint(out / "step-000000003.pt")["training"]["objective"]["centroids"],
                       state["centroids"])  # resumed with the stored centroids, not refitted
    proc = cli("pretrain", *tiny_args(corpus, out, 4, "--resume"))  # --targets encodec
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode != 0 and "pass the same --targets" in log
    assert main(["pretrain", *tiny_args(corpus, tmp_path / "ec", 1, "--targets", "mel-kmeans",
                                        "--frontend", "encodec")]) == 2
    assert not (tmp_path / "ec").exists()
