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

import torch

from encodecmae_hear.checkpoint import load_checkpoint, model_from_payload
from encodecmae_hear.errors import UserError
from encodecmae_hear.train.objectives import KMeansTargets, teacher_kmeans
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.run import add_training_arguments, start_run, train_and_release


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


def run(args: argparse.Namespace) -> int:
    teacher, parent = load_checkpoint(args.parent)
    proc, log, cfg, source, resume = start_run(args)
    parent_path = str(Path(args.parent).resolve())
    if resume is not None:
        recorded = resume["provenance"].get("lineage", {}).get("parent", {}).get("path")
        if recorded != parent_path:
            raise UserError(f"{args.out} was self-trained from {recorded}, not {parent_path}")
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
    return train_and_release(student, objective, source, cfg, proc, log, provenance=provenance,
                             resume=resume)
