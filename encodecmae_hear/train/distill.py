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

Targets that keep the weak directions too (`--targets`, `--dim-weighting`, `--teachers`):

* `--targets whitened`: the standardised blocks of every layer, side by side (the
  teacher's `input+concat` embedding), minus the scene mean and projected on the scene
  whitening's axes that the teacher holds (train/scene_whitening.py): one K-wide target
  in which each axis has unit variance over the corpus's scene embeddings, so the
  directions that carry little variance (pitch, in the bundled default) weigh as much as
  the strong ones. `both`: the standardised blocks and the whitened one.
* `--dim-weighting balanced`: in every target, each dimension of prediction and target
  is divided by that dimension's standard deviation over the batch's valid frames
  (population std, floored at 0.1 of the mean one; the weights rescaled to mean 1), so
  the L1 and the cosine count an error in a weak dimension as much as the same error,
  relative to its spread, in a strong one.
* `--teachers crepe,resemblyzer,vad`: one more linear map per specialised teacher
  (train/teachers: CREPE pitch posteriors, GE2E running speaker embedding, Silero VAD
  state), trained to predict its features at the student's own frame centres,
  (j + 1/2) x 40 ms, with the same loss times `--teacher-weights`; computed from the
  crop, or read from `--teacher-cache` at those centres. The maps are part of the
  student's `distill` output.

The loss: the mean of the EnCodecMAE targets' terms plus, for each specialised teacher,
its weight times its term.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from encodecmae_hear import files
from encodecmae_hear.audio import resample
from encodecmae_hear.checkpoint import load_checkpoint, resolve_checkpoint
from encodecmae_hear.errors import UserError
from encodecmae_hear.model.config import CHUNK_SECONDS, FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from encodecmae_hear.model.mobile import MOBILE_PRESETS, MobileConfig, MobileModel, mobile_preset
from encodecmae_hear.train.mobile_objectives import to_16k
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.run import add_training_arguments, start_run, train_and_release
from encodecmae_hear.train.teachers import load_teacher, parse_teachers
from encodecmae_hear.train.teachers.align import TEACHER_RATE
from encodecmae_hear.train.teachers.cache import TeacherCache, read_header
from encodecmae_hear.train.teachers.streams import parse_weights

STUDENT_RATE = 25  # frames/s of every mobile preset
GROUP = round(FRAME_RATE) // STUDENT_RATE  # 3 teacher frames per student frame
STUDENT_HOP = SAMPLE_RATE // STUDENT_RATE  # 960 samples at 24 kHz
TARGETS = ("standardised", "whitened", "both")
WEIGHTINGS = ("none", "balanced")
STD_FLOOR = 0.1  # balanced weighting: a dimension's std is at least this share of the mean std,
                 # so a dimension that hardly varies in a batch (a CREPE bin never active) is not
                 # weighted more than 10x the typical one


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


def student_centres(num_samples: int) -> torch.Tensor:
    """(T,) float64 centres, in 24 kHz samples, of the student's frames of a crop of
    `num_samples` samples: frame j stands for [j, j + 1) x 40 ms."""
    frames = -(-num_samples // STUDENT_HOP)
    return (torch.arange(frames, dtype=torch.float64) + 0.5) * STUDENT_HOP


class Specialist:
    """A specialised teacher (train/teachers) as a distillation target: its features at the
    student's frame centres, computed from the crop or read from a teacher cache."""

    def __init__(self, name: str, source, weight: float):
        self.name, self.source, self.weight = name, source, float(weight)
        self.dim = source.out_dim

    def to(self, device):
        if isinstance(self.source, torch.nn.Module) and not getattr(self.source, "reads_crops", False):
            self.source.to(device)
        return self

    @torch.no_grad()
    def features(self, wav, lengths, crops=None) -> torch.Tensor:
        """wav (B, N) at 24 kHz -> (B, T, D) at the student's frame centres."""
        centres = student_centres(wav.shape[-1])  # (T,) samples at 24 kHz
        if getattr(self.source, "reads_crops", False):
            if crops is None:
                raise ValueError("cached teacher features need the batch's crop keys and starts")
            features = [self.source.crop_at(key, float(start), centres)
                        for key, start in zip(crops["keys"], crops["starts"].tolist())]
            return torch.stack(features).to(wav.device)
        with torch.autocast(wav.device.type, enabled=False):
            wav16 = resample(wav.float(), SAMPLE_RATE, TEACHER_RATE)  # (B, M)
            lengths16 = torch.div(lengths * TEACHER_RATE + SAMPLE_RATE - 1, SAMPLE_RATE,
                                  rounding_mode="floor")
            return self.source.features_16k(wav16, lengths16, (centres / SAMPLE_RATE).to(wav.device)).float()


def balance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Divide each dimension of pred and target (B, T, D) by the target's population std
    over the valid frames (mask (B, T)), floored at STD_FLOOR of the mean std; the
    weights are rescaled to mean 1 and carry no gradient."""
    w = mask[..., None]
    count = w.sum().clamp(min=1)
    mean = (target * w).sum((0, 1)) / count  # (D,)
    std = (((target - mean) ** 2 * w).sum((0, 1)) / count).sqrt()
    std = torch.maximum(std, STD_FLOOR * std.mean()).clamp(min=1e-12)
    weight = (1 / std) / (1 / std).mean()
    return pred * weight, target * weight


def frame_terms(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, balanced: bool):
    """(B, T, D) each, mask (B, T) -> the loss term L1 - log sigmoid(cos) and the L1 and
    cosine, each the mean over valid frames."""
    frames = min(pred.shape[1], target.shape[1], mask.shape[1])
    pred, target, mask = pred[:, :frames].float(), target[:, :frames].float(), mask[:, :frames]
    if balanced:
        pred, target = balance(pred, target.detach(), mask)
    count = mask.sum().clamp(min=1)
    l1 = (pred - target).abs().mean(-1)  # (B, T)
    cos = F.cosine_similarity(pred, target, dim=-1)
    term = ((l1 - F.logsigmoid(cos)) * mask).sum() / count
    return term, (l1 * mask).sum().detach() / count, (cos * mask).sum().detach() / count


class TeacherTargets:
    """Objective: the teacher's chosen blocks, aligned to 25 frames/s (standardised, and/or
    whitened: module docstring), plus specialised teachers' features; L1 - log sigmoid(cos)."""

    name = "distill"

    def __init__(self, teacher, blocks, stats: dict | None = None, settings: dict | None = None,
                 targets: str = "standardised", whitening: dict | None = None,
                 specialists: tuple[Specialist, ...] = (), dim_weighting: str = "none"):
        if targets not in TARGETS or dim_weighting not in WEIGHTINGS:
            raise ValueError(f"targets must be one of {TARGETS} and dim_weighting one of {WEIGHTINGS}")
        if targets != "standardised" and (whitening is None or stats is None):
            raise ValueError(f"targets {targets!r} need the teacher's embedding statistics and "
                             f"scene whitening")
        self.teacher = teacher.eval().requires_grad_(False)
        self.blocks = tuple(blocks)
        self.stats = None if stats is None else {k: stats[k].float() for k in ("mean", "std")}
        self.whitening = None if targets == "standardised" else {
            "mean": whitening["scene_mean"].float(), "projection": whitening["scene_projection"].float()}
        self.keep_blocks = targets != "whitened"
        self.specialists = tuple(specialists)
        self.balanced = dim_weighting == "balanced"
        self.settings = dict(settings or {})

    @property
    def num_main(self) -> int:
        """How many EnCodecMAE targets come before the specialists' ones."""
        return len(self.blocks) * self.keep_blocks + (self.whitening is not None)

    def to(self, device):
        self.teacher.to(device)
        if self.stats is not None:
            self.stats = {k: v.to(device) for k, v in self.stats.items()}
        if self.whitening is not None:
            self.whitening = {k: v.to(device) for k, v in self.whitening.items()}
        for s in self.specialists:
            s.to(device)
        return self

    @torch.no_grad()
    def targets(self, wav, lengths, out, crops=None) -> dict:
        layers = self.teacher.encode(wav.float(), lengths, with_input=True)  # L + 1 of (B, T, D)
        blocks = []
        for b in self.blocks:
            x = layers[b].float()
            if self.stats is not None:
                x = (x - self.stats["mean"][b]) / self.stats["std"][b]
            blocks.append(align(x))
        picked = list(blocks) if self.keep_blocks else []
        if self.whitening is not None:  # (B, T, E) -> (B, T, K)
            joined = torch.cat(blocks, -1)
            picked.append((joined - self.whitening["mean"]) @ self.whitening["projection"].T)
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
        picked += [s.features(wav, lengths, crops) for s in self.specialists]
        teacher_valid = torch.div(lengths + HOP_LENGTH - 1, HOP_LENGTH, rounding_mode="floor")
        return {"blocks": picked, "valid": torch.div(teacher_valid, GROUP, rounding_mode="floor")}

    def loss(self, out: dict, targets: dict) -> dict:
        frames = max(p.shape[1] for p in out["predictions"])
        valid = torch.minimum(out["valid"], targets["valid"])
        mask = (torch.arange(frames, device=valid.device)[None] < valid[:, None]).float()  # (B, T)
        n = self.num_main
        total = l1_sum = cos_sum = 0.0
        metrics = {}
        for pred, target in zip(out["predictions"][:n], targets["blocks"][:n]):
            term, l1, cos = frame_terms(pred, target, mask, self.balanced)
            total, l1_sum, cos_sum = total + term, l1_sum + l1, cos_sum + cos
        total = total / n
        for s, pred, target in zip(self.specialists, out["predictions"][n:], targets["blocks"][n:]):
            term, _, cos = frame_terms(pred, target, mask, self.balanced)
            total = total + s.weight * term
            metrics[f"loss_{s.name}"], metrics[f"cosine_{s.name}"] = term.detach(), cos
        return {"loss": total, "l1": l1_sum / n, "cosine": cos_sum / n, **metrics}

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
    parser.add_argument("--targets", choices=TARGETS, default="standardised",
                        help="the standardised blocks; or their join whitened on the teacher's scene "
                             "whitening axes (needs --teacher-blocks all); or both")
    parser.add_argument("--dim-weighting", choices=WEIGHTINGS, default="none",
                        help="balanced: each target dimension scaled by 1 / its std over the batch")
    parser.add_argument("--teachers", default="",
                        help="specialised teachers to predict too, e.g. crepe,resemblyzer,vad")
    parser.add_argument("--teacher-weights", default="",
                        help="loss weight of each specialised teacher (one for all, or one each; default 1)")
    parser.add_argument("--teacher-cache", default="",
                        help="read the specialised teachers' features from this cache (cache-teachers)")
    parser.add_argument("--preset", choices=MOBILE_PRESETS, default="mobile-quarter", help="student width")
    add_training_arguments(parser, steps=100_000)
    parser.set_defaults(lr=1e-3, warmup_steps=500, schedule="cosine", batch_size=64)


def scene_whitening(payload: dict, blocks, num_layers: int) -> dict:
    """The teacher's scene whitening of its standardised input+concat embedding, checked
    to fit the blocks distilled; UserError when it holds none."""
    stats = payload.get("embedding_stats") or {}
    if stats.get("scene_layer") != "input+concat" or "scene_projection" not in stats:
        raise UserError("--targets whitened needs a teacher with scene whitening of its input+concat "
                        "embedding (embedding-stats CKPT --scene-dims K --scene-layer input+concat)")
    if list(blocks) != list(range(num_layers + 1)):
        raise UserError("--targets whitened whitens the input+concat embedding: use --teacher-blocks all")
    return stats


def specialists(records: list[dict], cache_dir: str, source) -> tuple[Specialist, ...]:
    """The specialised teachers recorded in `records` ({"name", "weight", "sha256", ...}),
    their features read from `cache_dir` when it holds them; installed weights must match."""
    cache = TeacherCache(cache_dir, read_header(cache_dir)["frontend"]) if cache_dir else None
    out = []
    for record in records:
        teacher = load_teacher(record["name"])
        installed = teacher.provenance()
        if record.get("sha256", installed["sha256"]) != installed["sha256"]:
            raise UserError(f"teacher {record['name']!r}: the installed {installed['package']} "
                            f"{installed['version']} ships other weights than this run was started with")
        features = teacher
        if cache is not None and cache.holds(record["name"]):
            features = cache.teacher(record["name"], installed)
            cache.check_covers(source, features)
        out.append(Specialist(record["name"], features, record["weight"]))
    return tuple(out)


def build_objective(teacher, payload: dict, settings: dict, specialists=()) -> TeacherTargets:
    """The objective a run's `settings` (its provenance record) describes."""
    stats = payload.get("embedding_stats") if settings["standardised"] else None
    targets = settings.get("targets", "standardised")
    whitening = stats if targets != "standardised" else None
    return TeacherTargets(teacher, settings["blocks"], stats, settings, targets=targets, whitening=whitening,
                          specialists=specialists, dim_weighting=settings.get("dim_weighting", "none"))


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
        blocks = list(parse_blocks(args.teacher_blocks, teacher.num_layers))
        if args.targets != "standardised":
            if stats is None:
                raise UserError(f"--targets {args.targets} needs a teacher with scene whitening of its "
                                f"standardised input+concat embedding; "
                                + ("drop --no-standardise" if args.no_standardise else
                                   f"{teacher_path} holds no embedding statistics (embedding-stats CKPT "
                                   f"--scene-dims K --scene-layer input+concat)"))
            scene_whitening(payload, blocks, teacher.num_layers)
        names = parse_teachers(args.teachers)
        weights = parse_weights(args.teacher_weights, len(names))
        records = [{**load_teacher(n).provenance(), "weight": w} for n, w in zip(names, weights)]
        settings = {"teacher": str(teacher_path), "teacher_sha256": sha, "blocks": blocks,
                    "standardised": stats is not None, "alignment": f"mean of {GROUP} teacher frames",
                    "targets": args.targets, "dim_weighting": args.dim_weighting, "teachers": records,
                    "teacher_cache": args.teacher_cache or None}
        dims = (teacher.config.dim,) * len(blocks) * (args.targets != "whitened")
        if args.targets != "standardised":
            dims += (int(payload["embedding_stats"]["scene_projection"].shape[0]),)
        dims += tuple(r["dim"] for r in records)
        config = mobile_preset(args.preset, head="distill", distill_dims=dims)
    extra = specialists(settings.get("teachers", []), settings.get("teacher_cache") or "", source)
    objective = build_objective(teacher, payload, settings, extra)
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
