"""Published models by name, through huggingface_hub itself, against a stand-in hub on
127.0.0.1 (tests/hub_server.py) serving official-format files: first fetch, offline loads,
pins, refusals, the `fetch` / `models` commands, HEAR tools on a fetched file, and the
official EnCodec weights for pretraining."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

import encodecmae_hear
from encodecmae_hear.checkpoint import read_any
from encodecmae_hear.cli import main
from encodecmae_hear.errors import UserError
from encodecmae_hear.evaluate import runner
from encodecmae_hear.hub import store
from encodecmae_hear.hub.encodec_weights import EncodecWeightsError, cache_path, encodec_weights
from encodecmae_hear.hub.names import V2_REPO
from encodecmae_hear.model.encodec import OFFICIAL_FILE, build_encodec
from tests.hub_server import StandInHub
from tests.test_official import MANIFEST, _restore, official_content
from tests.test_validator import validator_exe

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "official"
NAME = "mel256-ec-base_st"
FILE = f"{NAME}.pt"
CLIP = torch.linspace(-0.3, 0.3, 48_000)[None] * torch.sin(torch.arange(48_000) / 7.0)


def file_bytes(name: str) -> bytes:
    buffer = io.BytesIO()
    torch.save(official_content(name), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def official_bytes():
    return {"mel256_st": (FIXTURES / "mel256_st.pt").read_bytes(), "mel256": file_bytes("mel256")}


@pytest.fixture
def hub(tmp_path, monkeypatch, official_bytes):
    """A running stand-in hub with NAME published, an empty cache, and the variables that
    point huggingface_hub at both."""
    server = StandInHub().start()
    server.publish(V2_REPO, {FILE: official_bytes["mel256_st"], "extra/mel256-ec-tiny.pt": official_bytes["mel256"]})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("ENCODECMAE_CHECKPOINT_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


def downloads(server: StandInHub) -> list:
    return [r for r in server.requests if "/resolve/" in r[1]]


def snapshot_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hub-cache").rglob("snapshots/*/*") if p.is_file()]


def test_a_published_name_loads_is_recorded_and_then_loads_with_the_hub_gone(hub, tmp_path, official_bytes):
    model = encodecmae_hear.load_model(NAME)
    record = model.provenance["published"]
    commit = hub.repos[V2_REPO]["main"]
    assert record["repo"] == V2_REPO and record["file"] == FILE and record["commit"] == commit
    assert record["sha256"] == hashlib.sha256(official_bytes["mel256_st"]).hexdigest()
    lock = json.loads(store.lock_path(V2_REPO).read_text())
    assert lock[FILE]["commit"] == commit and lock[FILE]["sha256"] == record["sha256"]
    first = encodecmae_hear.get_scene_embeddings(CLIP, model)

    hub.requests.clear()
    again = encodecmae_hear.load_model(NAME)  # pinned and cached: not one request
    assert hub.requests == []
    hub.stop()
    start = time.monotonic()
    offline = encodecmae_hear.load_model(NAME)
    assert time.monotonic() - start < 10
    assert torch.equal(encodecmae_hear.get_scene_embeddings(CLIP, again), first)
    assert torch.equal(encodecmae_hear.get_scene_embeddings(CLIP, offline), first)


def test_an_explicit_cached_revision_makes_no_request(hub):
    commit = hub.repos[V2_REPO]["main"]
    encodecmae_hear.load_model(NAME, revision=commit)
    hub.requests.clear()
    encodecmae_hear.load_model(NAME, revision=commit)
    assert hub.requests == []


def test_a_file_in_a_subfolder_is_named_by_its_path(hub):
    _, payload = read_any("extra/mel256-ec-tiny")
    assert payload["provenance"]["published"]["file"] == "extra/mel256-ec-tiny.pt"


@pytest.mark.parametrize("why", ["offline", "dead endpoint"])
def test_an_uncached_name_fails_at_once_saying_how_to_place_it(hub, monkeypatch, why):
    if why == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        hub.stop()
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as caught:
        read_any(NAME)
    assert time.monotonic() - start < 2
    message = str(caught.value)
    assert V2_REPO in message and FILE in message and "by hand" in message
    assert ("HF_HUB_OFFLINE=1" if why == "offline" else "cannot be reached") in message


def test_an_unknown_name_lists_what_the_hub_has(hub):
    with pytest.raises(store.HubError) as caught:
        read_any("mel256-ec-base-typo")
    message = str(caught.value)
    assert "mel256-ec-base-typo" in message and NAME in message and "extra/mel256-ec-tiny" in message


@pytest.mark.parametrize("how", ["truncate", "alter"])
def test_a_damaged_download_is_refused_and_not_kept(hub, tmp_path, how):
    hub.tamper(V2_REPO, FILE, how)
    with pytest.raises(store.HubError, match="failed|checksum"):
        read_any(NAME)
    assert snapshot_files(tmp_path) == []
    assert not store.lock_path(V2_REPO).exists()
    hub.tamper(V2_REPO, FILE, None)
    path, payload = read_any(NAME)  # the next try downloads it whole
    assert payload["provenance"]["published"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cached_file_altered_on_disk_is_refused(hub):
    path, _ = read_any(NAME)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    Path(os.path.realpath(path)).write_bytes(bytes(data))
    with pytest.raises(store.HubError, match="checksum"):
        read_any(NAME)


def test_a_pinned_file_changed_on_the_hub_is_refused_unless_asked_for(hub, tmp_path, official_bytes):
    path, first = read_any(NAME)
    commit = first["provenance"]["published"]["commit"]
    # main moves on: the pin keeps the first file, offline and without a request
    new_commit = hub.publish(V2_REPO, {FILE: official_bytes["mel256"]})
    hub.requests.clear()
    assert read_any(NAME)[1]["provenance"]["published"]["commit"] == commit
    assert hub.requests == []
    # the pinned commit rewritten on the hub, the cache emptied: refused, not loaded
    hub.rewrite(V2_REPO, commit, FILE, official_bytes["mel256"])
    for cached in snapshot_files(tmp_path):
        cached.unlink()
    with pytest.raises(store.HubError, match="pinned"):
        read_any(NAME)
    assert snapshot_files(tmp_path) == []
    # asking for the new revision takes it and pins it
    _, taken = read_any(NAME, revision="main")
    assert taken["provenance"]["published"]["commit"] == new_commit
    assert json.loads(store.lock_path(V2_REPO).read_text())[FILE]["commit"] == new_commit


def test_a_revision_is_for_published_names_only(hub, tiny_checkpoint):
    with pytest.raises(UserError, match="published model names only"):
        read_any(str(tiny_checkpoint), revision="main")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "encodecmae_hear", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=600)


def test_fetch_prints_the_file_that_heareval_and_the_validator_take(hub, tmp_path):
    fetched = run_cli("fetch", NAME)
    assert fetched.returncode == 0, fetched.stderr
    path = Path(fetched.stdout.strip())
    assert path.is_file() and str(tmp_path / "hub-cache") in str(path)
    assert hub.repos[V2_REPO]["main"] in fetched.stderr

    converted = tmp_path / "ours.pt"
    assert run_cli("fetch", NAME, "--convert", converted).returncode == 0
    by_path, ours = encodecmae_hear.load_model(str(path)), encodecmae_hear.load_model(str(converted))
    assert ours.provenance["published"]["commit"] == hub.repos[V2_REPO]["main"]
    assert torch.equal(encodecmae_hear.get_scene_embeddings(CLIP, by_path),
                       encodecmae_hear.get_scene_embeddings(CLIP, ours))

    hub.stop()  # the validator runs on the fetched file with no hub at all
    result = subprocess.run([validator_exe(), "encodecmae_hear", "--model", str(path), "--device", "cpu"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Looks good!" in result.stdout + result.stderr, result.stdout[-2000:]
    again = run_cli("fetch", NAME)
    assert again.returncode == 0 and Path(again.stdout.strip()) == path


def test_models_lists_bundled_fetched_and_published_names(hub):
    read_any(NAME)
    listed = run_cli("models")
    assert listed.returncode == 0, listed.stderr
    assert "default" in listed.stdout and "mobile-student" in listed.stdout
    assert "extra/mel256-ec-tiny" in listed.stdout  # only the hub's listing knows this one
    fetched = listed.stdout.split("fetched and pinned")[1].split("published")[0]
    assert NAME in fetched and hub.repos[V2_REPO]["main"][:12] in fetched
    offline = run_cli("models", env={"HF_HUB_OFFLINE": "1"})
    assert "extra/mel256-ec-tiny" not in offline.stdout and "v1/base" in offline.stdout


def test_embed_takes_a_published_name(hub, tmp_path):
    sf.write(tmp_path / "clip.wav", CLIP[0].numpy(), 48_000)
    assert main(["embed", str(tmp_path / "clip.wav"), "--out", str(tmp_path / "emb"), "--model", NAME]) == 0
    assert list((tmp_path / "emb").rglob("*.npy"))


def test_a_v1_name_fetches_the_model_with_its_gin_file(hub, tmp_path):
    content = torch.load(FIXTURES / "v1_ec" / "model.pt", map_location="cpu", weights_only=True)
    _restore(content["state_dict"], MANIFEST["v1"]["stripped"])
    buffer = io.BytesIO()
    torch.save(content, buffer)
    gin = (FIXTURES / "v1_ec" / "config.gin").read_bytes()
    hub.publish("lpepino/encodecmae-base", {"model.pt": buffer.getvalue(), "config.gin": gin})
    path, payload = read_any("v1/base")
    assert (path.parent / "config.gin").read_bytes() == gin
    assert payload["provenance"]["source_layout"] == "v1" and "assumed" not in json.dumps(payload["provenance"])
    with pytest.raises(UserError, match="v1/small"):
        read_any("v1/huge")


# --- the official EnCodec weights (pretraining targets) ---

def weights_named_by_their_hash(folder: Path, seed: int = 0) -> tuple[Path, bytes]:
    """An EnCodec state dict saved under torch hub's naming rule, NAME-<sha256 prefix>.th."""
    buffer = io.BytesIO()
    torch.save(build_encodec(seed=seed).state_dict(), buffer)
    data = buffer.getvalue()
    path = folder / f"encodec_test-{hashlib.sha256(data).hexdigest()[:8]}.th"
    return path, data


