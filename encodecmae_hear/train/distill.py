"""`distill`: a mobile student (model/mobile.py) trained to reproduce the frame embeddings
of an EnCodecMAE teacher, as DistilHuBERT does for HuBERT.

    python -m encodecmae_hear distill --data corpus.jsonl --out runs/student   # teacher: bundled
    python -m encodecmae_hear distill --teacher runs/base/model.pt --teacher-blocks last ...

Targets: the teacher's unmasked encoding of each 24 kHz crop (`EncodecMAE.encode`, with
its input block), the chosen blocks standardised channel by channel with the teacher's
embedding statistics when it has them (so the student learns what the teacher's HEAR
module returns). Blocks: 0 is the encoder input, 1 + i is layer i; "all" takes every one.

Alignment: the teacher's frame i stands for [i, i + 1) x 13.33 ms (75 frames/s, as its
HEAR module stamps it) and the student's frame j for [j, j + 1) x 40 ms, so student
frame j is the mean of teacher frames 3j, 3j + 1, 3j + 2, an exact tiling. (A mel256
teacher's frames are really 318, not 320, samples apart: over a 4 s crop their true
centres drift from 6.5 ms late to 18 ms early, under half a student frame.) Frames
past the end of either side's valid audio are left out of the loss.

Loss per frame and block: L1 (mean over channels) - log sigmoid(cosine), DistilHuBERT's;
averaged over valid frames, then over blocks. One linear head per block maps the
student's frame embedding to the teacher's width.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from encodecmae_hear import files
from encodecmae_hear.checkpoint import load_checkpoint, resolve_checkpoint
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import CHUNK_SECONDS, FRAME_RATE, HOP_LENGTH
from encodecmae_hear.model.mobile import MOBILE_PRESETS, MobileConfig, MobileModel, mobile_preset
from encodecmae_hear.train.mobile_objectives import to_16k
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.run import add_training_arguments, start_run, train_and_release

STUDENT_RATE = 25  # frames/s of every mobile preset
GROUP = round(FRAME_RATE) // STUDENT_RATE  # 3 teacher frames per student frame


def align(frames: torch.Tensor, group: int = GROUP) -> torch.Tensor:
    """Teacher frames (B, T, D) at 75/s -> (B, T // 3, D) at 25/s: each the mean of 3."""
    usable = frames.shape[1] // group * group
    return frames[:, :usable].unflatten(1, (-1, group)).mean(2)


def parse_blocks(spec: str, num_layers: int) -> tuple[int, ...]:
    """"all", "last", or a comma list of "input" and layer indices -> block indices
    (0 = encoder input, 1 + i = layer i)."""
    if spec == "all":
        return tuple(range(num_layers + 1))
    blocks = []
    for part in spec.split(","):
        part = part.strip()
        if part == "input":
            blocks.append(0)
        elif part == "last" or part.lstrip("-").isdigit():
            layer = num_layers - 1 if part == "last" else int(part)
            if not -num_layers <= layer < num_layers:
                raise UserError(f"teacher block {part!r}: the teacher has layers 0..{num_layers - 1}")
            blocks.append(1 + layer % num_layers)
        else:
            raise UserError(f"teacher blocks must be 'all', or a comma list of 'input', 'last' and "
                            f"layer indices; got {spec!r}")
    return tuple(blocks)


class DistillTask(MobileModel):
    """The student as the train loop runs it: 24 kHz crops -> predicted teacher blocks."""

    compiled_parts = ("encoder", "head")
    compile_dynamic = False  # fixed crop shapes; inductor fails on symbolic pooling sizes

    def forward(self, wav, lengths=None, generator=None) -> dict:
        wav16, lengths16 = to_16k(wav, lengths)
        predictions = self.head(self.frames(wav16))  # [(B, T, D) per block]
        valid = torch.div(lengths16, self.config.frame_hop, rounding_mode="floor")
        return {"predictions": predictions, "valid": valid}


class TeacherTargets:
    """Objective: the teacher's chosen blocks, aligned to 25 frames/s; L1 - log sigmoid(cos)."""

    name = "distill"

    def __init__(self, teacher, blocks, stats: dict | None = None, settings: dict | None = None):
        self.teacher = teacher.eval().requires_grad_(False)
        self.blocks = tuple(blocks)
        self.stats = None if stats is None else {k: stats[k].float() for k in ("mean", "std")}
        self.settings = dict(settings or {})

    def to(self, device):
        self.teacher.to(device)
        if self.stats is not None:
            self.stats = {k: v.to(device) for k, v in self.stats.items()}
        return self

    @torch.no_grad()
    def targets(self, wav, lengths, out, crops=None) -> dict:
        layers = self.teacher.encode(wav.float(), lengths, with_input=True)  # L + 1 of (B, T, D)
        picked = []
        for b in self.blocks:
            x = layers[b].float()
            if self.stats is not None:
                x = (x - self.stats["mean"][b]) / self.stats["std"][b]
            picked.append(align(x))
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
        teacher_valid = torch.div(lengths + HOP_LENGTH - 1, HOP_LENGTH, rounding_mode="floor")
        return {"blocks": picked, "valid": torch.div(teacher_valid, GROUP, rounding_mode="floor")}

    def loss(self, out: dict, targets: dict) -> dict:
        frames = min(out["predictions"][0].shape[1], targets["blocks"][0].shape[1])
        valid = torch.minimum(out["valid"], targets["valid"])
        mask = (torch.arange(frames, device=valid.device)[None] < valid[:, None]).float()  # (B, T)
        count = mask.sum().clamp(min=1)
        total = l1_sum = cos_sum = 0.0
        for pred, target in zip(out["predictions"], targets["blocks"]):
            pred, target = pred[:, :frames].float(), target[:, :frames]
            l1 = (pred - target).abs().mean(-1)  # (B, T)
            cos = F.cosine_similarity(pred, target, dim=-1)
            total = total + ((l1 - F.logsigmoid(cos)) * mask).sum() / count
            l1_sum = l1_sum + (l1 * mask).sum().detach() / count
            cos_sum = cos_sum + (cos * mask).sum().detach() / count
        n = len(self.blocks)
        return {"loss": total / n, "l1": l1_sum / n, "cosine": cos_sum / n}

    def state_dict(self) -> dict:
        return {}

    def provenance(self) -> dict:
        return {"objective": self.name, "targets": "teacher frame embeddings", "distill": self.settings}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", default="",
                        help="EnCodecMAE checkpoint (path or name; default: the bundled model)")
    parser.add_argument("--teacher-blocks", default="all",
                        help="'all', or a comma list of 'input', 'last' and layer indices")
    parser.add_argument("--no-standardise", action="store_true",
                        help="raw teacher blocks, even if the teacher holds embedding statistics")
    parser.add_argument("--preset", choices=MOBILE_PRESETS, default="mobile-quarter", help="student width")
    add_training_arguments(parser, steps=100_000)
    parser.set_defaults(lr=1e-3, warmup_steps=500, schedule="cosine", batch_size=64)


