"""A study: does the mobile student keep pitch when its HEAR output also carries its own
input, the log-mel frames pooled to its 25 frames/s and standardised on corpus audio?
(The teacher's `input+concat` embedding carries its input tokens the same way.)

    python -m studies.student_with_mel probe --task ../valid_tasks/valid_pitch_class
    python -m studies.student_with_mel stats --manifest ../corpus/pretrain.jsonl --out mel_stats.pt
    STUDENT_MEL_STATS=mel_stats.pt make hear MODULE=studies.student_with_mel \
        MODEL=checkpoints/mobile-student.pt TASKS_DIR=../valid_tasks SUITE=valid ...

(The statistics come from $STUDENT_MEL_STATS, as `make hear`'s validation step passes no
model options. With STUDENT_MEL_ONLY=1 the output is the mel block alone.)

`probe`: fold_probe.py's linear probe (C = 0.1, each fold held out in turn) on nothing
but each clip's mean log-mel, the student's input.
`stats`: the pooled log-mel's mean and std over corpus audio. The rest of the file is
a HEAR module (load_model, get_timestamp_embeddings, get_scene_embeddings) over
encodecmae_hear.mobile_hear: each frame is [standardised pooled log-mel (64), the
student's frame]. Not part of the package.
"""
from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from encodecmae_hear import mobile_hear
from encodecmae_hear.audio import load_audio
from encodecmae_hear.model.mobile import SAMPLE_RATE, LogMelFrontend
from studies.fold_probe import fold_accuracy, task_clips

MEL_HOP = 160


def pooled_mel(frontend: LogMelFrontend, wav: torch.Tensor, frames: int, hop: int) -> torch.Tensor:
    """wav (B, N) at 16 kHz -> (B, frames, 64): the mean of the log-mel frames inside each
    student frame [hop j, hop (j + 1))."""
    padded = frames * hop
    wav = torch.nn.functional.pad(wav, (0, max(0, padded - wav.shape[1])))[:, :padded]
    mel = frontend(wav)  # (B, padded / 160, 64)
    return mel.view(wav.shape[0], frames, hop // MEL_HOP, -1).mean(2)


class StudentWithMel(torch.nn.Module):
    def __init__(self, hear: mobile_hear.MobileHear, stats: dict):
        super().__init__()
        self.hear, self.frontend = hear, LogMelFrontend()
        self.mean, self.std = stats["mean"], stats["std"]
        self.sample_rate = SAMPLE_RATE
        self.mel_only = os.environ.get("STUDENT_MEL_ONLY") == "1"  # the mel block alone
        width = 64 if self.mel_only else hear.timestamp_embedding_size + 64
        self.scene_embedding_size = self.timestamp_embedding_size = width

    @torch.no_grad()
    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        frames = self.hear.embed(audio)
        mel = (pooled_mel(self.frontend, audio.float(), frames.shape[1], self.hear.hop) - self.mean) / self.std
        return mel if self.mel_only else torch.cat([mel, frames], -1)


def load_model(model_file_path: str = "", mel_stats: str = "", **options) -> StudentWithMel:
    """`mel_stats`: the file `stats` wrote (default: $STUDENT_MEL_STATS)."""
    stats_file = mel_stats or os.environ["STUDENT_MEL_STATS"]
    return StudentWithMel(mobile_hear.load_model(model_file_path, **options),
                          torch.load(stats_file, weights_only=True))


def get_timestamp_embeddings(audio: torch.Tensor, model: StudentWithMel):
    emb = model.embed(audio)
    return emb, model.hear.timestamps(emb.shape[0], emb.shape[1])


def get_scene_embeddings(audio: torch.Tensor, model: StudentWithMel) -> torch.Tensor:
    return model.embed(audio).mean(1)


def stats(manifest: str, out: str, files: int, seconds: float, seed: int) -> None:
    rows = [json.loads(line) for line in open(manifest)]
    random.Random(seed).shuffle(rows)
    frontend, blocks = LogMelFrontend(), []
    for row in rows[:files]:
        wav = load_audio(row["path"], SAMPLE_RATE)[: int(seconds * SAMPLE_RATE)]
        frames = wav.shape[-1] // 640
        if frames:
            blocks.append(pooled_mel(frontend, wav.reshape(1, -1).float(), frames, 640)[0])
    x = torch.cat(blocks)
    torch.save({"mean": x.mean(0), "std": x.std(0)}, out)
    print(f"{out}: {x.shape[0]} frames of {len(blocks)} files")


def probe(task: str) -> None:
    wavs, labels, folds = task_clips(Path(task), SAMPLE_RATE)
    frontend = LogMelFrontend()
    x = np.stack([frontend(wav[: wav.shape[-1] // MEL_HOP * MEL_HOP][None])[0].mean(0).numpy() for wav in wavs])
    score = fold_accuracy(x, labels, folds, C=0.1)
    print(f"{task}: mean log-mel probe {100 * score:.1f} %")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stats")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--files", type=int, default=400)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("probe")
    p.add_argument("--task", required=True, help="a HEAR task folder with fold*.json labels")
    a = parser.parse_args()
    if a.cmd == "probe":
        probe(a.task)
    else:
        stats(a.manifest, a.out, a.files, a.seconds, a.seed)
