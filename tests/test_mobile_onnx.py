"""`export-onnx`: the ONNX graph gives PyTorch's frames (<= 1e-4) at any length and batch,
int8 quantisation is smaller and close, and the HEAR module serves the file."""
import subprocess

import onnx  # the [mobile] extra, which `make install` installs
import pytest
import torch

from encodecmae_hear.cli import main
from encodecmae_hear.mobile_hear import MobileHear, OnnxFrames, get_timestamp_embeddings, load_model
from tests.conftest import tone_mix
from tests.test_mobile_hear import mobile_checkpoint, tiny_mobile  # noqa: F401 (fixtures)
from tests.test_validator import validator_exe


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mobile_checkpoint):  # noqa: F811
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    assert main(["export-onnx", str(mobile_checkpoint), str(out), "--int8"]) == 0
    return out


@pytest.mark.parametrize("shape", [(1, 320), (3, 16000), (2, 16000 * 7 + 123)])
def test_onnx_frames_match_pytorch(exported, tiny_mobile, shape):  # noqa: F811
    wav = (torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5
    onnx = OnnxFrames(str(exported), threads=1)
    assert onnx.output == "distill" and onnx.config == tiny_mobile.config
    with torch.no_grad():
        expected = tiny_mobile.distilled(wav)
    got = onnx(wav)
    assert got.shape == expected.shape == (shape[0], -(-shape[1] // 640), 32)
    assert float((got - expected).abs().max()) <= 1e-4


def test_int8_is_smaller_and_close(exported, tiny_mobile, capsys):  # noqa: F811
    int8 = exported.with_suffix(".int8.onnx")
    assert int8.stat().st_size < exported.stat().st_size
    types = {t.name: t.data_type for t in onnx.load(str(int8)).graph.initializer}
    assert types["model.frontend.basis"] == onnx.TensorProto.FLOAT  # the frontend stays float
    quantised = [name for name, kind in types.items() if kind == onnx.TensorProto.INT8]
    assert {n for n in quantised if n.endswith(".weight_quantized")} == {
        f"model.encoder.blocks.{i}.0.weight_quantized" for i in range(6)}  # every encoder conv
    wav = tone_mix(3.0, 16000, seed=1)
    with torch.no_grad():
        expected = tiny_mobile.distilled(wav)
    got = OnnxFrames(str(int8))(wav)
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert cosine.min() > 0.95 and float((got - expected).abs().max()) > 1e-6  # quantised, not a copy


def test_hear_module_serves_the_onnx_file(exported, tiny_mobile):  # noqa: F811
    audio = tone_mix(9.1, 16000, seed=2, n=2)
    model = load_model(str(exported), chunk_seconds=2.0, onnx_threads=1)
    assert model.sample_rate == 16000 and model.timestamp_embedding_size == 32
    emb, ts = get_timestamp_embeddings(audio, model)
    reference, ts_ref = get_timestamp_embeddings(audio, MobileHear(tiny_mobile))
    assert torch.equal(ts, ts_ref) and float((emb - reference).abs().max()) <= 1e-4
    with pytest.raises(ValueError, match="computes output 'distill', not 'encoder'"):
        load_model(str(exported), output="encoder")


def test_export_refuses_what_it_cannot_do(tmp_path, mobile_checkpoint, tiny_checkpoint, capsys):  # noqa: F811
    assert main(["export-onnx", str(mobile_checkpoint), str(tmp_path / "x.pt")]) == 2
    assert main(["export-onnx", str(tiny_checkpoint), str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "must end in .onnx" in err and "architecture 'encodecmae', not 'mobile'" in err


def test_hear_validator_accepts_the_onnx_file(exported):
    result = subprocess.run([validator_exe(), "encodecmae_hear.mobile_hear", "--model", str(exported),
                             "--device", "cpu"], capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Looks good!" in output and "Max timestamp 3980.0" in output