def run(args: argparse.Namespace) -> int:
    proc, log, cfg, source, resume = start_run(args)
    if cfg.crop_seconds > CHUNK_SECONDS:
        raise UserError(f"--crop-seconds {cfg.crop_seconds}: the teacher sees at most "
                        f"{CHUNK_SECONDS} s windows")
    teacher_path = resolve_checkpoint(args.teacher)
    teacher, payload = load_checkpoint(teacher_path)
    sha = files.sha256_of(teacher_path)
    if resume is not None:
        settings = resume["provenance"]["distill"]
        if settings["teacher_sha256"] != sha:
            raise UserError(f"{args.out} was distilled from another teacher ({settings['teacher']}); "
                            f"pass the same --teacher")
        config = MobileConfig.from_dict(resume["config"])
    else:
        stats = None if args.no_standardise else payload.get("embedding_stats")
        settings = {"teacher": str(teacher_path), "teacher_sha256": sha,
                    "blocks": list(parse_blocks(args.teacher_blocks, teacher.num_layers)),
                    "standardised": stats is not None, "alignment": f"mean of {GROUP} teacher frames"}
        dims = (teacher.config.dim,) * len(settings["blocks"])
        config = mobile_preset(args.preset, head="distill", distill_dims=dims)
    stats = payload.get("embedding_stats") if settings["standardised"] else None
    objective = TeacherTargets(teacher, settings["blocks"], stats, settings)
    torch.manual_seed(cfg.seed + 1)
    student = DistillTask(config)
    if resume is not None:
        student.load_state_dict(resume["model"], strict=True)
    size = resume["provenance"].get("preset", args.preset) if resume else args.preset
    provenance = base_record(
        trained=True, **objective.provenance(), preset=size,
        corpus={"data": str(args.data), "hours": source.hours},
        notes=f"mobile student ({size}) distilled from {teacher_path.name}, blocks {settings['blocks']}")
    return train_and_release(student, objective, source, cfg, proc, log, provenance=provenance,
                             resume=resume)
