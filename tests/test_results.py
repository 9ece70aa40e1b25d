"""HEAR result tables: heareval score files, mean ± std over seeds, normalisation, outputs."""
import argparse
import csv
import json
import math
import struct

import pytest

from encodecmae_hear.cli import main
from encodecmae_hear.evaluate import report as results_report
from encodecmae_hear.evaluate import results
from encodecmae_hear.evaluate import table as hear_table
from encodecmae_hear.evaluate.results import OVERALL, Best, collect, read_scores, summarise
from encodecmae_hear.evaluate.suites import load_suite

HPARAMS = {"batch_size": 1024, "check_val_every_n_epoch": 3, "dropout": 0.1,
           "hidden_dim": 1024, "hidden_layers": 1, "lr": 0.001, "max_epochs": 500,
           "patience": 20}


def scene_entry(score, metric="top1_acc"):
    """One test split's results as heareval logs them for a scene task."""
    others = {"top1_acc": score * 0.9, "mAP": score * 0.8, "d_prime": 2.5, "aucroc": 0.9}
    entry = {"test_loss": 0.7, "test_score": score, f"test_{metric}": score}
    entry.update({f"test_{k}": v for k, v in others.items() if k != metric})
    entry.update({"validation_score": score + 0.01, "epoch": 42, "time_in_min": 0.3})
    return entry


def trainvaltest_scores(score, metric="top1_acc"):
    return {"test": scene_entry(score, metric), "hparams": HPARAMS, "postprocessing": [],
            "score_mode": "max", "embedding_path": "embeddings/x/task"}


def kfold_scores(fold_scores, metric="top1_acc"):
    """Per-fold entries plus aggregated_scores: the mean and sample std of every key over
    the folds, as heareval's aggregate_test_results computes them with pandas."""
    folds = {f"fold{i:02d}": scene_entry(s, metric) for i, s in enumerate(fold_scores)}
    aggregated = {}
    for key in next(iter(folds.values())):
        values = [entry[key] for entry in folds.values()]
        mean = sum(values) / len(values)
        aggregated[f"{key}_mean"] = mean
        aggregated[f"{key}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values)
                                             / (len(values) - 1))
    return {**folds, "aggregated_scores": aggregated, "hparams": HPARAMS,
            "postprocessing": [], "score_mode": "max", "embedding_path": "embeddings/x/t"}


def event_scores(fms):
    """dcase2016_task2-like: sed_eval sub-scores and the best postprocessing."""
    test = {"test_loss": 0.1, "test_score": fms, "test_event_onset_200ms_fms": fms,
            "test_event_onset_200ms_fms_f_measure": fms,
            "test_event_onset_200ms_fms_precision": 0.8,
            "test_event_onset_200ms_fms_recall": 0.7, "test_segment_1s_er": 0.4,
            "test_segment_1s_er_error_rate": 0.4, "validation_score": fms,
            "epoch": 20, "time_in_min": 1.5}
    return {"test": test, "hparams": HPARAMS,
            "postprocessing": [["median_filter_ms", 250], ["min_duration", 125]],
            "score_mode": "max", "embedding_path": "embeddings/x/dcase"}


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4))
    return path


def write_result(run_dir, label, seed, folder, data):
    return write_json(run_dir / label / f"seed-{seed}" / folder / results.SCORES_FILE, data)


def write_run(run_dir, label, model, options=None):
    write_json(run_dir / label / "run.json", {"label": label, "model": model,
                                              "options": options or {},
                                              "module": "encodecmae_hear.hear"})


ESC, FSD, LIBRI, DCASE = ("esc50-v2.0.0-full", "fsd50k-v1.0-full",
                          "libricount-v1.0.0-hear2021-full", "dcase2016_task2-hear2021-full")
LEADERBOARD = {"esc50": Best("esc50", "top1_acc", 0.966, "CED-base", "SPEC"),
               "fsd50k": Best("fsd50k", "mAP", 0.655, "CED-base", "SPEC")}


# ---------------------------------------------------------------- score files

def test_trainvaltest_file(tmp_path):
    path = write_json(tmp_path / "fsd" / results.SCORES_FILE, trainvaltest_scores(0.41, "mAP"))
    assert read_scores(path, "mAP") == ("mAP", 0.41, 1, None)
    assert read_scores(path) == ("mAP", 0.41, 1, None)        # inferred from the keys


