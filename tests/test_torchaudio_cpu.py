"""tools/torchaudio_cpu.py on a stand-in package whose compiled extension needs CUDA."""
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "torchaudio_cpu.py"

# Like torchaudio: loading any lib/*.so found fails for want of libc10_cuda; no file, no load.
FAKE_INIT = '''
from pathlib import Path
if list((Path(__file__).parent / "lib").glob("_ext*.so")):
    raise OSError("libc10_cuda.so: cannot open shared object file: No such file or directory")
'''


@pytest.fixture
def tool():
    spec = importlib.util.spec_from_file_location("torchaudio_cpu", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_package(root: Path, name: str, init: str = FAKE_INIT) -> Path:
    lib = root / name / "lib"
    lib.mkdir(parents=True)
    (root / name / "__init__.py").write_text(init)
    (lib / "_ext.abi3.so").write_bytes(b"\0")
    return lib


def on_path(monkeypatch, root: Path) -> None:
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root))


def test_cuda_only_extension_is_set_aside_and_the_package_then_imports(tool, tmp_path, monkeypatch):
    lib = fake_package(tmp_path, "fake_audio_cuda")
    on_path(monkeypatch, tmp_path)
    assert "libc10_cuda" in tool.import_error("fake_audio_cuda")
    assert tool.set_aside_cuda_extensions("fake_audio_cuda", torch_has_cuda=False) == 0
    assert sorted(p.name for p in lib.iterdir()) == ["_ext.abi3.so.cuda-only"]
    assert tool.import_error("fake_audio_cuda") == ""


def test_nothing_is_touched_with_a_cuda_torch_or_another_error(tool, tmp_path, monkeypatch):
    on_path(monkeypatch, tmp_path)
    lib = fake_package(tmp_path, "fake_audio_gpu")
    assert tool.set_aside_cuda_extensions("fake_audio_gpu", torch_has_cuda=True) == 1
    other = fake_package(tmp_path, "fake_audio_broken", init="raise ImportError('no numpy')\n")
    assert tool.set_aside_cuda_extensions("fake_audio_broken", torch_has_cuda=False) == 1
    assert [p.name for p in lib.iterdir()] == ["_ext.abi3.so"]
    assert [p.name for p in other.iterdir()] == ["_ext.abi3.so"]


def test_an_importable_package_is_left_alone(tool, tmp_path, monkeypatch, capsys):
    on_path(monkeypatch, tmp_path)
    lib = fake_package(tmp_path, "fake_audio_fine", init="")
    assert tool.set_aside_cuda_extensions("fake_audio_fine", torch_has_cuda=False) == 0
    assert [p.name for p in lib.iterdir()] == ["_ext.abi3.so"]
    assert "nothing to do" in capsys.readouterr().out

