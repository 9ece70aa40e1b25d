"""A quick linear probe of checkpoints on k-fold scene tasks (prints figures; not heareval).

For each checkpoint and layer option, the scene embeddings (`get_scene_embeddings` at
48 kHz) of every clip of every `presplit_kfold` scene task under --tasks-dir are
standardised and fed to a logistic regression trained on all folds but one and tested
on that one; the score is the mean test accuracy over the folds. It takes minutes on
one CPU core where heareval takes 15-25 minutes per model, so it suits comparing training
steps or layers; the scores to publish come from heareval (`make hear`).

    python studies/fold_probe.py --tasks-dir ../heldout_tasks runs/default/model.pt runs/random-mini.pt
    python studies/fold_probe.py checkpoints/default.pt --tasks-dir ../heldout_tasks --layers concat last 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def kfold_scene_tasks(tasks_dir: Path) -> list[Path]:
    tasks = []
    for meta_file in sorted(tasks_dir.glob("*/task_metadata.json")):
        meta = json.loads(meta_file.read_text())
        if meta["embedding_type"] == "scene" and meta["split_mode"] == "presplit_kfold":
            tasks.append(meta_file.parent)
    return tasks


def fold_accuracy(embeddings: np.ndarray, labels: np.ndarray, folds: np.ndarray, C: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for fold in np.unique(folds):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
        probe.fit(embeddings[folds != fold], labels[folds != fold])
        scores.append(probe.score(embeddings[folds == fold], labels[folds == fold]))
    return float(np.mean(scores))


def task_clips(task: Path, rate: int = 48000):
    """A k-fold scene task's clips at `rate` -> (waveforms, labels, folds)."""
    meta = json.loads((task / "task_metadata.json").read_text())
    wavs, labels, folds = [], [], []
    for fold in meta["splits"]:
        for name, target in json.loads((task / f"{fold}.json").read_text()).items():
            audio, _ = sf.read(str(task / str(rate) / fold / name), dtype="float32")
            wavs.append(torch.from_numpy(audio))
            labels.append(target[0])
            folds.append(fold)
    return wavs, np.array(labels), np.array(folds)


def task_scores(model, tasks: list[Path], C: float, batch: int = 32) -> list[float]:
    from encodecmae_hear import get_scene_embeddings

    out = []
    for task in tasks:
        wavs, labels, folds = task_clips(task)
        embeddings = torch.cat([get_scene_embeddings(torch.stack(wavs[i:i + batch]), model)
                                for i in range(0, len(wavs), batch)]).numpy()
        out.append(fold_accuracy(embeddings, labels, folds, C))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoints load_model reads")
    parser.add_argument("--tasks-dir", required=True, help="folder of HEAR task folders")
    parser.add_argument("--layers", nargs="+", default=["concat"], help="HEAR layer options")
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the probe")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from encodecmae_hear import load_model

    torch.set_num_threads(args.threads)
    tasks = kfold_scene_tasks(Path(args.tasks_dir))
    if not tasks:
        raise SystemExit(f"no presplit_kfold scene task folders under {args.tasks_dir}")
    print("checkpoint, layer: " + ", ".join(t.name for t in tasks) + ", mean (top-1 %)")
    for checkpoint in args.checkpoints:
        for layer in args.layers:
            scores = task_scores(load_model(checkpoint, layer=layer), tasks, args.C)
            print(f"{checkpoint}, {layer}: " + ", ".join(f"{100 * s:.1f}" for s in scores)
                  + f", {100 * np.mean(scores):.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
