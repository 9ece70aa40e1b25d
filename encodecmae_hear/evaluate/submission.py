"""Rows in the HEAR leaderboard's own CSV layout (hearbenchmark/hear-leaderboard,
`leaderboard.csv`), so a result can go into a pull request there as it is: `Model`,
`URL`, `Submission Date`, then one column per HEAR task with the score as a fraction (the
mean over heareval seeds). Tasks that were not run stay empty; tasks that are not HEAR's
(our synthetic, held-out and validation suites) have no column.
"""
from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path

from encodecmae_hear.evaluate import results

# HEAR task id -> the leaderboard's column, in the leaderboard's order
COLUMNS = {
    "beehive_states": "Beehive", "beijing_opera": "Beijing Opera", "crema_d": "CREMA-D",
    "dcase2016_task2": "DCASE 2016", "esc50": "ESC-50", "fsd50k": "FSD50K", "gtzan": "GTZAN Genre",
    "gtzan_music_speech": "GTZAN Music/Speech", "gunshot_triangulation": "Gunshot",
    "libricount": "Libricount", "maestro_5h": "Maestro 5h", "mridangam_stroke": "Mridangam Stroke",
    "mridangam_tonic": "Mridangam Tonic", "nsynth_pitch_50h": "NSynth Pitch 50h",
    "nsynth_pitch_5h": "NSynth Pitch 5h", "speech_commands_5h": "Speech commands 5h",
    "speech_commands_full": "Speech commands full", "vocal_imitation": "Vocal Imitation",
    "vox_lingua_top10": "VoxLingua107 top 10",
}
HEADER = ("Model", "URL", "Submission Date", *COLUMNS.values())


def urls(run_dirs) -> dict[str, str]:
    """label -> where its model is published (run.json's hub record), for the URL column."""
    found = {}
    for run_dir in map(Path, run_dirs):
        for run_file in sorted(run_dir.glob(f"*/{results.RUN_FILE}")) + sorted(run_dir.glob(results.RUN_FILE)):
            run = results.read_run(run_file.parent)
            record = run.get("published")
            if isinstance(record, dict) and record.get("repo"):
                url = f"{record.get('endpoint', '').rstrip('/')}/{record['repo']}"
                found[str(run.get("label") or run_file.parent.name)] = url
    return found


def leaderboard_csv(rows: list, model_urls: dict[str, str], date: datetime.date | None = None) -> str | None:
    """The leaderboard rows of every label with at least one HEAR task, or None if none has."""
    scores: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.task in COLUMNS:
            scores.setdefault(row.label, {})[row.task] = row.mean
    if not scores:
        return None
    day = (date or datetime.date.today()).isoformat()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for label, by_task in scores.items():
        writer.writerow([label, model_urls.get(label, ""), day,
                         *(f"{by_task[task]:.4f}" if task in by_task else "" for task in COLUMNS)])
    return buffer.getvalue()
