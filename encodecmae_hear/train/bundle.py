"""`bundle`: a finished training run -> a small release checkpoint for `load_model`.

    python -m encodecmae_hear bundle runs/default -o checkpoints/default.pt --half \\
        --hardware "2-core x86 CPU"

Takes the run's newest step checkpoint (its provenance holds the training config and
the git commit the run started from), drops the optimizer state and, by default, the
EnCodec tokenizer (only training needs it; the run folder keeps it), and adds what the
run folder knows: steps, audio seen, final losses and the time spent in training steps
(from metrics.jsonl). Refuses unfinished runs unless --allow-unfinished.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from encodecmae_hear.checkpoint import model_from_payload, save_checkpoint, tokenizer_from_payload
from encodecmae_hear.errors import UserError
from encodecmae_hear.hear_options import parse_layer
from encodecmae_hear.train.provenance import base_record
from encodecmae_hear.train.state import latest_checkpoint

FINAL_METRICS = ("loss", "masked_loss", "masked_accuracy", "unmasked_loss", "audio_hours_seen",
                 "skipped_files")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="training run folder (holds step-*.pt and metrics.jsonl)")
    parser.add_argument("-o", "--output", required=True, help="release checkpoint to write")
    parser.add_argument("--half", action="store_true", help="store float16 weights (compute stays float32)")
    parser.add_argument("--keep-tokenizer", action="store_true",
                        help="keep the EnCodec tokenizer (adds ~30 MB; only training needs it)")
    parser.add_argument("--hardware", default="unknown", help="what the run trained on, for the record")
    parser.add_argument("--hear-layer", default=None, metavar="LAYER",
                        help="the layer load_model uses when none is asked for (index, last, "
                             "mean, concat, input+concat); choose it on validation scores")
    parser.add_argument("--hear-layer-reason", default="", help="how the layer was chosen, for the record")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="bundle a run that stopped before its --steps")


def training_summary(metrics_file: Path) -> dict:
    """Seconds spent in training steps (startup excluded) and the last logged metrics."""
    records = []
    if metrics_file.is_file():
        with open(metrics_file) as f:
            records = [json.loads(line) for line in f if line.strip()]
    seconds, previous = 0.0, 0
    for record in records:
        if record.get("steps_per_s"):
            seconds += (record["step"] - previous) / record["steps_per_s"]
        previous = record["step"]
    last = records[-1] if records else {}
    return {"train_seconds": round(seconds, 1),
            "final": {k: last[k] for k in FINAL_METRICS if k in last}}


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    found = latest_checkpoint(run_dir, log=lambda msg: print(msg, file=sys.stderr))
    if found is None:
        raise UserError(f"no readable step checkpoint in {run_dir}")
    path, payload = found
    provenance = dict(payload["provenance"])
    steps, planned = provenance.get("steps"), provenance.get("train_config", {}).get("steps")
    if steps != planned and not args.allow_unfinished:
        raise UserError(f"{path} is at step {steps} of {planned}; finish the run "
                        f"(re-run the same command: it resumes) or pass --allow-unfinished")
    model = model_from_payload(payload, path)
    tokenizer = tokenizer_from_payload(payload, path) if args.keep_tokenizer else None
    provenance.update(training_summary(run_dir / "metrics.jsonl"))
    provenance["hardware"] = args.hardware
    if args.hear_layer is not None:
        try:
            layer = parse_layer(args.hear_layer, model.num_layers)
        except ValueError as err:
            raise UserError(f"--hear-layer: {err}") from None
        provenance["hear_layer"] = {"layer": layer, "reason": args.hear_layer_reason}
    provenance["bundle"] = {**base_record(), "from_step_checkpoint": path.name,
                            "half": args.half, "tokenizer_kept": args.keep_tokenizer}
    save_checkpoint(args.output, model, tokenizer=tokenizer, provenance=provenance, half=args.half)
    size_mb = Path(args.output).stat().st_size / 2**20
    final = provenance["final"]
    print(f"{path} -> {args.output} ({size_mb:.1f} MiB): step {steps}, "
          f"{final.get('audio_hours_seen', 0):.1f} h of audio seen, loss {final.get('loss', float('nan')):.3f}, "
          f"{provenance['train_seconds'] / 3600:.2f} h in training steps")
    return 0
