"""`selftrain`: the second stage of EnCodecMAE (SPEC section 3).

    python -m encodecmae_hear selftrain --from runs/base/model.pt --data corpus.jsonl --out runs/base-st

1. The teacher (the pretrained checkpoint, frozen) encodes a sample of corpus crops; its
   last-layer features before the final ResiDual combination are collected.
2. MiniBatchKMeans (scikit-learn) fits --clusters centroids to a sample of those frames.
3. The student starts as a copy of the teacher with a fresh head of one stream of
   --clusters classes and trains with the same loop as pretraining; its targets are the
   nearest-centroid ids of the teacher's features on each training crop, on the fly.

The checkpoint's provenance records the lineage: the parent's path, its provenance and
config, and the k-means settings; the centroids are stored in the training state.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint, model_from_payload, save_checkpoint
from .objectives import KMeansTargets
from .provenance import base_record
from .train import train
from .train_cli import add_training_arguments, start_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="parent", required=True,
                        help="pretrained checkpoint: the teacher, and the student's initial weights")
    parser.add_argument("--clusters", type=int, default=1024, help="k-means clusters = student classes")
    parser.add_argument("--kmeans-clips", type=int, default=1000,
                        help="corpus crops whose teacher features are collected")
    parser.add_argument("--kmeans-frames", type=int, default=100_000,
                        help="frames drawn from those features to fit k-means on")
    parser.add_argument("--kmeans-batch", type=int, default=4096, help="MiniBatchKMeans batch size")
    parser.add_argument("--kmeans-iters", type=int, default=100, help="MiniBatchKMeans max passes")
    add_training_arguments(parser, steps=150_000)


@torch.no_grad()
def teacher_features(teacher, crops, device, batch: int = 16) -> torch.Tensor:
    """crops [(wav (N,), valid)] -> (frames, D) last-layer features of the valid frames."""
    teacher.to(device).eval()
    out = []
    for start in range(0, len(crops), batch):
        part = crops[start:start + batch]
        wav = torch.stack([w for w, _ in part]).to(device)
        lengths = torch.tensor([n for _, n in part], device=device)
        features, padding = teacher.last_layer_features(wav, lengths)  # (B, T, D), (B, T)
        out.append(features[~padding].float().cpu())
    return torch.cat(out)


def fit_kmeans(features: torch.Tensor, clusters: int, seed: int, batch: int, iters: int) -> torch.Tensor:
    """features (N, D) -> centroids (clusters, D) float32."""
    from sklearn.cluster import MiniBatchKMeans

    if features.shape[0] < clusters:
        raise SystemExit(f"k-means needs at least {clusters} frames, got {features.shape[0]}: "
                         f"raise --kmeans-clips or lower --clusters")
    kmeans = MiniBatchKMeans(n_clusters=clusters, batch_size=batch, max_iter=iters, n_init=3,
                             random_state=seed).fit(features.numpy())
    return torch.from_numpy(kmeans.cluster_centers_).float()


def teacher_kmeans(teacher, dim: int, source, clusters: int, clips: int, max_frames: int | None,
                   seed: int, batch: int, iters: int, proc, log) -> tuple[torch.Tensor, int]:
    """Centroids (clusters, dim) of the teacher's features on `clips` corpus crops, fitted on
    rank 0 (at most `max_frames` random frames; None: all of them) and broadcast to every
    rank; and the number of frames fitted on."""
    centroids, n_frames = torch.zeros(clusters, dim), 0
    if proc.main:
        crops = source.sample(clips, seed)
        log(f"teacher features of {len(crops)} crops ...")
        features = teacher_features(teacher, crops, proc.device)
        if max_frames is not None:
            pick = np.random.default_rng(seed).permutation(features.shape[0])[:max_frames]
            features = features[torch.from_numpy(pick)]
        n_frames = features.shape[0]
        log(f"k-means: {clusters} clusters on {n_frames} frames ...")
        centroids = fit_kmeans(features, clusters, seed, batch, iters)
    if proc.world > 1:
        import torch.distributed as dist
        moved = centroids.to(proc.device)
        dist.broadcast(moved, src=0)
        centroids = moved.cpu()
    return centroids, n_frames


def run(args: argparse.Namespace) -> int:
    proc, log, cfg, source, resume = start_run(args)
    parent_path = str(Path(args.parent).resolve())
    teacher, parent = load_checkpoint(args.parent)
    if resume is not None:
        recorded = resume["provenance"].get("lineage", {}).get("parent", {}).get("path")
        if recorded != parent_path:
            raise SystemExit(f"{args.out} was self-trained from {recorded}, not {parent_path}")
        student = model_from_payload(resume, args.out)
        centroids = resume["training"]["objective"]["centroids"]
        settings = resume["provenance"]["kmeans"]
    else:
        settings = {"clusters": args.clusters, "clips": args.kmeans_clips,
                    "batch_size": args.kmeans_batch,
                    "max_iter": args.kmeans_iters, "seed": cfg.seed, "algorithm": "MiniBatchKMeans",
                    "features": "teacher last layer x0, before the final ResiDual combination"}
        centroids, settings["frames"] = teacher_kmeans(
            teacher, teacher.config.dim, source, args.clusters, args.kmeans_clips,
            args.kmeans_frames, cfg.seed, args.kmeans_batch, args.kmeans_iters, proc, log)
        student, _ = load_checkpoint(args.parent)
        torch.manual_seed(cfg.seed)
        student.new_head(1, args.clusters)
    objective = KMeansTargets(teacher, centroids, student.config.masked_loss_weight, settings)
    provenance = base_record(
        trained=True, targets="kmeans-teacher-features", objective=objective.name, kmeans=settings,
        corpus={"data": str(args.data), "hours": source.hours},
        lineage={"parent": {"path": parent_path, "provenance": parent["provenance"],
                            "config": parent["config"]}},
        notes=f"self-trained from {parent_path} on k-means ids ({args.clusters} clusters)")
    status = train(student, objective, source, cfg, provenance=provenance, resume=resume, log=log)
    if status != "done":
        return 143 if status == "SIGTERM" else 130
    if proc.main:
        release = Path(args.out) / "model.pt"
        save_checkpoint(release, student, provenance={**provenance, "steps": cfg.steps,
                                                      "samples_seen": cfg.steps * cfg.batch_size})
        log(f"done: {release}")
    return 0