def test_kfold_file_uses_heareval_aggregate(tmp_path):
    path = write_json(tmp_path / "esc" / results.SCORES_FILE,
                      kfold_scores([0.80, 0.84, 0.82, 0.86, 0.78]))
    metric, score, folds, fold_std = read_scores(path, "top1_acc")
    assert (metric, folds) == ("top1_acc", 5)
    assert score == pytest.approx(0.82)
    # sample std of 0.80, 0.84, 0.82, 0.86, 0.78 around 0.82: sqrt(0.004 / 4)
    assert fold_std == pytest.approx(math.sqrt(0.004 / 4))
    assert read_scores(path)[0] == "top1_acc"                  # inferred from the aggregate
    mAP = write_json(tmp_path / "vi" / results.SCORES_FILE, kfold_scores([0.2, 0.3], "mAP"))
    assert read_scores(mAP) == ("mAP", pytest.approx(0.25), 2, pytest.approx(0.0707106781))


def test_event_file_metric_from_task_metadata(tmp_path):
    folder = tmp_path / DCASE
    path = write_json(folder / results.SCORES_FILE, event_scores(0.71))
    write_json(folder / "task_metadata.json",
               {"task_name": "dcase2016_task2", "embedding_type": "event",
                "evaluation": ["event_onset_200ms_fms", "segment_1s_er"]})
    assert read_scores(path) == ("event_onset_200ms_fms", 0.71, 1, None)


def test_an_event_model_that_detects_nothing_scores_zero_not_nan(tmp_path):
    # sed_eval's precision is 0/0 when nothing is detected; heareval then logs NaN.
    def scores(recall, fms):
        test = {"test_score": fms, "test_event_onset_200ms_fms": fms,
                "test_event_onset_200ms_fms_recall": recall, "test_segment_1s_er": 1.0}
        return {"test": test, "validation_score": 0.1}
    silent = write_json(tmp_path / "a" / results.SCORES_FILE, scores(0.0, float("nan")))
    assert read_scores(silent, "event_onset_200ms_fms")[1] == 0.0
    broken = write_json(tmp_path / "b" / results.SCORES_FILE, scores(0.5, float("nan")))
    assert math.isnan(read_scores(broken, "event_onset_200ms_fms")[1])  # other NaNs stay visible


def test_primary_score_disagreeing_with_metric_is_an_error(tmp_path):
    path = write_json(tmp_path / "t" / results.SCORES_FILE, trainvaltest_scores(0.5, "mAP"))
    with pytest.raises(ValueError, match="primary metric is not 'top1_acc'"):
        read_scores(path, "top1_acc")
    bad = write_json(tmp_path / "u" / results.SCORES_FILE, {"hparams": {}})
    with pytest.raises(ValueError, match="no test results"):
        read_scores(bad)


# ---------------------------------------------------------------- table maths

def test_mean_std_by_hand():
    assert results.mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1414213562))
    assert results.mean_std([0.3]) == (0.3, 0.0)
    # 0.2, 0.4, 0.9: mean 0.5, deviations -0.3, -0.1, 0.4 -> sqrt(0.26 / 2)
    assert results.mean_std([0.2, 0.4, 0.9]) == pytest.approx((0.5, math.sqrt(0.13)))


@pytest.fixture()
def two_models(tmp_path):
    """Model A: 2 seeds on ESC-50 (k-fold), FSD50K, LibriCount; seed 2 lacks LibriCount.
    Model B: 1 seed, ESC-50 only, in a second results folder."""
    run_a, run_b = tmp_path / "run_a", tmp_path / "run_b"
    write_run(run_a, "A", "checkpoints/a.pt", {"layer": 8})
    write_result(run_a, "A", 1, ESC, kfold_scores([0.5, 0.5, 0.5]))
    write_result(run_a, "A", 2, ESC, kfold_scores([0.6, 0.7, 0.8]))
    write_result(run_a, "A", 1, FSD, trainvaltest_scores(0.30, "mAP"))
    write_result(run_a, "A", 2, FSD, trainvaltest_scores(0.40, "mAP"))
    write_result(run_a, "A", 1, LIBRI, kfold_scores([0.6, 0.6]))
    (run_a / "A" / "seed-2" / LIBRI).mkdir(parents=True)        # started, no scores yet
    write_run(run_b, "B", "checkpoints/b.pt")
    write_result(run_b, "B", 7, ESC, kfold_scores([0.9, 0.8, 0.7]))
    return run_a, run_b


