"""tools/study_estimate.py: the trainings `dvc repro` will run and about how long they take, said first."""

import pytest

from tests.conftest import project_params, run, run_python, set_params
from tools import study_estimate


def test_split_sizes_are_prepares():
    assert study_estimate.split_sizes({"limit": None, "validation_fraction": 0.2}) == (48_000, 12_000)
    assert study_estimate.split_sizes({"limit": 300, "validation_fraction": 0.2}) == (240, 60)


def test_the_estimate_uses_this_machines_history_first_and_the_reference_rate_otherwise():
    trainings = [
        {"model": "a", "epochs": 10, "gflop_per_epoch": 999.0, "key": "a/float32/48000 images"},
        {"model": "b", "epochs": 10, "gflop_per_epoch": 100.0, "key": "b/float32/48000 images"},
    ]
    known = {"a/float32/48000 images": 5.0}
    # a: 10 epochs of 5 s = 50 s (its GFLOP ignored); b: 10 x 100 GFLOP at 50 GFLOP/s = 20 s.
    result = study_estimate.estimate(trainings, known.get, 50.0)
    assert result == {"seconds": 70.0, "from_history": 1, "from_reference": 1}
    assert study_estimate.line(trainings, result, 50.0) == (
        "study: 2 trainings to run, about 1 min 10 s of training here (1 from this machine's past trainings, "
        "1 from the committed run's 50 GFLOP/s); each training prints its own time left as it goes"
    )
    assert study_estimate.line([], {}, 50.0).startswith("study: no training to run")


def test_trainings_to_run_are_every_model_and_seed_or_those_dvc_reports():
    loaded = project_params()
    everything = study_estimate.trainings_to_run(loaded, None)
    assert len(everything) == len(loaded["models"]) * len(loaded["train"]["seeds"])
    conv3_pool = next(training for training in everything if training["stage"] == "train@conv3_pool-1")
    # tests/test_train.py's hand count: conv3_pool costs 916.09 GFLOP per epoch on the full data.
    assert conv3_pool["gflop_per_epoch"] == pytest.approx(916.091904)
    assert conv3_pool["key"] == f"conv3_pool/{loaded['train']['precision']}/48000 images"
    only = study_estimate.trainings_to_run(loaded, {"train@arch-2", "compare"})
    assert [training["stage"] for training in only] == ["train@arch-2"]


def test_a_change_upstream_retrains_everything_and_a_new_seed_list_does_not():
    # As DVC 3.67's `dvc status --json` writes them: a parameter is a changed dep of its params file.
    seeds_only = {"prepare": [{"changed deps": {"params.yaml": {"train.seeds": "modified"}}}],
                  "train@arch-2": [{"changed outs": {"models/arch/seed-2": "deleted"}}]}  # fmt: skip
    assert study_estimate.changed_stages(seeds_only) == {"prepare", "train@arch-2"}
    limit = {"prepare": [{"changed deps": {"params.yaml": {"data.limit": "modified"}}}]}
    assert study_estimate.changed_stages(limit) is None
    both = {"prepare": [{"changed deps": {"params.yaml": {"train.seeds": "modified", "data.limit": "modified"}}}]}
    assert study_estimate.changed_stages(both) is None
    seeds_and_code = {"prepare": [{"changed deps": {"params.yaml": {"train.seeds": "modified"},
                                                    "stages/prepare.py": "modified"}}]}  # fmt: skip
    assert study_estimate.changed_stages(seeds_and_code) is None
    code = {"prepare": [{"changed deps": {"stages/prepare.py": "modified"}}]}
    assert study_estimate.changed_stages(code) is None
    assert study_estimate.changed_stages({"download": ["changed command"]}) is None
    assert study_estimate.changed_stages({"compare": [{"changed deps": {"models": "modified"}}]}) == {"compare"}


@pytest.mark.pipeline
def test_a_project_that_trained_before_estimates_its_new_seeds_from_its_own_history(
    reproduced_project, isolated_environment
):
    project, environment = reproduced_project, isolated_environment
    set_params(project / "params.yaml", {"train.seeds": [1, 2]})
    said = run_python(["-m", "tools.study_estimate"], environment, cwd=project)
    assert said.returncode == 0, said.stderr
    models = len(project_params()["models"])
    # Every training it counts is timed from the first seed's trainings in the template, none from the reference.
    assert said.stdout.startswith(f"study: {models} trainings to run, about "), said.stdout
    assert "from this machine's past trainings)" in said.stdout, said.stdout
    assert "committed run's" not in said.stdout
    run(["dvc", "repro"], project, environment)
    assert run_python(["-m", "tools.study_estimate"], environment, cwd=project).stdout.startswith(
        "study: no training to run"
    )
    # Fewer images: prepare changes, so every training reruns, though `dvc status` names only prepare.
    set_params(project / "params.yaml", {"data.limit": 200})
    said = run_python(["-m", "tools.study_estimate"], environment, cwd=project).stdout
    assert said.startswith(f"study: {2 * models} trainings to run, about "), said
