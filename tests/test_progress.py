"""A training says how long it will take and, after every epoch, how long is left (stages/progress.py)."""

import re

import pytest

from stages import progress
from tests.conftest import run, set_params


@pytest.mark.parametrize(
    ("seconds", "words"), [(0.4, "0 s"), (45, "45 s"), (185, "3 min 05 s"), (3725, "1 h 02 min"), (-3, "0 s")]
)
def test_durations_read_as_a_person_would_say_them(seconds, words):
    assert progress.duration(seconds) == words


def test_time_left_is_the_median_epoch_times_the_epochs_left():
    # Epochs of 30 s (tracing), 10 s and 12 s: the median is 12 s, and 7 epochs are left: 84 s.
    assert progress.time_left([30.0, 10.0, 12.0], 7) == 84.0
    assert progress.time_left([10.0], 0) == 0.0


def test_history_survives_a_missing_or_damaged_file_and_keeps_other_models(tmp_path):
    history = progress.History(tmp_path / "epoch-seconds.json")
    assert history.seconds_per_epoch("arch/float32/48000 images") is None
    history.record("arch/float32/48000 images", 12.3456)
    history.record("conv3_pool/float32/48000 images", 8.0)
    assert history.seconds_per_epoch("arch/float32/48000 images") == 12.346
    (tmp_path / "epoch-seconds.json").write_text('{"arch/float32/48000 ima')  # cut short by a full disk, say
    assert history.seconds_per_epoch("arch/float32/48000 images") is None
    history.record("arch/float32/48000 images", 5)  # and the next training starts the record again
    assert history.seconds_per_epoch("arch/float32/48000 images") == 5.0


def test_the_starting_line_gives_the_estimate_or_says_why_there_is_none():
    assert progress.starting_line("train@arch-1", 10, 12.0) == (
        "train@arch-1: about 2 min 00 s for 10 epochs (from this machine's last training of it, 12 s per epoch)"
    )
    assert progress.starting_line("train@arch-1", 10, None) == (
        "train@arch-1: no earlier training of this model here to estimate from; the time left follows each epoch"
    )


@pytest.mark.pipeline
def test_a_training_estimates_from_the_last_one_and_counts_down(reproduced_project, isolated_environment):
    project, environment = reproduced_project, isolated_environment
    set_params(project / "params.yaml", {"train.epochs": 3})
    (project / ".dvc/tmp/checkpoints/epoch-seconds.json").unlink(missing_ok=True)  # the template's own run
    first = run(["dvc", "repro", "train@conv3_pool-1"], project, environment).stdout
    assert "train@conv3_pool-1: no earlier training of this model here to estimate from" in first
    for line in ("epoch 1/3 in [0-9]+ s, about [0-9]+ s left", "epoch 2/3 in [0-9]+ s, about [0-9]+ s left",
                 "epoch 3/3 in [0-9]+ s, done"):  # fmt: skip
        assert re.search(rf"train@conv3_pool-1: {line}", first), first
    again = run(["dvc", "repro", "-f", "train@conv3_pool-1"], project, environment).stdout
    assert re.search(r"train@conv3_pool-1: about [0-9]+ s for 3 epochs \(from this machine's last training of it, "
                     r"[0-9]+ s per epoch\)", again), again  # fmt: skip
