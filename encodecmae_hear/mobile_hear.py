"""HEAR 2021 API over the mobile encoders (model/mobile.py): a checkpoint of this project
(`pretrain-mobile`, `distill`) or its ONNX export (`export-onnx`).

    hear-validator encodecmae_hear.mobile_hear                 # the bundled student
    hear-validator encodecmae_hear.mobile_hear --model runs/student/model.pt
    hear-validator encodecmae_hear.mobile_hear --model student.onnx

The model declares 16000 Hz, the encoder's own rate: nothing is resampled. Frames are at
exactly 25/s: frame j covers samples [640 j, 640 (j + 1)) and is stamped with its centre,
(j + 0.5) * 40 ms; a sound of n samples gets round(n / 640) frames (halves up), every
frame whose centre lies inside the audio. Each sound runs alone (batch independence by
construction) in windows of `chunk_seconds` with 0.64 s of real audio as context on each
side, wider than the encoder's receptive field, so long sounds take bounded memory and
give the same frames as one pass over the whole sound.

Output: "encoder" (the frame embeddings, 512 x width), or for a distilled student
"distill" (its prediction of the teacher's embedding blocks, side by side), which is
the default for checkpoints with a distill head; for a model with an input block
(model/mobile_input.py), that block in front of either. Scene embeddings are the mean
over time, then, as the config's `scene_std` says, the std over time of the input
block's channels ("block") or of every channel ("frames").
"""
from __future__ import annotations

import json

import torch
from torch import nn

from encodecmae_hear.audio import check_audio
from encodecmae_hear.checkpoint import load_checkpoint
from encodecmae_hear.model.mobile import (SAMPLE_RATE, MobileConfig, MobileModel, hear_width, scene_std_width,
                                          scene_width)
from encodecmae_hear.paths import BUNDLED_STUDENT

OUTPUTS = ("encoder", "distill")
CONTEXT_FRAMES = 16          # frames of real audio on each side of a window (0.64 s)
ONNX_METADATA_KEY = "encodecmae_hear"  # JSON: {"config": MobileConfig dict, "output": ...}


class OnnxFrames:
    """An exported encoder (commands/export_onnx.py) run by onnxruntime: 16 kHz (B, N)
    -> frames (B, ceil(N / frame_hop), E); its config and output come from the file."""

    def __init__(self, path: str, threads: int = 0):
        import onnxruntime  # optional dependency (extra [mobile]): only ONNX files need it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        if meta is None:
            raise ValueError(f"{path}: not an ONNX export of this project (no {ONNX_METADATA_KEY!r} "
                             f"metadata); write one with `python -m encodecmae_hear export-onnx`")
        meta = json.loads(meta)
        self.config, self.output = MobileConfig.from_dict(meta["config"]), meta["output"]
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        (frames,) = self.session.run(None, {self.input_name: wav.float().cpu().numpy()})
        return torch.from_numpy(frames)