def test_cached_encodec_weights_are_used_and_checked_at_every_use(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ENCODECMAE_ENCODEC_WEIGHTS", raising=False)
    name_only, data = weights_named_by_their_hash(tmp_path)
    cached = cache_path(name_only.name)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    path, digest = encodec_weights(download=False, file_name=cached.name)
    assert path == cached and digest == hashlib.sha256(data).hexdigest()
    assert cached.with_name(cached.name + ".sha256").read_text().strip() == digest
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # altered after its first use
    with pytest.raises(EncodecWeightsError, match="not the official file"):
        encodec_weights(download=False, file_name=cached.name)
    official = cache_path(OFFICIAL_FILE)
    official.write_bytes(data)  # a file under the official name whose sha256 is not d7cc33bc...
    with pytest.raises(EncodecWeightsError, match="d7cc33bc"):
        encodec_weights(download=False)


def test_encodec_weights_download_into_the_torch_cache_with_the_hash_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ENCODECMAE_ENCODEC_WEIGHTS", raising=False)
    served = tmp_path / "mirror"
    served.mkdir()
    name_only, data = weights_named_by_their_hash(served)
    name_only.write_bytes(data)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ENCODECMAE_ENCODEC_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    try:
        path, digest = encodec_weights(download=True, file_name=name_only.name)
        assert path == cache_path(name_only.name) and path.read_bytes() == data
        wrong = served / "encodec_test-00000000.th"
        wrong.write_bytes(data)  # a download whose hash is not the name's prefix
        with pytest.raises(EncodecWeightsError, match="could not be downloaded"):
            encodec_weights(download=True, file_name=wrong.name)
        assert not cache_path(wrong.name).exists()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(EncodecWeightsError, match="downloads are off"):
            encodec_weights(download=True, file_name=wrong.name)
    finally:
        server.shutdown()
        server.server_close()


def test_pretrain_stops_in_one_line_when_the_paper_targets_cannot_be_had(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ENCODECMAE_ENCODEC_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv("ENCODECMAE_ENCODEC_WEIGHTS", raising=False)
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", CLIP[0].numpy(), 48_000)
    status = main(["pretrain", "--data", str(tmp_path / "audio"), "--out", str(tmp_path / "run"),
                   "--preset", "tiny", "--steps", "1", "--batch-size", "1", "--crop-seconds", "1",
                   "--workers", "0"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    for words in (OFFICIAL_FILE, "--encodec-weights", "ENCODECMAE_ENCODEC_WEIGHTS", "--targets mel-kmeans"):
        assert words in err


def test_a_hear_run_of_a_published_name_gives_heareval_a_file_and_records_where_from(hub, tmp_path):
    parser = argparse.ArgumentParser()
    runner.add_common(parser, seeds=True, predict=True)
    args = parser.parse_args(["--tasks-dir", str(tmp_path / "tasks"), "--runs", str(tmp_path / "runs"),
                              "--model", NAME])
    plan = runner.plan_from(args)
    assert Path(plan.model).is_file() and plan.label_dir.name == NAME
    runner.write_run_json(plan)
    run = json.loads((plan.label_dir / "run.json").read_text())
    assert run["model"] == plan.model and run["published"]["commit"] == hub.repos[V2_REPO]["main"]


def test_load_model_without_a_path_says_once_which_model_it_gives():
    code = "import encodecmae_hear as E; E.load_model(); E.load_model()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("bundled default model") == 1 and NAME in result.stderr
    quiet = subprocess.run([sys.executable, "-c", f"import encodecmae_hear as E; E.load_model({str(ROOT / 'checkpoints' / 'default.pt')!r})"],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert quiet.returncode == 0 and "bundled default model" not in quiet.stderr


def test_asking_for_a_branch_asks_the_hub_even_with_the_old_file_cached(hub, official_bytes):
    _, first = read_any(NAME)
    new_commit = hub.publish(V2_REPO, {FILE: official_bytes["mel256"]})
    assert read_any(NAME)[1]["provenance"]["published"]["commit"] == first["provenance"]["published"]["commit"]
    _, moved = read_any(NAME, revision="main")
    assert moved["provenance"]["published"]["commit"] == new_commit
    hub.stop()  # and offline, the branch's cached file is what there is
    assert read_any(NAME, revision="main")[1]["provenance"]["published"]["commit"] == new_commit
