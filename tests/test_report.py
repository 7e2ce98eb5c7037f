"""The report stage's numbers, on inputs small enough to work out by hand."""

import pytest

from stages import report
from stages.errors import DataError


def test_curves_give_mean_low_and_high_per_epoch_over_the_epochs_every_seed_reached(tmp_path):
    log = tmp_path / "acc.tsv"
    log.write_text("step\tacc\n0\t0.5\n1\t0.75\n")  # DVCLive counts steps from 0
    assert report.read_tsv(log, "acc") == {1: 0.5, 2: 0.75}
    rows = report.curve_rows({"arch": [{1: 0.90, 2: 0.94, 3: 0.95}, {1: 0.80, 2: 0.98}]})
    # Epoch 1: mean (0.90 + 0.80) / 2 = 0.85; epoch 2: (0.94 + 0.98) / 2 = 0.96; epoch 3 only one seed reached.
    assert rows == [
        {"model": "arch", "epoch": 1, "mean": pytest.approx(0.85), "low": 0.80, "high": 0.90, "seeds": 2},
        {"model": "arch", "epoch": 2, "mean": pytest.approx(0.96), "low": 0.94, "high": 0.98, "seeds": 2},
    ]
    with pytest.raises(DataError, match="expected tab-separated columns step and loss"):
        report.read_tsv(log, "loss")


def test_accuracy_rows_carry_our_range_and_the_study_value_as_its_own_series():
    comparison = {"models": {
        "conv3_pool": {"seeds": 3, "parameters": 87_914, "study": {"parameters": 87_914, "test_accuracy": 0.9863},
                       "metrics": {"test_accuracy": {"mean": 0.9836, "min": 0.9810, "max": 0.9866}}},
        "arch": {"seeds": 3, "parameters": 186_218,
                 "metrics": {"test_accuracy": {"mean": 0.99, "min": 0.98, "max": 1.0}}},
    }}  # fmt: skip
    rows = report.accuracy_parameter_rows(comparison)
    seen = [(row["model"], row["series"].split(",")[0], row["test_accuracy"], row["low"], row["high"]) for row in rows]
    assert seen == [
        ("conv3_pool", "this study", 0.9836, 0.9810, 0.9866),
        ("conv3_pool", "published study (one run)", 0.9863, 0.9863, 0.9863),
        ("arch", "this study", 0.99, 0.98, 1.0),
    ]  # fmt: skip


def test_confusion_errors_are_the_off_diagonal_cells_summed_over_seeds():
    seed_1 = "actual,predicted\n3,3\n3,5\n7,1\n"
    seed_2 = "actual,predicted\n3,5\n1,1\n"
    rows = report.confusion_error_rows({"arch": [seed_1, seed_2]}, ["1", "3", "5", "7"])
    counts = {(row["actual"], row["predicted"]): row["count"] for row in rows}
    # 3 read as 5 once per seed; 7 read as 1 once; the diagonal (3,3 and 1,1) is left out; 4 x 3 cells in all.
    assert counts[("3", "5")] == 2 and counts[("7", "1")] == 1
    assert len(counts) == 12 and sum(counts.values()) == 3 and ("3", "3") not in counts
    assert report.to_csv(rows[:1]) == "model,actual,predicted,count\narch,1,3,0\n"