class MobileHear(nn.Module):
    """A mobile encoder (or its ONNX export) with the attributes HEAR expects."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: MobileModel | OnnxFrames, output: str | None = None,
                 chunk_seconds: float = 60.0):
        super().__init__()
        if isinstance(model, OnnxFrames):
            self.onnx, self.model, config = model, None, model.config
            if output not in (None, model.output):
                raise ValueError(f"this ONNX file computes output {model.output!r}, not {output!r}")
            output = model.output
        else:
            self.onnx, self.model, config = None, model.eval(), model.config
            output = output or ("distill" if config.head == "distill" else "encoder")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if output == "distill" and config.head != "distill":
            raise ValueError(f"output 'distill' needs a distilled student; this model's head "
                             f"is {config.head!r}")
        self.config, self.output, self.hop = config, output, config.frame_hop
        self.chunk_frames = max(1, round(float(chunk_seconds) * config.frame_rate))
        self.timestamp_embedding_size = hear_width(config, output)
        self.scene_embedding_size = scene_width(config, output)
        self.provenance: dict = {}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.model is None else next(self.model.parameters()).device

    def frames_of(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, N) -> (B, ceil(N / hop), E) by the backend."""
        if self.onnx is not None:
            return self.onnx(wav).to(wav.device)
        return self.model.hear_frames(wav, self.output)

    def num_frames(self, num_samples: int) -> int:
        """round(num_samples / hop), halves up: the frames whose centre is in the audio."""
        return (2 * num_samples + self.hop) // (2 * self.hop)

    @torch.no_grad()
    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (n_sounds, n_samples) at 16 kHz -> (n_sounds, n_frames, E) float32."""
        if isinstance(audio, torch.Tensor) and audio.ndim == 2 and 0 < audio.shape[1] < self.hop // 2:
            raise ValueError(f"audio is shorter than one frame: {audio.shape[1]} samples at "
                             f"{SAMPLE_RATE} Hz; need at least {self.hop // 2} "
                             f"({1000 * self.hop / 2 / SAMPLE_RATE:.0f} ms)")
        audio = check_audio(audio, SAMPLE_RATE).to(self.device)
        n_sounds, n_samples = audio.shape
        frames, total = self.num_frames(n_samples), -(-n_samples // self.hop)
        out = torch.empty(n_sounds, frames, self.timestamp_embedding_size, device=self.device)
        for sound in range(n_sounds):
            for start in range(0, frames, self.chunk_frames):
                end = min(start + self.chunk_frames, frames)
                lo, hi = max(0, start - CONTEXT_FRAMES), min(total, end + CONTEXT_FRAMES)
                emb = self.frames_of(audio[sound:sound + 1, lo * self.hop: hi * self.hop])
                out[sound, start:end] = emb[0, start - lo: end - lo].float()
        return out

    def timestamps(self, n_sounds: int, frames: int) -> torch.Tensor:
        # float64 arithmetic, so that hour-long sounds keep sub-millisecond stamps
        centres = ((torch.arange(frames, dtype=torch.float64) + 0.5) * (1000.0 * self.hop / SAMPLE_RATE))
        return centres.float().to(self.device).expand(n_sounds, frames).contiguous()


def load_model(model_file_path: str = "", output: str | None = None, chunk_seconds: float = 60.0,
               onnx_threads: int = 0) -> MobileHear:
    """HEAR entry point: a mobile checkpoint (.pt; "" = the bundled student, a bare name =
    a bundled model such as "mobile-cbow") or an ONNX export (.onnx). Options
    (heareval's --model-options JSON): `output` ("encoder" or "distill"), `chunk_seconds`
    (window length; bounds memory), `onnx_threads` (onnxruntime intra-op threads, 0 =
    its default)."""
    path = str(model_file_path) or str(BUNDLED_STUDENT)
    if path.endswith(".onnx"):
        return MobileHear(OnnxFrames(path, onnx_threads), output, chunk_seconds)
    model, payload = load_checkpoint(path, architecture="mobile")
    hear = MobileHear(model, output, chunk_seconds)
    hear.provenance = payload["provenance"]
    return hear


def get_timestamp_embeddings(audio: torch.Tensor, model: MobileHear):
    """-> (embeddings (n_sounds, n_frames, E), timestamps in ms (n_sounds, n_frames))."""
    embeddings = model.embed(audio)
    return embeddings, model.timestamps(*embeddings.shape[:2])


def get_scene_embeddings(audio: torch.Tensor, model: MobileHear) -> torch.Tensor:
    """-> (n_sounds, E): the mean over time of the timestamp embeddings, then, where the
    config's `scene_std` asks, the std over time (0 for a one-frame sound) of the input
    block's channels or of every channel: how a sound changes, a note's attack and decay."""
    embeddings = model.embed(audio)
    scene = embeddings.mean(1)
    width = scene_std_width(model.config, model.output)
    if not width:
        return scene
    return torch.cat([scene, embeddings[..., :width].std(1, correction=0)], dim=-1)
