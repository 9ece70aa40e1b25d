"""Why heareval's downstream predictor scores an embedding below a linear probe (a study
that prints figures, not a test). Input: one k-fold scene task as heareval's embedding
runner wrote it (`make hear-embed`, then RUNS/<label>/embeddings/<module>/<task>).

Each *variant* is a copy of that folder with the scene embeddings transformed; each is
scored twice on heareval's own folds (test fold k, validation fold k+1, train the rest):

- heareval: the real `heareval.predictions.runner` (through `compat`), its grid pinned
  by the task's `task_specific_param_grid` (hidden layers, learning rate; the seed picks
  the initialisation), so each learning rate of heareval's grid is seen on its own;
- probe: standardised logistic regression (sklearn), fitted on the train folds only.

Variants (D = the embedding width, B = --block, one encoder block's width):
  shipped        the embedding as heareval gets it
  x10            times 10 (does the input scale matter to heareval's MLP?)
  task-zscore    standardised with the task's own scene mean and std, as the probe does
                 (transductive, no labels: a diagnosis, not something a module can do)
  corpus-zscore  standardised with the mean and std of the scene embeddings of corpus
                 crops (--checkpoint, --corpus, --corpus-seconds): what a module can do
  corpus-pca     projected on the top --pca-dims principal axes of those corpus scene
                 embeddings, each scaled to unit variance on the corpus (whitened)
  last, input    the last / first block alone (B dims: does the width matter?)

    python studies/heareval_gap.py runs/valid/default/embeddings/encodecmae_hear/valid_pitch_class \\
        --out runs/gap --lrs 1e-4 3.2e-3 --jobs 2
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from encodecmae_hear.evaluate import compat  # noqa: E402

VARIANTS = ("shipped", "x10", "task-zscore", "corpus-zscore", "corpus-pca", "last", "input")


def read_folds(task: Path) -> tuple[list[str], dict[str, np.ndarray], dict[str, list]]:
    meta = json.loads((task / "task_metadata.json").read_text())
    if meta["embedding_type"] != "scene" or "kfold" not in meta["split_mode"]:
        raise SystemExit(f"{task}: a k-fold scene task is needed, got {meta['embedding_type']} "
                         f"/ {meta['split_mode']}")
    folds = sorted(meta["splits"])
    embeddings, labels = {}, {}
    for fold in folds:
        shape = tuple(json.loads((task / f"{fold}.embedding-dimensions.json").read_text()))
        embeddings[fold] = np.fromfile(task / f"{fold}.embeddings.npy", dtype=np.float32).reshape(shape)
        labels[fold] = [row[0] for row in pickle.loads((task / f"{fold}.target-labels.pkl").read_bytes())]
    return folds, embeddings, labels


def corpus_scene_stats(checkpoint: str, corpus: str, seconds: float, crops: int) -> tuple:
    """Mean and std of the scene embeddings of `crops` corpus crops of `seconds`."""
    import torch

    from encodecmae_hear import get_scene_embeddings, load_model
    from encodecmae_hear.audio import resample
    from encodecmae_hear.model.config import SAMPLE_RATE
    from encodecmae_hear.train.data import open_source

    model = load_model(checkpoint)
    wavs = [w[:n] for w, n in open_source(corpus, 0, seconds).sample(crops, 0) if n == len(w)]
    audio = resample(torch.stack(wavs), SAMPLE_RATE, model.sample_rate)
    scenes = torch.cat([get_scene_embeddings(part, model) for part in audio.split(32)]).numpy()
    print(f"corpus scene statistics: {len(wavs)} crops of {seconds:g} s from {corpus}")
    mean = scenes.mean(0)
    _, singular, axes = np.linalg.svd(scenes - mean, full_matrices=False)
    return mean, scenes.std(0) + 1e-6, axes, singular / np.sqrt(len(scenes) - 1)


def transform(variant: str, embeddings: dict[str, np.ndarray], block: int,
              corpus_stats: tuple | None = None, pca_dims: int = 256) -> dict[str, np.ndarray]:
    if variant == "shipped":
        return embeddings
    if variant == "x10":
        return {f: 10 * x for f, x in embeddings.items()}
    if variant == "last":
        return {f: x[:, -block:] for f, x in embeddings.items()}
    if variant == "input":
        return {f: x[:, :block] for f, x in embeddings.items()}
    if variant == "task-zscore":
        everything = np.concatenate(list(embeddings.values()))
        mean, std = everything.mean(0), everything.std(0) + 1e-6
        return {f: (x - mean) / std for f, x in embeddings.items()}
    if variant.startswith("corpus-"):
        if corpus_stats is None:
            raise SystemExit(f"{variant} needs --checkpoint and --corpus")
        mean, std, axes, scale = corpus_stats
        if variant == "corpus-zscore":
            return {f: (x - mean) / std for f, x in embeddings.items()}
        return {f: (x - mean) @ axes[:pca_dims].T / (scale[:pca_dims] + 1e-6) for f, x in embeddings.items()}
    raise SystemExit(f"unknown variant {variant!r}; choose from {VARIANTS}")


def heareval_splits(folds: list[str]) -> list[tuple[str, str, list[str]]]:
    """(test, validation, train folds) as heareval's data_splits_from_folds makes them."""
    return [(test, folds[(k + 1) % len(folds)], [f for f in folds if f not in (test, folds[(k + 1) % len(folds)])])
            for k, test in enumerate(folds)]


