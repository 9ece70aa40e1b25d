"""Inference in lower precision: what the HEAR `dtype` options "bf16" and "int8" run.

* `int8_encoder(mae)`: a copy of the model whose encoder Transformer (attention
  projections and FFN of every layer) uses dynamic int8 Linear layers: weights stored in
  int8 with one scale per output channel, activations quantised per call from their
  range, int8 x int8 matrix products with int32 sums (fbgemm / oneDNN, VNNI where the
  CPU has it), outputs in float32; where the CPU has bf16 units, its attention as two
  explicit batched products and a softmax in bf16 (`transformer.attention_products`,
  faster there than the fused float32 kernel; in float32 they are not). Everything
  else (frontend, input projection, LayerNorms, decoder) is shared with `mae`, tensor for
  tensor: the copy costs the int8 weights only, and `mae` is left as it is. CPU only.
* `bf16_encodec(encoder)`: EnCodec's SEANet encoder with weight norm folded, channels-last
  (seanet.py) and in bfloat16 (convolutions and LSTM), for frames computed in bf16 and
  returned in float32.
* `cpu_has_bf16()`: whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or
  AMX); elsewhere bf16 is emulated and slower than float32.
"""
from __future__ import annotations

import copy
import itertools
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import per_channel_dynamic_qconfig

from encodecmae_hear.model.encodec import fold_weight_norm
from encodecmae_hear.model.seanet import channels_last_encoder
from encodecmae_hear.model.transformer import MultiHeadAttention


def cpu_has_bf16() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _int8_linear(linear: nn.Linear) -> nn.Module:
    source = copy.copy(linear)  # from_float reads .qconfig: set it on a copy, not on `linear`
    source.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        return DynamicLinear.from_float(source)


def int8_encoder(mae: nn.Module) -> nn.Module:
    """A copy of `mae` (EncodecMAE) whose encoder Linear layers are dynamic int8 (a shared
    FFN stays shared: one int8 module for every layer) and whose attention runs as
    explicit bf16 products where the CPU has bf16 (transformer.attention_products)."""
    out = copy.copy(mae)  # the same submodules, in a module dict of its own
    out._modules = dict(mae._modules)
    tensors = itertools.chain(mae.encoder.parameters(), mae.encoder.buffers())
    memo = {id(t): t for t in tensors}  # deepcopy shares these instead of copying them
    out.encoder = copy.deepcopy(mae.encoder, memo)
    swapped: dict[int, nn.Module] = {}
    for module in list(out.encoder.modules()):
        if isinstance(module, MultiHeadAttention):
            module.products_dtype = torch.bfloat16 if cpu_has_bf16() else None
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                if id(child) not in swapped:
                    swapped[id(child)] = _int8_linear(child)
                setattr(module, name, swapped[id(child)])
    return out


def bf16_encodec(encoder: nn.Module) -> nn.Module:
    """EnCodec's SEANet encoder (B, 1, N) -> (B, 128, T), folded, channels-last and in
    bfloat16; the caller's module is not changed."""
    return channels_last_encoder(fold_weight_norm(encoder)).to(torch.bfloat16)
