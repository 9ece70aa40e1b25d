"""A model against a reference, task by task (evaluate/ratios.py, `hear-table --against`):
the ratios, their mean, the ratio of the means and the worst task, worked out by hand."""
import pytest

from encodecmae_hear.cli import main
from encodecmae_hear.evaluate.ratios import task_ratios
from encodecmae_hear.evaluate.results import collect, summarise
from tests.test_results import ESC, FSD, kfold_scores, trainvaltest_scores, write_result


def two_tasks(run_dir):
    # teacher: ESC 0.60, FSD 0.80; student: ESC 0.30, FSD 0.88 (one seed each);
    # other: FSD only, 0.40.
    for label, esc, fsd in (("teacher", 0.60, 0.80), ("student", 0.30, 0.88)):
        write_result(run_dir, label, 0, ESC, kfold_scores([esc, esc]))
        write_result(run_dir, label, 0, FSD, trainvaltest_scores(fsd, "mAP"))
    write_result(run_dir, "other", 0, FSD, trainvaltest_scores(0.40, "mAP"))


def test_ratios_per_task_their_mean_the_ratio_of_means_and_the_worst_task(tmp_path):
    two_tasks(tmp_path)
    kept = {k.label: k for k in task_ratios(summarise(collect(tmp_path), leaderboard={}), "teacher")}
    assert set(kept) == {"student", "other"}
    student = kept["student"]
    by_task = {r.task: r.ratio for r in student.ratios}
    assert by_task["esc50"] == pytest.approx(0.5) and by_task["fsd50k"] == pytest.approx(1.1)
    assert student.mean_ratio == pytest.approx(0.8)               # (0.5 + 1.1) / 2
    assert student.ratio_of_means == pytest.approx(1.18 / 1.40)   # (0.30 + 0.88) / (0.60 + 0.80)
    assert student.worst.task == "esc50"                          # the gain on FSD hides it in a mean
    other = kept["other"]
    assert [r.task for r in other.ratios] == ["fsd50k"] and other.mean_ratio == pytest.approx(0.5)
    assert other.worst.ratio == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no scores of the reference 'nobody'"):
        task_ratios(summarise(collect(tmp_path), leaderboard={}), "nobody")


def test_hear_table_against_a_label_prints_and_writes_the_ratios(tmp_path, capsys):
    two_tasks(tmp_path)
    assert main(["hear-table", "--runs", str(tmp_path), "--no-plot", "--against", "teacher"]) == 0
    text = (tmp_path / "results.ratios.md").read_text()
    assert text in capsys.readouterr().out
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
             for line in text.splitlines() if line.startswith("| ")}
    assert lines["Task"] == ["student", "other"]
    esc = next(v for k, v in lines.items() if "ESC" in k)
    assert esc == ["50.0", "—"]
    assert lines["**Mean of ratios**"] == ["80.0 (2 tasks)", "50.0 (1 task)"]
    assert lines["**Ratio of means**"][0] == f"{100 * 1.18 / 1.40:.1f}"
    assert lines["**Worst**"][0].startswith("50.0 (") and "ESC" in lines["**Worst**"][0]
    assert main(["hear-table", "--runs", str(tmp_path), "--no-plot", "--against", "nobody"]) == 2