def test_collect_reads_layout_and_run_json(two_models):
    run_a, run_b = two_models
    records = collect(run_a)
    assert sorted((r.label, r.seed, r.task) for r in records) == [
        ("A", 1, "esc50"), ("A", 1, "fsd50k"), ("A", 1, "libricount"),
        ("A", 2, "esc50"), ("A", 2, "fsd50k")]
    esc = next(r for r in records if r.task == "esc50" and r.seed == 2)
    assert (esc.folder, esc.metric, esc.folds, esc.model) == (ESC, "top1_acc", 3,
                                                              "checkpoints/a.pt")
    assert esc.score == pytest.approx(0.7)
    assert esc.options == {"layer": 8}
    # one label folder given directly works too
    assert collect(run_b / "B") == collect(run_b)


def test_summarise_merges_models_and_normalises(two_models):
    run_a, run_b = two_models
    rows = summarise(collect(run_a) + collect(run_b), leaderboard=LEADERBOARD)
    cell = {(r.task, r.label): r for r in rows}
    # ESC-50, A: seeds 0.5 and 0.7 -> 0.6 ± 0.1414; normalised 0.6 / 0.966
    esc_a = cell[("esc50", "A")]
    assert (esc_a.mean, esc_a.std) == pytest.approx((0.6, 0.1414213562))
    assert esc_a.n_seeds == 2 and esc_a.seeds == (1, 2)
    assert esc_a.normalised == pytest.approx(0.6 / 0.966)
    assert esc_a.best == 0.966 and esc_a.best_model == "CED-base"
    # ESC-50, B: one seed 0.8 -> std 0
    esc_b = cell[("esc50", "B")]
    assert (esc_b.mean, esc_b.std, esc_b.n_seeds) == (pytest.approx(0.8), 0.0, 1)
    assert esc_b.model == "checkpoints/b.pt"
    # FSD50K, A: 0.30, 0.40 -> 0.35 ± 0.0707; normalised 0.35 / 0.655
    fsd = cell[("fsd50k", "A")]
    assert (fsd.mean, fsd.std) == pytest.approx((0.35, 0.0707106781))
    assert fsd.normalised == pytest.approx(0.35 / 0.655)
    # LibriCount: one seed present, no leaderboard best
    libri = cell[("libricount", "A")]
    assert (libri.mean, libri.std, libri.n_seeds) == (pytest.approx(0.6), 0.0, 1)
    assert libri.best is None and libri.normalised is None
    assert ("fsd50k", "B") not in cell
    # overall: mean over the tasks present for each label
    all_a, all_b = cell[(OVERALL, "A")], cell[(OVERALL, "B")]
    assert all_a.mean == pytest.approx((0.6 + 0.35 + 0.6) / 3) and all_a.n_tasks == 3
    assert all_a.normalised == pytest.approx((0.6 / 0.966 + 0.35 / 0.655) / 2)
    assert all_a.n_normalised == 2
    assert all_b.mean == pytest.approx(0.8) and all_b.n_tasks == 1
    assert all_b.normalised == pytest.approx(0.8 / 0.966)
    assert [r.task for r in rows] == ["esc50", "esc50", "fsd50k", "libricount",
                                      OVERALL, OVERALL]


def test_summarise_with_a_suite_and_the_bundled_leaderboard(two_models):
    run_a, _ = two_models
    rows = summarise(collect(run_a), tasks=load_suite("paper6"))
    assert [r.task for r in rows] == ["fsd50k", "esc50", OVERALL]   # paper6 order
    overall = rows[-1]
    assert overall.mean == pytest.approx((0.35 + 0.6) / 2) and overall.n_tasks == 2
    assert rows[1].best == pytest.approx(0.966)                      # evaluate/leaderboard.csv


def test_duplicate_results_are_an_error(two_models, tmp_path):
    run_a, _ = two_models
    with pytest.raises(ValueError, match="two results for label 'A', seed 1, task esc50"):
        summarise(collect(run_a) + collect(run_a))


