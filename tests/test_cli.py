"""The command line: every command ends a user error the same way (one line on stderr,
exit status 2, no traceback), and the front-door commands take checkpoint names."""
import shutil
from pathlib import Path

import pytest

from encodecmae_hear.cli import COMMANDS, load_command, main

OFFICIAL_FIXTURE = Path(__file__).parent / "fixtures" / "official" / "mel256.pt"


def test_every_command_loads_and_explains_itself(capsys):
    for name in COMMANDS:
        command = load_command(name)
        assert callable(command.add_arguments) and callable(command.run), name
    with pytest.raises(SystemExit) as exit_info:
        main(["hear-embed", "--help"])
    assert exit_info.value.code == 0 and "--tasks-dir" in capsys.readouterr().out


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint at all")
    return path


@pytest.mark.parametrize("argv, says", [
    (["info", "{tmp}/absent.pt"], "checkpoint not found"),
    (["info", "{garbage}"], "garbage.pt: not a PyTorch checkpoint file"),
    (["convert", "no-such-model-name", "{tmp}/out.pt"], "no checkpoint file or name"),
    (["bundle", "{tmp}", "-o", "{tmp}/out.pt"], "no readable step checkpoint"),
    (["embedding-stats", "{garbage}", "--data", "{tmp}/corpus.jsonl"], "garbage.pt: not a PyTorch checkpoint file"),
    (["embedding-stats", "{garbage}", "--data", "x.jsonl", "--crops", "0"], "--crops must be >= 1"),
    (["hear-table", "--runs", "{tmp}/absent"], "results folder not found"),
])
def test_user_errors_end_in_one_line_and_status_2(argv, says, tmp_path, garbage, capsys):
    argv = [a.format(tmp=tmp_path, garbage=garbage) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" not in err and says in err
    assert err.count("\n") == 1 and err.startswith(f"{argv[0]}: error: ")


def test_demo_and_info_take_an_official_checkpoint_by_name(tmp_path, monkeypatch, capsys):
    shutil.copy(OFFICIAL_FIXTURE, tmp_path / "mel256-tiny.pt")
    monkeypatch.setenv("ENCODECMAE_CHECKPOINT_DIR", str(tmp_path))
    assert main(["demo", "--model", "mel256-tiny", "--skip-validator"]) == 0
    out = capsys.readouterr().out
    assert f"model: {tmp_path / 'mel256-tiny.pt'}" in out and "mel256 frontend, dim 40" in out
    assert "timestamp (1, 750, 40)" in out  # 10 s at 75 frames/s, D 40
    assert main(["info", "mel256-tiny"]) == 0
    assert "official EnCodecMAE checkpoint" in capsys.readouterr().out
