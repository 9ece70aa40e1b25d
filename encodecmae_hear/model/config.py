"""Model configuration: one frozen dataclass, presets, and the paper's constants."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SAMPLE_RATE = 24_000          # EnCodec's rate; everything inside the model runs at it
HOP_LENGTH = 320              # samples per frame at 24 kHz -> 75 frames/s
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH
CHUNK_SECONDS = 4.0           # crops in training, windows at inference
CHUNK_SAMPLES = int(CHUNK_SECONDS * SAMPLE_RATE)

# Cross-entropy weight of each of EnCodec's 8 codebooks (SPEC section 3).
CODEBOOK_WEIGHTS = (0.22407463, 0.1759858, 0.14499009, 0.12150037,
                    0.10315603, 0.08831368, 0.07608274, 0.06589669)

FRONTENDS = ("encodec", "mel256")


def check_keys(config_class, d: dict) -> None:
    """A stored config names only fields of `config_class` (a dataclass)."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")


@dataclass(frozen=True)
class ModelConfig:
    frontend: str = "mel256"
    dim: int = 768
    encoder_layers: int = 10
    encoder_heads: int = 12
    decoder_layers: int = 2
    decoder_heads: int = 12
    ff_dim: int = 4096
    share_ffn: bool = True              # one FFN per stack, as the released checkpoints
    num_streams: int = 8                # target streams per frame: 8 codebooks, or 1 for k-means
    num_tokens: int = 1024              # classes per stream
    stream_weights: tuple[float, ...] = CODEBOOK_WEIGHTS
    mask_prop: float = 0.5
    mask_span: int = 15
    masked_loss_weight: float = 0.9

    def __post_init__(self):
        if self.frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got {self.frontend!r}")
        if self.dim % 2:
            raise ValueError(f"dim must be even for sinusoidal positions, got {self.dim}")
        if len(self.stream_weights) != self.num_streams:
            raise ValueError(f"stream_weights has {len(self.stream_weights)} entries, "
                             f"expected num_streams={self.num_streams}")
        for name in ("dim", "encoder_layers", "encoder_heads", "decoder_layers",
                     "decoder_heads", "ff_dim", "num_streams", "num_tokens", "mask_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.mask_prop < 1.0:
            raise ValueError(f"mask_prop must be in (0, 1), got {self.mask_prop}")
        object.__setattr__(self, "stream_weights", tuple(float(w) for w in self.stream_weights))

    @property
    def feature_dim(self) -> int:
        return 128 if self.frontend == "encodec" else 256

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stream_weights"] = list(self.stream_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        check_keys(cls, d)
        d = dict(d)
        if "stream_weights" in d:
            d["stream_weights"] = tuple(d["stream_weights"])
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# Paper sizes (SPEC section 2) plus two compact sizes of this project: `tiny` for tests
# and smoke runs, `mini` for models trained and bundled on a CPU budget.
_SIZES = {
    "tiny": dict(dim=64, encoder_layers=2, encoder_heads=4, decoder_layers=1, decoder_heads=4, ff_dim=128),
    "mini": dict(dim=256, encoder_layers=4, encoder_heads=4, decoder_layers=2, decoder_heads=4, ff_dim=1024),
    "small": dict(dim=768, encoder_layers=5, encoder_heads=12),
    "base": dict(dim=768, encoder_layers=10, encoder_heads=12),
    "large": dict(dim=1024, encoder_layers=20, encoder_heads=12, decoder_heads=12),
}
PRESETS = tuple(_SIZES)


def preset(name: str, frontend: str = "mel256", **overrides) -> ModelConfig:
    """`preset("base", "encodec")` -> the paper's Base model with the EnCodec frontend."""
    if name not in _SIZES:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    return ModelConfig(frontend=frontend, **{**_SIZES[name], **overrides})
