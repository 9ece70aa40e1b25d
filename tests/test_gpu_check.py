"""gpu_check: the prepared GPU check, run here at its CPU smoke size; a failing
stage keeps the others' figures; its training recipe is recipes.mk's."""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

from gpu_check import check as gpu_check
from gpu_check import runs as gpu_runs
from encodecmae_hear import mobile_hear
from encodecmae_hear.checkpoint import read_checkpoint
from encodecmae_hear.hear import get_scene_embeddings, load_model
from encodecmae_hear.files import sha256_of
from encodecmae_hear.paths import BUNDLED_CHECKPOINT
from tests.train_helpers import ROOT, metrics


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "OUT": str(out)}
    # --budget: generous, so that a busy CI machine does not cut the run short
    done = subprocess.run([sys.executable, "-m", "gpu_check", "--cpu-smoke", "--budget", "400"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_cpu_smoke_writes_every_stage_into_out(smoke):
    out, results = smoke
    assert results["mode"] == "cpu-smoke" and results["finished"]
    assert results["machine"]["device"] == "CPU" and results["machine"]["torch"] == torch.__version__
    assert {name: stage["status"] for name, stage in results["stages"].items()} == {
        "embed": "ok", "embed_files": "ok", "train_speed": "ok", "train_run": "ok", "distill_run": "ok"}
    assert sum(stage["seconds"] for stage in results["stages"].values()) < results["budget_s"]

    embed = results["stages"]["embed"]["results"]
    assert [(r["preset"], r["dtype"]) for r in embed] == [("tiny", "fp32"), ("tiny", "bf16")]
    for r in embed:
        assert r["frames"] == r["audio_s"] * 75 and r["out_dtype"] == "float32"  # 75 frames/s
        assert r["rtf"] == pytest.approx(r["audio_s"] / r["seconds"], rel=0.01)
    # bf16 really ran (load_model's dtype option): a cosine of 1.0 would be fp32 again
    assert 0.99 < embed[1]["cosine_to_fp32_min"] <= embed[1]["cosine_to_fp32_mean"] < 1.0 - 1e-6

    on_disk = results["stages"]["embed_files"]["results"]
    assert [(r["preset"], r["files"], r["count"]) for r in on_disk] == [("tiny", "1s", 3), ("tiny", "long", 2)]
    for r in on_disk:
        assert "error" not in r and r["outputs"] == r["count"] and r["dtype"] == "bf16"
        assert r["frames_first"] == r["clip_s"] * 75 and r["audio_s"] == r["clip_s"] * r["count"]
        assert r["rtf_end_to_end"] == pytest.approx(r["audio_s"] / r["seconds"], rel=0.02, abs=0.01)
        assert r["rtf"] > 0 and 0 < r["mfu"] < 1 and r["gflops_per_audio_s"] > 0

    (speed,) = results["stages"]["train_speed"]["results"]
    assert speed["timed_steps"] >= 1 and speed["batch"] == 4
    assert speed["samples_per_s"] == pytest.approx(speed["steps_per_s"] * 4, rel=0.01)

    run = results["stages"]["train_run"]
    assert run["generated_audio"] and not run["stopped_by_budget"] and run["returncode"] == 0
    assert run["results"]["steps"] == run["target_steps"] == 3
    assert [r["step"] for r in metrics(out / "train_run")] == [1, 2, 3]
    assert run["results"]["loss_last"] == pytest.approx(metrics(out / "train_run")[-1]["loss"], abs=1e-4)

    (student,) = results["stages"]["distill_run"]["results"]
    assert student["preset"] == "mobile-tiny" and student["returncode"] == 0
    assert not student["stopped_by_budget"]
    assert student["figures"]["steps"] == 3 and 0.0 < student["figures"]["cosine_last"] <= 1.0
    assert [r["step"] for r in metrics(out / "distill_run" / "mobile-tiny")] == [1, 2, 3]

    summary = (out / "summary.md").read_text()
    for heading in ("## 1. HEAR embedding speed", "## 2. Embedding files to disk",
                    "## 3. Pretraining throughput", "## 4. Training run", "## 5. Student distillation runs"):
        assert heading in summary
    assert "| tiny | bf16 | 3 x 1.0 s | 3 |" in summary
    assert "| tiny | mel256 | bf16 | 2 |" in summary and "3 of 3 steps on generated audio" in summary
    assert "| mobile-tiny | 3 | False |" in summary


def test_the_training_run_comes_back_as_a_small_loadable_release(smoke):
    out, _ = smoke
    payload = read_checkpoint(out / "train_run" / "model.pt")
    assert payload["training"] == {} and payload["provenance"]["steps"] == 3
    assert payload["provenance"]["hardware"] == "CPU"
    assert payload["provenance"]["targets"] == "kmeans-mel-frames"
    assert all(t.dtype == torch.float16 for t in payload["model"].values() if t.is_floating_point())
    model = load_model(str(out / "train_run" / "model.pt"))
    assert get_scene_embeddings(torch.zeros(1, 48000), model).shape == (1, 64)
    assert not list(out.rglob("step-*.pt"))  # step checkpoints stay in the scratch folder


def test_the_student_runs_come_back_as_releases_that_name_their_teacher(smoke):
    out, _ = smoke
    path = out / "distill_run" / "mobile-tiny" / "model.pt"
    payload = read_checkpoint(path)
    assert payload["training"] == {} and payload["provenance"]["steps"] == 3
    assert payload["provenance"]["distill"]["teacher_sha256"] == sha256_of(BUNDLED_CHECKPOINT)
    assert all(t.dtype == torch.float16 for t in payload["model"].values() if t.is_floating_point())
    model = mobile_hear.load_model(str(path))
    embeddings, timestamps = mobile_hear.get_timestamp_embeddings(torch.zeros(1, 16000), model)
    assert embeddings.shape[:2] == timestamps.shape == (1, 25)  # 25 frames/s


def test_a_failing_stage_keeps_the_figures_of_the_others(tmp_path, monkeypatch):
    seen = {}

    def child_stage(name, out, smoke, allotted):
        if name == "train_speed":  # what the first stage measured is on disk already
            seen["embed"] = json.loads((out / "results.json").read_text())["stages"]["embed"]
            raise RuntimeError("CUDA error: out of memory")
        return {"device": "Test GPU", "results": [{"preset": "small", "frontend": "mel256",
                                                   "dtype": "fp32", "audio_s": 60, "rtf": 900.0}]}

    def train_run(out, smoke, allotted, data, work, hardware):
        seen["hardware"] = hardware
        return {"status": "failed", "error": "no such file or folder", "results": {}}

    def distill_run(out, smoke, allotted, data, work, hardware):
        raise RuntimeError("teacher checkpoint missing")

    monkeypatch.setattr(gpu_check, "child_stage", child_stage)
    monkeypatch.setattr(gpu_runs, "train_run", train_run)
    monkeypatch.setattr(gpu_runs, "distill_run", distill_run)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path), "--cpu-smoke"])
    assert gpu_check.main() == 1
    results = json.loads((tmp_path / "results.json").read_text())
    stages = results["stages"]
    assert seen["embed"]["status"] == "ok" and seen["embed"]["results"][0]["rtf"] == 900.0
    assert stages["embed"]["results"][0]["rtf"] == 900.0
    assert stages["train_speed"]["status"] == "failed" and "out of memory" in stages["train_speed"]["error"]
    assert stages["train_run"]["status"] == "failed"
    assert stages["distill_run"]["status"] == "failed" and "teacher" in stages["distill_run"]["error"]
    assert results["machine"]["device"] == seen["hardware"] == "Test GPU"
    assert "out of memory" in (tmp_path / "summary.md").read_text()


