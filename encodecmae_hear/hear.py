"""HEAR 2021 API over EnCodecMAE: load_model, get_timestamp_embeddings, get_scene_embeddings.

The model declares a HEAR sample rate (48000 by default, any HEAR rate by option) and
resamples to 24 kHz inside. Each sound is cut into 4 s windows (positions restart in
every window, as in training); windows from all sounds run in batches of bounded size;
the last window is zero-padded, its padded frames are masked as padded keys, and the
outputs are trimmed, so no audio is dropped and a sound's embedding does not depend on
the other sounds in the batch. Frames are at exactly 75/s; timestamps are frame
centres in milliseconds. A checkpoint with embedding statistics (embedding_stats.py)
gives standardised embeddings: each block, the encoder input and every layer, is
standardised channel by channel before the layer option picks or joins them. With the
option `whiten_scene`, a checkpoint that holds scene whitening (train/scene_whitening.py)
for the chosen layer option gives scene embeddings whitened on the corpus: the scene
mean projected on its principal axes, each scaled to unit variance (fewer dimensions
than the timestamp embeddings, which stay as they are).

Precision, the `dtype` option (outputs are float32 under every option):
* "fp32": everything in float32.
* "bf16": the Transformer under bf16 autocast; the EnCodec frontend in bf16 too (a
  bfloat16 copy of its encoder) on CUDA and on CPUs with native bf16 (AVX-512 BF16 or
  AMX), in fp32 elsewhere. The mel frontend stays fp32 (cheap, and its log needs the
  range). On a CPU without bf16 units this is slower than fp32.
* "int8" (CPU only): the encoder Transformer's Linear layers dynamic int8 (int8 weights
  with a scale per output channel, activations quantised per call; model/precision.py),
  the rest fp32, except, where the CPU has native bf16, the EnCodec frontend (in bf16 as
  under "bf16") and the attention products. The Transformer takes one window a call;
  EnCodec's LSTM takes a sound's windows in small groups (`groups_by_sound`). The
  fastest option on CPU; per-layer frame cosine to fp32 >= 0.999 on the bundled model
  and the official-format fixtures (tests/test_precision.py).
Windows go through in batches of `chunk_batch_size`; on CPU in smaller ones, and the
frontend's convolutions window by window (`windows_per_batch`, `frontend_features`).
Building a HearModel tunes glibc's allocator for the process (allocator.py).
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from encodecmae_hear.allocator import keep_freed_memory
from encodecmae_hear.audio import Chunker, check_audio, load_audio, num_frames
from encodecmae_hear.checkpoint import default_checkpoint, load_checkpoint
from encodecmae_hear.hear_options import DTYPES, LAYER_CHOICES, HearOptions, parse_layer  # noqa: F401 (API)
from encodecmae_hear.hub.names import PAPER_MODEL
from encodecmae_hear.model import whitening
from encodecmae_hear.model.config import FRAME_RATE, HOP_LENGTH
from encodecmae_hear.model.precision import bf16_encodec, cpu_has_bf16, int8_encoder
from encodecmae_hear.paths import BUNDLED_CHECKPOINT

# Windows per batch on CPU, per thread (see windows_per_batch).
CPU_WINDOWS_PER_THREAD = 1
# Under "int8", windows of one sound that share EnCodec's LSTM (see groups_by_sound).
INT8_SOUND_WINDOWS = 4


class HearModel(nn.Module):
    """EnCodecMAE wrapped with the attributes and options HEAR expects."""

    def __init__(self, mae: nn.Module, sample_rate: int = 48000, layer="last",
                 chunk_batch_size: int = 16, embedding_stats: dict | None = None,
                 dtype: str = "fp32", scene_whitening: dict | None = None, whiten_power: float = 1.0,
                 keep_plain_scene: bool = False):
        """`mae` with the options of hear_options.HearOptions (checked there); the
        embedding statistics and scene whitening to apply, as `HearOptions.resolve`
        chose them (load_model does all of this from a checkpoint)."""
        super().__init__()
        whiten_scene = ("concat" if keep_plain_scene else True) if scene_whitening is not None else False
        options = HearOptions(sample_rate=sample_rate, layer=layer, chunk_batch_size=chunk_batch_size,
                              dtype=dtype, whiten_scene=whiten_scene, whiten_power=whiten_power,
                              standardise=embedding_stats is not None)
        keep_freed_memory()  # allocator.py: no page faults from EnCodec's activations
        self.compute_dtype = dtype
        # int8: a copy with int8 encoder Linear layers, sharing every other tensor with `mae`
        self.mae = (int8_encoder(mae) if dtype == "int8" else mae).eval()
        self._bf16_frontend: tuple = ()  # (device, bf16 EnCodec encoder), made on first use
        self.chunker = Chunker(options.sample_rate)
        self.sample_rate = options.sample_rate
        self.layer = parse_layer(layer, mae.num_layers)
        self.chunk_batch_size = options.chunk_batch_size
        self.with_input = self.layer == "input+concat"
        self.standardise = embedding_stats is not None
        if self.standardise:  # rows: encoder input, then each layer
            self.register_buffer("stats_mean", embedding_stats["mean"].float().clone())
            self.register_buffer("stats_std", embedding_stats["std"].float().clone())
        blocks = {"concat": mae.num_layers, "input+concat": mae.num_layers + 1}.get(self.layer, 1)
        width = mae.config.dim * blocks
        self.scene_embedding_size = width
        self.timestamp_embedding_size = width
        self.whiten_scene = scene_whitening is not None
        if self.whiten_scene:
            if not self.standardise or scene_whitening["scene_layer"] != self.layer:
                raise ValueError(f"scene whitening was measured on standardised layer "
                                 f"{scene_whitening['scene_layer']!r} embeddings; this model gives "
                                 f"{'standardised' if self.standardise else 'raw'} layer {self.layer!r}")
            rows = whitening.projection(scene_whitening, whiten_power, width, self.layer)
            self.register_buffer("scene_mean", scene_whitening["scene_mean"].float().clone())
            self.register_buffer("scene_projection", rows.clone())
            self.keep_plain_scene = bool(keep_plain_scene)
            self.scene_embedding_size = rows.shape[0] + (width if keep_plain_scene else 0)
        self.provenance: dict = {}  # what the checkpoint says of itself (load_model fills it)
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.mae.parameters()).device

    def standardised(self, layers: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.standardise:
            return layers
        first = 0 if self.with_input else 1
        return [(x.float() - self.stats_mean[first + i]) / self.stats_std[first + i]
                for i, x in enumerate(layers)]

    def select_layer(self, layers: list[torch.Tensor]) -> torch.Tensor:
        if self.layer == "mean":
            return torch.stack(layers).mean(0)
        if self.layer in ("concat", "input+concat"):
            return torch.cat(layers, dim=-1)
        return layers[self.layer]

    def windows_per_batch(self, device: torch.device) -> int:
        """Windows embedded at once: `chunk_batch_size`, on CPU at most one per thread.
        Larger batches spill the CPU's caches: a Base mel256 model on 32 s, 2 cores,
        took 5.4 / 5.0 / 5.7 / 6.2 s in batches of 1 / 2 / 8 / 16 windows with 2 threads,
        and with 1 thread 1.1x the time in batches of 4 or 16 than of 1."""
        if device.type != "cpu":
            return self.chunk_batch_size
        if self.compute_dtype == "int8":  # see groups_by_sound
            return INT8_SOUND_WINDOWS if self.groups_by_sound(device) else 1
        return min(self.chunk_batch_size, CPU_WINDOWS_PER_THREAD * torch.get_num_threads())

    def groups_by_sound(self, device: torch.device) -> bool:
        """Whether a batch holds windows of one sound only, grouped from its first window,
        so that a sound's embedding depends on that sound alone, bit for bit: on CPU under
        "int8" with the EnCodec frontend. Each window still goes through the int8
        Transformer alone (dynamic int8 scales a call's activations by their range), but
        EnCodec's LSTM takes up to INT8_SOUND_WINDOWS windows at once, whose steps become
        matrix products (small encodec, bf16, 2 threads: 77 ms a window alone, 67 ms in
        groups of 4, 65 ms of 8). With the mel frontend there is no LSTM: one window."""
        return (device.type == "cpu" and self.compute_dtype == "int8"
                and self.mae.config.frontend == "encodec")

    def frontend_features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 96000) at 24 kHz -> frontend features (B, T, F) in float32 whatever the
        autocast around (computed in bf16 where `bf16_frontend` says so). On CPU the
        convolutions go window by window, as they are memory-bound there (a small
        EnCodec model on 32 s, 2 threads: 6.5 s with the frontend in batches of 8
        windows, 4.6 s window by window); EnCodec's LSTM takes the batch at once."""
        group = 1 if wav.device.type == "cpu" else None
        with torch.no_grad(), torch.autocast(wav.device.type, enabled=False):
            if self.bf16_frontend(wav.device):
                latent = self.bf16_encoder(wav.device)(wav[:, None, :].to(torch.bfloat16), group)
                return latent.float().transpose(1, 2)
            if self.mae.config.frontend == "encodec":
                return self.mae.frontend(wav, conv_group=group)
            return torch.cat([self.mae.frontend(w) for w in wav.split(group or len(wav))])

    def bf16_frontend(self, device: torch.device) -> bool:
        """Whether the EnCodec frontend runs in bf16: under "bf16" and "int8", on CUDA or
        on a CPU with native bf16 (a small model's EnCodec frontend, 2 threads of an
        AVX-512 BF16 CPU: 1.6-1.9x faster, latent cosine to fp32 0.99999)."""
        return (self.compute_dtype != "fp32" and self.mae.config.frontend == "encodec"
                and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())))

    def bf16_encoder(self, device: torch.device) -> nn.Module:
        if not self._bf16_frontend or self._bf16_frontend[0] != device:
            self._bf16_frontend = (device, bf16_encodec(self.mae.frontend.encoder).to(device))
        return self._bf16_frontend[1]

    @torch.no_grad()
    def encode_windows(self, wav: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """wav (B, 96000) windows at 24 kHz holding `lengths` (B,) samples of audio ->
        one float32 (B, T, D) block per encoder layer (led by the encoder input with
        "input+concat"), standardised if the model standardises."""
        if self.compute_dtype == "int8" and wav.device.type != "cpu":
            raise ValueError(f"dtype \"int8\" runs on CPU only (dynamic int8 Linear layers); "
                             f"the model is on {wav.device}: use \"bf16\" there")
        features = self.frontend_features(wav)
        if self.compute_dtype == "int8":  # one window a call: its int8 scales are its own
            windows = [self.mae.encode_features(f[None], n[None], with_input=self.with_input)
                       for f, n in zip(features, lengths)]
            return self.standardised([torch.cat(blocks).float() for blocks in zip(*windows)])
        with torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=self.compute_dtype == "bf16"):
            layers = self.mae.encode_features(features, lengths, with_input=self.with_input)
        return self.standardised([x.float() for x in layers])

    @torch.no_grad()
    def embed(self, audio: torch.Tensor, scene: bool = False) -> torch.Tensor:
        """audio (n_sounds, n_samples) -> (n_sounds, n_frames, E), or with `scene` the
        mean over frames (n_sounds, E) without holding every frame in memory."""
        audio = check_audio(audio, self.sample_rate)
        n_sounds, n_samples = audio.shape
        frames = num_frames(n_samples, self.sample_rate)
        shape = (n_sounds, self.timestamp_embedding_size) if scene else \
            (n_sounds, frames, self.timestamp_embedding_size)
        out = torch.zeros(shape, device=self.device, dtype=torch.float32)
        self._embed_into(list(audio), list(out), [frames] * n_sounds, scene)
        return self._scene(out, frames) if scene else out

    @torch.no_grad()
    def embed_sounds(self, sounds: list[torch.Tensor], scene: bool = False) -> list[torch.Tensor]:
        """Sounds of any lengths, each (n_samples,) at `sample_rate`, in one pass: their
        4 s windows run together in batches, so the windows of many short sounds share
        a forward. -> per sound (n_frames, E), or with `scene` (E,); each equal to what
        `embed` gives for that sound alone (padded frames are masked in every window)."""
        sounds = [check_audio(s[None], self.sample_rate)[0] for s in sounds]
        frames = [num_frames(s.shape[0], self.sample_rate) for s in sounds]
        width = self.timestamp_embedding_size
        out = [torch.zeros((width,) if scene else (n, width), device=self.device) for n in frames]
        self._embed_into(sounds, out, frames, scene)
        if not scene or not sounds:
            return out
        counts = torch.tensor(frames, device=self.device)[:, None]  # (n_sounds, 1)
        return list(self._scene(torch.stack(out), counts))

    def _embed_into(self, sounds, out: list[torch.Tensor], frames: list[int], scene: bool) -> None:
        """Fills out[i] ((frames[i], E), or with `scene` the (E,) sum over frames) for
        sounds[i] (n_samples,): every sound's windows, in batches of windows_per_batch."""
        device = self.device
        pending: list[tuple[int, int, torch.Tensor, int]] = []  # (sound, first frame, chunk, frames)
        batch = self.windows_per_batch(device)
        by_sound = self.groups_by_sound(device)

        def flush():
            wav = torch.stack([p[2] for p in pending]).to(device)  # (b, 96000)
            lengths = torch.tensor([p[3] * HOP_LENGTH for p in pending], device=device)
            emb = self.select_layer(self.encode_windows(wav, lengths))  # (b, 300, E)
            for row, (sound, start, _, count) in enumerate(pending):
                if scene:
                    out[sound] += emb[row, :count].sum(0)
                else:
                    out[sound][start:start + count] = emb[row, :count]
            pending.clear()

        for sound, audio in enumerate(sounds):
            start = 0
            for chunk, valid in self.chunker.chunks(audio):
                count = min(-(-valid // HOP_LENGTH), frames[sound] - start)
                if count <= 0:  # only a sliver past the last frame centre is left
                    break
                pending.append((sound, start, chunk, count))
                start += count
                if len(pending) == batch:
                    flush()
            if by_sound and pending:
                flush()
        if pending:
            flush()

    def _scene(self, sums: torch.Tensor, frames) -> torch.Tensor:
        """(n_sounds, E) sums over each sound's `frames` (an int, or (n_sounds, 1)) -> the
        scene embeddings (n_sounds, E or K)."""
        mean = sums / frames
        if not self.whiten_scene:
            return mean
        whitened = whitening.whiten(mean, self.scene_mean, self.scene_projection)
        return torch.cat([mean, whitened], dim=1) if self.keep_plain_scene else whitened


def load_model(model_file_path: str = "", sample_rate: int = 48000, layer=None,
               chunk_batch_size: int = 16, standardise=None, dtype: str = "fp32",
               whiten_scene: bool = False, whiten_power: float = 1.0,
               revision: str | None = None) -> HearModel:
    """HEAR entry point. "" loads the bundled checkpoint; options come from heareval's
    `--model-options` JSON, e.g. '{"layer": "mean", "sample_rate": 16000}'. Without a
    `layer`, the checkpoint's recommended one (provenance "hear_layer", set by `bundle
    --hear-layer`) is used, else the last layer. `standardise` (default: whether the
    checkpoint holds embedding statistics) standardises the embeddings with them.
    `dtype`: "fp32", "bf16" or "int8" (CPU), see the module's docstring: "bf16" runs the
    Transformer under bf16 autocast and the EnCodec frontend in bf16 where the hardware
    has bf16 (faster on GPUs and on CPUs with bf16 units, slower on others); "int8" runs
    the encoder's Linear layers in dynamic int8 on CPU. Outputs stay float32.
    `whiten_scene` true whitens the scene embeddings with the scene whitening the
    checkpoint holds for this layer option (docs/EVALUATE.md: it lifts pitch-like detail
    and costs timbre, so it is off unless asked for); "concat" gives the plain scene mean
    and the whitened one side by side. `whiten_power` a in [0, 1] scales each principal
    axis by std^-a: 1 whitens fully, 0 only projects. A published model's name (e.g.
    "mel256-ec-base_st") is fetched once and then loads offline (locate.py);
    `revision` pins its hub commit."""
    options = HearOptions(sample_rate=sample_rate, layer=layer, chunk_batch_size=chunk_batch_size,
                          standardise=standardise, dtype=dtype, whiten_scene=whiten_scene,
                          whiten_power=whiten_power)  # every option checked before any file is read
    if not model_file_path:
        announce_default_once()
    mae, payload = load_checkpoint(model_file_path, revision=revision)
    recommended = payload.get("provenance", {}).get("hear_layer", {}).get("layer")
    chosen = options.resolve(mae.num_layers, payload.get("embedding_stats"), recommended,
                             model_file_path or "the bundled checkpoint")
    model = HearModel(mae, sample_rate=options.sample_rate, layer=chosen.layer,
                      chunk_batch_size=options.chunk_batch_size, embedding_stats=chosen.embedding_stats,
                      dtype=options.dtype, scene_whitening=chosen.whitening, whiten_power=options.whiten_power,
                      keep_plain_scene=options.whiten_scene == "concat")
    model.provenance = payload["provenance"]
    return model


_announced = False


def announce_default_once() -> None:
    """Says once per process, on stderr, which model load_model() gives, so that the
    bundled model's scores are not taken for the published EnCodecMAE's."""
    global _announced
    if not _announced:
        _announced = True
        path = default_checkpoint()
        what = "the bundled default model (small, trained on a small corpus on a CPU: " \
               "checkpoints/README.md)" if path == BUNDLED_CHECKPOINT else str(path)
        print(f"encodecmae_hear: load_model() without a path gives {what}; for the paper's "
              f"EnCodecMAE use load_model({PAPER_MODEL!r})", file=sys.stderr)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel):
    """-> (embeddings (n_sounds, n_frames, E), timestamps in ms (n_sounds, n_frames))."""
    embeddings = model.embed(audio)
    n_sounds, frames = embeddings.shape[:2]
    return embeddings, frame_timestamps(frames).to(embeddings.device).expand(n_sounds, frames).contiguous()


def frame_timestamps(frames: int) -> torch.Tensor:
    """(frames,) float32: frame centres in ms. float64 arithmetic, so that hour-long
    sounds keep sub-millisecond stamps."""
    return ((torch.arange(frames, dtype=torch.float64) + 0.5) * (1000.0 / FRAME_RATE)).float()


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """-> (n_sounds, E): the mean over time of the timestamp embeddings, whitened
    (n_sounds, K) when the model whitens scene embeddings."""
    return model.embed(audio, scene=True)


def embed_file(path, model: HearModel, scene: bool = False):
    """One audio file, as the `embed` command does it: decoded with `load_audio` (mono,
    at model.sample_rate), moved to the model's device, then through the HEAR API.
    -> (embeddings (n_frames, E), timestamps in ms (n_frames,)), or with `scene` (E,)."""
    audio = load_audio(path, model.sample_rate)[None].to(model.device)  # (1, n_samples)
    if scene:
        return get_scene_embeddings(audio, model)[0]
    embeddings, timestamps = get_timestamp_embeddings(audio, model)
    return embeddings[0], timestamps[0]