def probe_score(embeddings: dict, labels: dict, folds: list[str], C: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for test, _, train in heareval_splits(folds):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
        probe.fit(np.concatenate([embeddings[f] for f in train]), sum((labels[f] for f in train), []))
        scores.append(probe.score(embeddings[test], labels[test]))
    return 100 * float(np.mean(scores))


def write_variant(task: Path, target: Path, embeddings: dict, grid: dict) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in task.iterdir():
        if item.is_file() and not item.name.endswith((".embeddings.npy", ".embedding-dimensions.json",
                                                      "task_metadata.json")):
            shutil.copy2(item, target / item.name)
    for fold, x in embeddings.items():
        np.ascontiguousarray(x, dtype=np.float32).tofile(target / f"{fold}.embeddings.npy")
        (target / f"{fold}.embedding-dimensions.json").write_text(json.dumps(list(x.shape)))
    meta = json.loads((task / "task_metadata.json").read_text())
    meta.setdefault("evaluation_params", {})["task_specific_param_grid"] = grid
    (target / "task_metadata.json").write_text(json.dumps(meta, indent=1))


def heareval_score(target: Path, seed: int) -> tuple[float, float]:
    """-> (mean test score %, mean best epoch) of one pinned grid point."""
    log = target / "study.log"
    env = {**os.environ, compat.SEED_ENV: str(seed), "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        status = subprocess.call(compat.command("heareval.predictions.runner", target, "--grid",
                                                "default", "--grid-points", "1"),
                                 stdout=out, stderr=subprocess.STDOUT, env=env)
    if status != 0:
        raise SystemExit(f"heareval failed on {target} (exit {status}); see {log}")
    scores = json.loads((target / "test.predicted-scores.json").read_text())["aggregated_scores"]
    return 100 * scores["test_score_mean"], scores["epoch_mean"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("task", type=Path, help="heareval embeddings folder of one k-fold scene task")
    parser.add_argument("--out", type=Path, required=True, help="work folder for the variants")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 1e-3, 3.2e-3],
                        help="heareval learning rates to pin, one run each")
    parser.add_argument("--hidden-layers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--block", type=int, default=256, help="width of one encoder block")
    parser.add_argument("--seed", type=int, default=0, help="heareval seed offset (compat)")
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the probe")
    parser.add_argument("--checkpoint", help="the model that made the embeddings (corpus-zscore)")
    parser.add_argument("--corpus", help="pretraining audio, as `pretrain --data` (corpus-zscore)")
    parser.add_argument("--corpus-seconds", type=float, default=1.0, help="corpus crop length")
    parser.add_argument("--corpus-crops", type=int, default=512, help="corpus crops to measure")
    parser.add_argument("--pca-dims", type=int, default=256, help="corpus-pca: axes kept")
    parser.add_argument("--jobs", type=int, default=1, help="heareval runs at once")
    args = parser.parse_args()

    folds, embeddings, labels = read_folds(args.task)
    n_train = sum(len(labels[f]) for f in heareval_splits(folds)[0][2])
    print(f"{args.task.name}: {sum(map(len, labels.values()))} clips, {len(folds)} folds, "
          f"{n_train} training clips per split, width {embeddings[folds[0]].shape[1]}")
    corpus_stats = None
    if any(v.startswith("corpus-") for v in args.variants) and args.checkpoint and args.corpus:
        corpus_stats = corpus_scene_stats(args.checkpoint, args.corpus, args.corpus_seconds,
                                          args.corpus_crops)
    runs = []
    for variant in args.variants:
        shaped = transform(variant, embeddings, args.block, corpus_stats, args.pca_dims)
        print(f"{variant}: probe {probe_score(shaped, labels, folds, args.C):.1f} %", flush=True)
        for lr in args.lrs:
            target = args.out / f"{variant}-lr{lr:g}-h{args.hidden_layers}"
            write_variant(args.task, target, shaped, {"lr": [lr], "hidden_layers": [args.hidden_layers]})
            runs.append((variant, lr, target))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda run: heareval_score(run[2], args.seed), runs))
    print("variant, lr: heareval test % (mean best epoch)")
    for (variant, lr, _), (score, epoch) in zip(runs, results):
        print(f"{variant}, {lr:g}: {score:.1f} ({epoch:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