def test_bundled_leaderboard():
    board = results.load_leaderboard()
    assert {k: (b.metric, b.best) for k, b in board.items()} == {
        "esc50": ("top1_acc", 0.966), "fsd50k": ("mAP", 0.655),
        "speech_commands_full": ("top1_acc", 0.978), "crema_d": ("top1_acc", 0.752),
        "nsynth_pitch_50h": ("pitch_acc", 0.900),
        "dcase2016_task2": ("event_onset_200ms_fms", 0.925)}
    assert board["nsynth_pitch_50h"].model == "CREPE"
    assert board["dcase2016_task2"].model == "PaSST"
    assert all("hearbenchmark.com" in b.source for b in board.values())


# ---------------------------------------------------------------- outputs

def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_tables_and_plot_files(two_models, tmp_path):
    run_a, run_b = two_models
    rows = summarise(collect(run_a) + collect(run_b), leaderboard=LEADERBOARD)
    out = tmp_path / "table"
    paths = results_report.write_tables(rows, out)
    assert set(paths) == {"markdown", "csv"}
    text = paths["markdown"].read_text()
    assert "| Task | Metric | Best | A | B |" in text
    assert "| ESC-50 | top1_acc | 96.60 (CED-base) | 60.00 ± 14.14 | 80.00 ± 0.00 |" in text
    assert "| LibriCount | top1_acc |  | 60.00 ± 0.00 (n=1) | — |" in text
    assert "| **Mean** |  |  | 51.67 (3 tasks) | 80.00 (1 task) |" in text
    assert "| ESC-50 | 0.621 | 0.828 |" in text
    with open(paths["csv"], newline="") as file:
        table = list(csv.DictReader(file))
    esc_a = next(r for r in table if r["task"] == "esc50" and r["label"] == "A")
    assert float(esc_a["mean"]) == pytest.approx(0.6)
    assert float(esc_a["std"]) == pytest.approx(0.1414213562)
    assert esc_a["seeds"] == "1 2" and esc_a["model"] == "checkpoints/a.pt"
    assert float(esc_a["normalised"]) == pytest.approx(0.6 / 0.966)
    assert [r["task"] for r in table].count(OVERALL) == 2

    png = results_report.plot(rows, out / "results.png")
    width, height = results_report.figure_size(n_tasks=3, n_labels=2)
    assert png_size(png) == (round(width * results.DPI), round(height * results.DPI))
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.md",
                                                     "results.png"]   # no temp files


