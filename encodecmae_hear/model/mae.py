"""EnCodecMAE: frontend -> masked ResiDual encoder -> decoder -> per-frame code logits.

Span masking (SPEC section 2) masks `prop` of each sequence's valid frames in spans of
`span` frames starting at uniform positions in [0, L - span], added until at least
int(prop * L) frames are masked; any excess is then unmasked from the start of the
sequence, so every item has exactly int(prop * L) masked frames. The loop runs over
spans (about prop * L / span rounds), vectorised across the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from encodecmae_hear.model.config import HOP_LENGTH, ModelConfig
from encodecmae_hear.model.frontend import build_frontend
from encodecmae_hear.model.transformer import SinusoidalPositions, TransformerStack


def span_mask(lengths: torch.Tensor, max_len: int, prop: float = 0.5, span: int = 15,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """lengths (B,) valid frames per item -> mask (B, max_len), True = masked.

    Padded positions (>= length) are never masked. `generator` makes it reproducible.
    """
    device = lengths.device
    batch = lengths.shape[0]
    lengths = lengths.to(torch.long).cpu()
    target = (lengths.float() * prop).long()  # (B,)
    mask = torch.zeros(batch, max_len, dtype=torch.bool)
    positions = torch.arange(max_len)
    max_start = (lengths - span).clamp(min=0)  # (B,)
    for _ in range(4 * max_len + 8):  # far more rounds than ever needed
        need = mask.sum(1) < target
        if not need.any():
            break
        starts = (torch.rand(batch, generator=generator) * (max_start + 1)).long()  # (B,)
        in_span = (positions[None] >= starts[:, None]) & (positions[None] < starts[:, None] + span)
        in_span &= positions[None] < lengths[:, None]
        mask |= in_span & need[:, None]
    excess = mask.sum(1) - target  # (B,) >= 0
    rank = mask.long().cumsum(1)  # 1-based rank of each masked frame
    mask &= ~(rank <= excess[:, None])
    return mask.to(device)


def padding_mask(lengths: torch.Tensor | None, num_frames: int, batch: int, device) -> torch.Tensor:
    """(B, T) True where a frame lies past the audio: frame i is valid if it starts
    before the end of the audio, i.e. i < ceil(length / 320)."""
    if lengths is None:
        return torch.zeros(batch, num_frames, dtype=torch.bool, device=device)
    positions = torch.arange(num_frames, device=device)[None]
    valid = torch.div(lengths.to(device) + HOP_LENGTH - 1, HOP_LENGTH, rounding_mode="floor")
    return positions >= valid[:, None]


class EncodecMAE(nn.Module):
    def __init__(self, config: ModelConfig, encodec_model=None):
        super().__init__()
        self.config = c = config
        self.frontend = build_frontend(c.frontend, encodec_model)
        self.input_proj = nn.Linear(c.feature_dim, c.dim)
        self.encoder_positions = SinusoidalPositions(c.dim)
        self.encoder = TransformerStack(c.dim, c.encoder_layers, c.encoder_heads, c.ff_dim, c.share_ffn)
        self.encoder_proj = nn.Linear(c.dim, c.dim)  # "post_net": feeds the decoder only
        self.decoder_positions = SinusoidalPositions(c.dim)
        self.decoder = TransformerStack(c.dim, c.decoder_layers, c.decoder_heads, c.ff_dim, c.share_ffn)
        self.head = nn.Linear(c.dim, c.num_streams * c.num_tokens)
        for module in (self.input_proj, self.encoder, self.encoder_proj, self.decoder, self.head):
            module.apply(_init_weights)

    @property
    def num_layers(self) -> int:
        return self.config.encoder_layers

    def new_head(self, num_streams: int, num_tokens: int, stream_weights=None) -> None:
        """Swap in a fresh head (self-training predicts one stream of k-means ids; k-means
        pretraining one stream per feature source), with the streams' loss weights (default 1)."""
        self.config = self.config.replace(num_streams=num_streams, num_tokens=num_tokens,
                                          stream_weights=stream_weights or (1.0,) * num_streams)
        self.head = nn.Linear(self.config.dim, num_streams * num_tokens)
        _init_weights(self.head)

    def padding_mask(self, lengths: torch.Tensor | None, num_frames: int, batch: int,
                     device) -> torch.Tensor:
        return padding_mask(lengths, num_frames, batch, device)

    def input_tokens(self, features: torch.Tensor, lengths: torch.Tensor | None = None):
        """Frontend features (B, T, F) -> tokens (B, T, D) with encoder positions, and the
        padding (B, T) of items holding `lengths` samples at 24 kHz."""
        batch, frames, _ = features.shape
        padding = self.padding_mask(lengths, frames, batch, features.device)
        tokens = self.encoder_positions(self.input_proj(features.to(self.input_proj.weight.dtype)))
        return tokens, padding

    # --- embeddings: the encoder on every frame, no masking

    def encode(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
               with_input: bool = False) -> list[torch.Tensor]:
        """Unmasked encoding for embeddings: a list with one (B, T, D) tensor per encoder
        layer (each layer's x0 stream; the last is the stack output x0 + LN(x1)), led by
        the encoder's input tokens (frontend projection plus positions) if `with_input`."""
        return self.encode_features(self.frontend(wav), lengths, with_input)

    def encode_features(self, features: torch.Tensor, lengths: torch.Tensor | None = None,
                        with_input: bool = False) -> list[torch.Tensor]:
        """`encode` from frontend features (B, T, F) already computed (by window, in
        fp32: hear.py runs the frontend apart from the Transformer)."""
        tokens, padding = self.input_tokens(features, lengths)
        out, per_layer = self.encoder(tokens, padding, return_layers=True)
        return ([tokens] if with_input else []) + per_layer[:-1] + [out]

    def last_layer_features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """The last layer's x0 before the final ResiDual combination (self-training
        k-means features, SPEC section 3) and the padding mask."""
        tokens, padding = self.input_tokens(self.frontend(wav), lengths)
        _, per_layer = self.encoder(tokens, padding, return_layers=True)
        return per_layer[-1], padding

    # --- pretraining: encode the visible frames, decode every frame (the loss: train/objectives.py)

    def forward_encoder(self, tokens: torch.Tensor, padding: torch.Tensor,
                        generator: torch.Generator | None = None) -> dict:
        """Masks spans of the valid frames and encodes the visible ones only: tokens (B, T, D)
        -> encoded (B, Tv, D) through encoder_proj, with masked (B, T), the frames' places
        `order` (B, Tv) and the padding of the visible sequence (B, Tv)."""
        frames = tokens.shape[1]
        masked = span_mask((~padding).sum(1), frames, self.config.mask_prop,
                           self.config.mask_span, generator)
        visible = ~masked & ~padding
        # Visible frames first, in time order; pad to the longest visible count.
        order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)  # (B, T)
        num_visible = visible.sum(1)
        order = order[:, : int(num_visible.max())]  # (B, Tv)
        visible_padding = torch.arange(order.shape[1], device=tokens.device)[None] >= num_visible[:, None]
        gathered = tokens.gather(1, order[..., None].expand(-1, -1, tokens.shape[-1]))
        encoded = self.encoder_proj(self.encoder(gathered, visible_padding))  # (B, Tv, D)
        return {"encoded": encoded.masked_fill(visible_padding[..., None], 0.0), "masked": masked,
                "order": order}

    def forward_decoder(self, encoded: torch.Tensor, order: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Encoded visible frames (B, Tv, D) scattered back to their places `order`, zeros
        elsewhere (no learned mask token), positions added, decoded -> logits (B, T, S, V)."""
        batch, frames = padding.shape
        dim = encoded.shape[-1]
        decoder_in = encoded.new_zeros(batch, frames, dim).scatter(1, order[..., None].expand(-1, -1, dim), encoded)
        decoded = self.decoder(self.decoder_positions(decoder_in), padding)  # (B, T, D)
        return self.head(decoded).view(batch, frames, self.config.num_streams, self.config.num_tokens)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict:
        """Masked pretraining pass. Returns logits (B, T, S, V), masked (B, T),
        padding (B, T) and the frontend features (B, T, F)."""
        features = self.frontend(wav)  # (B, T, F)
        tokens, padding = self.input_tokens(features, lengths)
        visible = self.forward_encoder(tokens, padding, generator)
        logits = self.forward_decoder(visible["encoded"], visible["order"], padding)
        return {"logits": logits, "masked": visible["masked"], "padding": padding, "features": features}


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