def test_the_training_run_uses_the_recipe_of_the_bundled_default():
    """RECIPE (gpu_check/runs.py) against recipes.mk's DEFAULT_PRETRAIN; --workers is
    left to the default there, which fits the machine."""
    makefile = (ROOT / "recipes.mk").read_text().replace("\\\n", " ")
    line = next(row for row in makefile.splitlines() if row.startswith("DEFAULT_PRETRAIN ="))
    words = shlex.split(line.split("=", 1)[1])
    variables = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z]+=.*", w))
    made = ["--preset", variables["PRESET"], "--frontend", variables["FRONTEND"],
            "--batch-size", variables["BATCH"],
            *(w for w in shlex.split(variables["ARGS"]) if not w.startswith("$("))]  # TEACHERS=, SEED_ARGS=
    i = made.index("--workers")
    del made[i:i + 2]
    recipe = list(gpu_runs.RECIPE)
    assert sorted(zip(recipe[::2], recipe[1::2])) == sorted(zip(made[::2], made[1::2]))


def test_stages_runs_only_those_named_sharing_the_budget(tmp_path, monkeypatch):
    ran = {}

    def child_stage(name, out, smoke, allotted):
        ran[name] = allotted
        return {"device": "Test GPU", "results": []}

    def training_run(name):
        def run(out, smoke, allotted, data, work, hardware):
            ran[name] = allotted
            return {"results": {}}
        return run

    monkeypatch.setattr(gpu_check, "child_stage", child_stage)
    monkeypatch.setattr(gpu_runs, "train_run", training_run("train_run"))
    monkeypatch.setattr(gpu_runs, "distill_run", training_run("distill_run"))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path), "--cpu-smoke",
                                      "--stages", "distill_run,train_run", "--budget", "100"])
    assert gpu_check.main() == 0
    assert list(ran) == ["train_run", "distill_run"]  # in the check's own order
    assert ran["train_run"] == pytest.approx(50, abs=1)  # equal shares in the smoke sizes
    stages = json.loads((tmp_path / "results.json").read_text())["stages"]
    assert stages["embed"]["status"] == stages["train_speed"]["status"] == "not run"

    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path), "--stages", "embed,warp"])
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main()
    assert exit_info.value.code == 2