def test_hear_table_command(two_models, tmp_path, capsys):
    run_a, run_b = two_models
    parser = argparse.ArgumentParser()
    hear_table.add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args(["--runs", str(run_a), str(run_b), "--out", str(out),
                              "--suite", "hear18"])
    assert hear_table.run(args) == 0
    printed = capsys.readouterr()
    assert "| ESC-50 |" in printed.out and "no results for 15 task(s)" in printed.err
    assert png_size(out / "results.png")[1] == 450
    assert main(["hear-table", "--runs", str(tmp_path / "empty_or_none")]) == 2
    assert main(["hear-table", "--runs", str(run_a), "--suite", "nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert hear_table.run(parser.parse_args(["--runs", str(tmp_path / "empty")])) == 1


def test_training_seeds_pool_into_one_row_per_recipe(tmp_path, capsys):
    """Two models trained with seeds 1 and 2, each scored over heareval seeds 0 and 1, and
    a label without a training seed: the recipe's cell is mean ± std over training seeds."""
    run = tmp_path / "ablation"
    scores = {("mel-seed1", 0): 0.50, ("mel-seed1", 1): 0.70,   # model mean 0.60
              ("mel-seed2", 0): 0.80, ("mel-seed2", 1): 0.80,   # model mean 0.80
              ("random", 0): 0.40, ("random", 1): 0.60}
    for (label, seed), score in scores.items():
        write_result(run, label, seed, ESC, kfold_scores([score - 0.01, score + 0.01]))
        write_run(run, label, f"runs/{label}.pt")
    out = tmp_path / "pooled"
    assert main(["hear-table", "--runs", str(run), "--by-training-seed", "--out", str(out),
                 "--stem", "pooled", "--no-plot"]) == 0
    text = (out / "pooled.md").read_text()
    assert "| Task | Metric | Best | mel | random |" in text      # first appearance order
    # mel: mean(0.6, 0.8) = 0.7, sample std = sqrt(2 * 0.1^2 / 1) = 0.1414
    assert "| ESC-50 | top1_acc | 96.60 (CED-base) | 70.00 ± 14.14 | 50.00 ± 14.14 |" in text
    assert "Training seeds pooled" in text
    assert "- `mel`: model `runs/mel-seed1.pt, runs/mel-seed2.pt`, options `{}`, seeds 1, 2" \
        in text
    with open(out / "pooled.csv", newline="") as file:
        mel = next(r for r in csv.DictReader(file) if r["label"] == "mel" and r["task"] == "esc50")
    assert [float(s) for s in mel["scores"].split()] == pytest.approx([0.6, 0.8])
    assert "pooled.md" in capsys.readouterr().out

    # without the flag every trained model keeps its own column
    assert main(["hear-table", "--runs", str(run), "--out", str(tmp_path / "plain"),
                 "--no-plot"]) == 0
    assert "| mel-seed1 | mel-seed2 | random |" in (tmp_path / "plain" / "results.md").read_text()


# ---------------------------------------------------------------- leaderboard rows

def test_hear_table_writes_rows_in_the_hear_leaderboards_layout(tmp_path, capsys):
    run_dir = tmp_path / "runs"
    write_run(run_dir, "ours", "/cache/mel256-ec-base_st.pt")
    record = {"repo": "lpepino/encodecmae-v2", "file": "mel256-ec-base_st.pt", "endpoint": "http://hub.test"}
    run = json.loads((run_dir / "ours" / "run.json").read_text())
    write_json(run_dir / "ours" / "run.json", {**run, "published": record})
    for seed, (esc, fsd) in enumerate([(0.80, 0.40), (0.90, 0.50)]):
        write_result(run_dir, "ours", seed, ESC, kfold_scores([esc, esc]))
        write_result(run_dir, "ours", seed, FSD, trainvaltest_scores(fsd, "mAP"))
    assert main(["hear-table", "--runs", str(run_dir), "--no-plot"]) == 0
    with open(run_dir / "results.leaderboard.csv", newline="") as f:
        header, row = list(csv.reader(f))
    assert header[:3] == ["Model", "URL", "Submission Date"] and len(header) == 3 + 19
    assert header[3] == "Beehive" and header[-1] == "VoxLingua107 top 10"
    cells = dict(zip(header, row))
    assert cells["Model"] == "ours" and cells["URL"] == "http://hub.test/lpepino/encodecmae-v2"
    assert float(cells["ESC-50"]) == pytest.approx(0.85) and float(cells["FSD50K"]) == pytest.approx(0.45)
    assert cells["CREMA-D"] == "" and cells["Beehive"] == ""  # not run: left empty


def test_no_leaderboard_file_when_no_hear_task_was_run(tmp_path):
    run_dir = tmp_path / "runs"
    write_result(run_dir, "ours", 0, "synthetic_scene_kfold", kfold_scores([0.5, 0.6]))
    assert main(["hear-table", "--runs", str(run_dir), "--no-plot"]) == 0
    assert not (run_dir / "results.leaderboard.csv").exists()


def test_the_table_names_each_labels_worst_task(tmp_path):
    run_dir = tmp_path / "runs"
    write_result(run_dir, "a", 0, ESC, kfold_scores([0.9, 0.9]))
    write_result(run_dir, "a", 0, FSD, trainvaltest_scores(0.3, "mAP"))
    write_result(run_dir, "b", 0, ESC, kfold_scores([0.2, 0.2]))
    write_result(run_dir, "b", 0, FSD, trainvaltest_scores(0.6, "mAP"))
    assert main(["hear-table", "--runs", str(run_dir), "--no-plot"]) == 0
    worst_line = next(line for line in (run_dir / "results.md").read_text().splitlines()
                      if line.startswith("| **Worst**"))
    cells = [c.strip() for c in worst_line.strip("|").split("|")]
    assert cells[3].startswith("30.00 (") and "FSD50K" in cells[3]
    assert cells[4].startswith("20.00 (") and "ESC" in cells[4]
