"""The small gin reader used for official checkpoints' configs."""
from __future__ import annotations

import pytest

from encodecmae_hear.official.gin import GinConfig, GinError, Macro, Ref, parse_value

CONFIG_STR = """\
# Macros:
# ==============================================================================
MODEL_DIM = 1024
NUM_ENCODER_LAYERS = 20
QUANTIZER_WEIGHTS = \\
    [0.22407463,
     0.1759858]

# Parameters for encoder/transformers.TransformerEncoder:
# ==============================================================================
encoder/transformers.TransformerEncoder.attention_layer = \\
    @encoder/encodecmae.models.transformers.MultiHeadAttention
encoder/transformers.TransformerEncoder.model_dim = %MODEL_DIM
encoder/transformers.TransformerEncoder.num_layers = %NUM_ENCODER_LAYERS
TransformerEncoder.ff_dim = 2048
encoder/TransformerEncoder.ff_dim = 4096
SequentialProcessor.processors = \\
    [@encodecmae.tasks.features.ReadAudioProcessor,
     @encodecmae.tasks.features.MelspectrogramProcessor]
pl.Trainer.logger = @pl.loggers.CSVLogger()
MelspectrogramProcessor.norm_stats = [-6.12, 4.82]
MelspectrogramProcessor.window_type = 'hanning'
"""

BLOCKS = """\
MODEL_DIM=768
encodecmae.models.EncodecMAE:
    wav_encoder = @encodecmae.models.encoders.WavEncoder
    quantizer_weights=[0.2,
                       0.8]
decoder/encodecmae.models.transformers.MultiHeadAttention:
    num_heads=%MODEL_DIM
pl.callbacks.ModelCheckpoint.save_top_k=-1 #Keep all the checkpoints
"""


def test_config_str_output():
    cfg = GinConfig.parse(CONFIG_STR)
    assert cfg.get("TransformerEncoder", "model_dim", "encoder") == 1024
    assert cfg.get("TransformerEncoder", "num_layers", "encoder") == 20
    assert cfg.get("TransformerEncoder", "attention_layer", "encoder") == \
        Ref("encoder/encodecmae.models.transformers.MultiHeadAttention")
    assert cfg.get("TransformerEncoder", "ff_dim", "encoder") == 4096  # scoped wins
    assert cfg.get("TransformerEncoder", "ff_dim", "decoder") == 2048  # unscoped applies
    assert [r.name for r in cfg.get("SequentialProcessor", "processors")] == \
        ["ReadAudioProcessor", "MelspectrogramProcessor"]
    assert cfg.get("Trainer", "logger") == Ref("pl.loggers.CSVLogger", called=True)
    assert cfg.get("MelspectrogramProcessor", "norm_stats") == [-6.12, 4.82]
    assert cfg.get("MelspectrogramProcessor", "window_type") == "hanning"
    assert cfg.resolve(parse_value(cfg.macros["QUANTIZER_WEIGHTS"])) == [0.22407463, 0.1759858]
    assert cfg.get("TransformerEncoder", "num_heads", "encoder", default=None) is None


def test_blocks_and_comments():
    cfg = GinConfig.parse(BLOCKS)
    assert cfg.get("EncodecMAE", "wav_encoder").name == "WavEncoder"
    assert cfg.get("EncodecMAE", "quantizer_weights") == [0.2, 0.8]
    assert cfg.get("MultiHeadAttention", "num_heads", "decoder") == 768
    assert cfg.get("ModelCheckpoint", "save_top_k") == -1


def test_errors_name_the_problem():
    with pytest.raises(GinError, match="binds no encoder/TransformerEncoder.num_layers"):
        GinConfig.parse("MODEL_DIM = 3\n").get("TransformerEncoder", "num_layers", "encoder")
    with pytest.raises(GinError, match="macro %MISSING"):
        GinConfig.parse("A.b = %MISSING\n").get("A", "b")
    with pytest.raises(GinError, match="not a gin binding"):
        GinConfig.parse("just words\n")
    assert parse_value("%X") == Macro("X")
