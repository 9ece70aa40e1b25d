"""Silero VAD teacher (silero-vad, MIT): the voice-activity network's LSTM state per chunk.

Silero VAD (the TorchScript model in the wheel, `silero_vad/data/silero_vad.jit`) reads
16 kHz audio in chunks of 512 samples (32 ms), each with the 64 samples before it as
context, and carries an LSTM state (h, c) of 2 x 128 from chunk to chunk; its speech
probability is a readout (ReLU, 1x1 conv, sigmoid) of h. We run its 16 kHz network
directly with an explicit state, batch over crops, and start every crop from a zero state
and zero context, as the package does for a new stream. The package itself is not
imported (its `__init__` sets torch's thread count to 1).

Features: h after each chunk (128-d), the state the speech probability is read from;
`speech_probability` gives the probability itself. Chunk j is timed at its centre,
(512 j + 256) / 16000 s, and interpolated onto the model's frames (align.py).
"""
from __future__ import annotations

import warnings

import torch

from encodecmae_hear.train.teachers.align import TEACHER_RATE, interpolate_frames
from encodecmae_hear.train.teachers.teacher import Teacher, package_file

CHUNK, CONTEXT, STATE = 512, 64, 128


class SileroVAD(Teacher):
    name, module, package, licence, dim = "vad", "silero_vad", "silero-vad", "MIT", STATE
    features = "Silero VAD LSTM hidden state h after each 32 ms chunk"

    def __init__(self, frontend: str = "mel256"):
        super().__init__(package_file(self.module, "data/silero_vad.jit", self.package, self.name), frontend)
        with warnings.catch_warnings():  # TorchScript is deprecated; the wheel ships it and ONNX only
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(self.weight_file), map_location="cpu")._model  # 16 kHz network
        self.eval().requires_grad_(False)

    def chunks(self, wav: torch.Tensor):
        """wav (B, M) at 16 kHz -> speech probabilities (B, J) and states h (B, J, 128),
        J = ceil(M / 512) (the last chunk zero-padded)."""
        batch = wav.shape[0]
        wav = torch.nn.functional.pad(wav, (CONTEXT, -wav.shape[1] % CHUNK))
        state = wav.new_zeros(2, batch, STATE)
        probs, hidden = [], []
        for start in range(0, wav.shape[1] - CONTEXT, CHUNK):
            prob, state = self.model(wav[:, start: start + CONTEXT + CHUNK], state)
            probs.append(prob.reshape(batch))
            hidden.append(state[0])
        return torch.stack(probs, 1), torch.stack(hidden, 1)

    @torch.no_grad()
    def speech_probability(self, wav16: torch.Tensor) -> torch.Tensor:
        """(B, M) at 16 kHz -> (B, ceil(M / 512)) speech probability per chunk."""
        return self.chunks(wav16)[0]

    def features_16k(self, wav, lengths, centres):
        _, hidden = self.chunks(wav)
        times = (torch.arange(hidden.shape[1], device=wav.device) * CHUNK + CHUNK / 2) / TEACHER_RATE
        return interpolate_frames(hidden, times, centres)
