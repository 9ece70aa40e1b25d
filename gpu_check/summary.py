"""summary.md of the GPU check (gpu_check/check.py): its results.json as short Markdown tables."""
from __future__ import annotations


def _cell(value, fmt: str = "{}") -> str:
    return "" if value is None else fmt.format(value)


def _status(stage: dict) -> str:
    line = f"status **{stage.get('status')}**"
    if stage.get("seconds") is not None:
        line += f", {stage['seconds']:.0f} s of {stage.get('allotted_s', '?')} s allotted"
    if stage.get("error"):
        line += f"; {stage['error']}"
    return line + "\n"


def _table(columns: list[str], results: list[dict], cells) -> list[str]:
    """Markdown table lines: a row of `cells(result)` per result, its error (if any) after it."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in results:
        lines.append("| " + " | ".join(cells(r)) + " |" + (f" {r['error']}" if "error" in r else ""))
    return lines


def _percent(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def summary(results: dict) -> str:
    machine, stages = results["machine"], results["stages"]
    lines = [f"# gpu-check ({results['mode']})\n",
             f"{machine.get('device') or 'device unknown'}, torch {machine['torch']} (CUDA "
             f"{machine['cuda']}), {machine['cpus']} CPUs, commit {machine['git_commit']}; "
             f"started {results['started']}, finished {results['finished'] or '(running)'}.\n"]

    embed = stages["embed"]
    lines += ["## 1. HEAR embedding speed\n",
              "`load_model(dtype=...)` + `get_timestamp_embeddings` on one sound (untrained "
              "weights); RTF = audio seconds per second.\n", _status(embed)]
    if embed.get("results"):
        lines += _table(
            ["preset", "frontend", "dtype", "audio s", "RTF", "s", "cosine to fp32 (mean / min)", "peak GiB"],
            embed["results"],
            lambda r: [r["preset"], r["frontend"], r["dtype"], f"{r['audio_s']:g}", _cell(r.get("rtf")),
                       _cell(r.get("seconds")),
                       f"{r['cosine_to_fp32_mean']:.6f} / {r['cosine_to_fp32_min']:.6f}"
                       if "cosine_to_fp32_mean" in r else "", _cell(r.get("peak_memory_gb"))]) + [""]

    on_disk = stages.get("embed_files", {})
    lines += ["## 2. Embedding files to disk\n",
              "`embed FOLDER --out OUT` on 16 kHz WAV files, timestamp embeddings written as "
              ".npy (untrained weights), after a warm-up run. RTF end to end includes the model "
              "load; steady RTF leaves it out; MFU: FLOPs of the window forward at the steady "
              "rate over the device's peak.\n", _status(on_disk)]
    if on_disk.get("results"):
        lines += _table(
            ["preset", "dtype", "files", "audio s", "RTF end to end", "RTF steady", "MFU", "s", "written MiB"],
            on_disk["results"],
            lambda r: [r["preset"], r["dtype"], f"{r.get('count')} x {r.get('clip_s')} s",
                       _cell(r.get("audio_s"), "{:g}"), _cell(r.get("rtf_end_to_end")), _cell(r.get("rtf")),
                       _percent(r.get("mfu"), ".1%"), _cell(r.get("seconds")),
                       _cell(r.get("written_mb"))]) + [""]

    speed = stages["train_speed"]
    lines += ["## 3. Pretraining throughput\n",
              "The train loop's step on a batch already on the device (mel256, mel-kmeans "
              "targets, bf16 autocast, AdamW, clipping), timed after warm-up.\n", _status(speed)]
    if speed.get("results"):
        lines += _table(
            ["preset", "batch x crop", "compile", "steps/s", "samples/s", "MFU", "peak GiB", "warm-up s"],
            speed["results"],
            lambda r: [r["preset"], f"{r['batch']} x {r['crop_s']:g} s", str(r["compile"]),
                       _cell(r.get("steps_per_s")), _cell(r.get("samples_per_s")), _percent(r.get("mfu"), ".0%"),
                       _cell(r.get("peak_memory_gb")), _cell(r.get("warmup_s"))]) + [""]

    run = stages["train_run"]
    lines += ["## 4. Training run (the bundled default's recipe)\n", _status(run)]
    if run.get("command"):
        lines.append(f"`{run['command']}`\n")
    figures = run.get("results") or {}
    if figures:
        data = "generated audio" if run.get("generated_audio") else run.get("data")
        stop = "stopped at the time budget" if run.get("stopped_by_budget") else "finished"
        lines.append(
            f"{figures['steps']} of {run['target_steps']} steps on {data} ({stop}), "
            f"{figures['audio_hours_seen']} h of audio seen; first log after "
            f"{figures['first_log_after_s']} s (start, data, k-means, first steps); median "
            f"{figures['steps_per_s_median']} steps/s, {figures['samples_per_s_median']} samples/s; "
            f"loss {figures['loss_first']} -> {figures['loss_last']}, masked accuracy "
            f"{figures['masked_accuracy_last']:.1%}.")
    if run.get("checkpoint"):
        lines.append(f"Checkpoint: `{run['checkpoint']}` ({run['checkpoint_mb']} MiB, float16).")
    lines.append("")

    distill = stages.get("distill_run", {})
    lines += ["## 5. Student distillation runs (the bundled default as teacher)\n", _status(distill)]
    if distill.get("results"):
        data = "generated audio" if distill.get("generated_audio") else distill.get("data")
        lines += [f"On {data}; target {distill['target_steps']} steps each, side by side.\n"]
        lines += _table(["student", "steps", "stopped by budget", "steps/s", "samples/s", "audio h",
                         "loss first -> last", "cosine to teacher", "MiB"], distill["results"], _distill_cells)
    return "\n".join(lines) + "\n"


def _distill_cells(r: dict) -> list[str]:
    f = r.get("figures") or {}
    return [r["preset"], _cell(f.get("steps")), str(r.get("stopped_by_budget")),
            _cell(f.get("steps_per_s_median")), _cell(f.get("samples_per_s_median")),
            _cell(f.get("audio_hours_seen")), f"{f['loss_first']} -> {f['loss_last']}" if f else "",
            _cell(f.get("cosine_last")), _cell(r.get("checkpoint_mb"))]
