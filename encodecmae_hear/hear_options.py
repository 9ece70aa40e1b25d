"""The options of the HEAR module, as `load_model` keywords or heareval's `--model-options`
JSON, checked in one place: each on its own when `HearOptions` is made (before any file is
read), then against the checkpoint's model and statistics by `resolve`."""
from __future__ import annotations

from dataclasses import dataclass

from encodecmae_hear.audio import HEAR_SAMPLE_RATES
from encodecmae_hear.model import whitening

LAYER_CHOICES = ("last", "mean", "concat", "input+concat")
DTYPES = ("fp32", "bf16", "int8")
STATS_HINT = "`python -m encodecmae_hear embedding-stats CHECKPOINT --data CORPUS`"


def parse_layer(layer, num_layers: int):
    """An index (also as text, negative from the end) or a choice -> a layer index in
    [0, num_layers) or one of "mean", "concat", "input+concat"."""
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        layer = int(layer)
    if layer == "last":
        return num_layers - 1
    if isinstance(layer, int) and not isinstance(layer, bool):
        if not -num_layers <= layer < num_layers:
            raise ValueError(f"layer {layer} out of range for {num_layers} encoder layers")
        return layer % num_layers
    if layer in LAYER_CHOICES:
        return layer
    raise ValueError(f"layer must be an index, or one of {LAYER_CHOICES}; got {layer!r}")


@dataclass(frozen=True)
class Resolved:
    """The options as they apply to one checkpoint."""
    layer: int | str
    embedding_stats: dict | None   # when the embeddings are standardised
    whitening: dict | None         # when the scene embeddings are whitened


@dataclass(frozen=True)
class HearOptions:
    sample_rate: int = 48000
    layer: int | str | None = None     # None: the checkpoint's recommended layer, else "last"
    chunk_batch_size: int = 16
    standardise: bool | None = None    # None: when the checkpoint holds embedding statistics
    dtype: str = "fp32"
    whiten_scene: bool | str = False
    whiten_power: float = 1.0

    def __post_init__(self):
        if self.sample_rate not in HEAR_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of the HEAR rates {HEAR_SAMPLE_RATES}, "
                             f"got {self.sample_rate}")
        if isinstance(self.chunk_batch_size, bool) or not isinstance(self.chunk_batch_size, int) \
                or self.chunk_batch_size < 1:
            raise ValueError(f"chunk_batch_size must be an integer >= 1, got {self.chunk_batch_size!r}")
        if self.standardise not in (None, True, False):
            raise ValueError(f"standardise must be true or false, got {self.standardise!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not (self.whiten_scene is True or self.whiten_scene is False or self.whiten_scene == "concat"):
            raise ValueError(f"whiten_scene must be true, false or \"concat\", got {self.whiten_scene!r}")
        if isinstance(self.whiten_power, bool) or not isinstance(self.whiten_power, (int, float)) \
                or not 0 <= self.whiten_power <= 1:
            raise ValueError(f"whiten_power must be in [0, 1], got {self.whiten_power!r}")
        if self.whiten_power != 1.0 and not self.whiten_scene:
            raise ValueError(f"whiten_power {self.whiten_power!r} acts only with whiten_scene true or \"concat\"")
        if self.layer is not None:
            parse_layer(self.layer, 10**6)  # the syntax now; the range against the model in resolve

    def resolve(self, num_layers: int, stats: dict | None, recommended_layer=None,
                name: str = "the checkpoint") -> Resolved:
        """The layer, statistics and whitening these options take from a checkpoint whose
        model has `num_layers` and whose embedding statistics are `stats`."""
        default = recommended_layer if recommended_layer is not None else "last"
        layer = parse_layer(self.layer if self.layer is not None else default, num_layers)
        standardise = stats is not None if self.standardise is None else self.standardise
        if standardise and stats is None:
            raise ValueError(f"{name} holds no embedding statistics to standardise with; add them "
                             f"with {STATS_HINT}")
        chosen = whitening.for_layer(stats, layer) if self.whiten_scene else None
        if self.whiten_scene and (chosen is None or not standardise):
            raise ValueError(f"{name} holds no scene whitening for standardised layer {layer!r} "
                             f"embeddings; add it with {STATS_HINT[:-1]} --scene-dims 512` (layer: the "
                             f"checkpoint's HEAR layer)")
        return Resolved(layer, stats if standardise else None, chosen)
