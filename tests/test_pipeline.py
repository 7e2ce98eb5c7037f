"""The real pipeline, end to end, on a tiny configuration in a fresh git + DVC repository."""

import json
import re

import pytest
import yaml

from tests.conftest import run

MODELS = ("conv3_pool", "conv5_pool", "conv7_pool", "conv3_dropout", "arch")
ALL_STAGES = {"download", "prepare", "compare", *(f"{stage}@{model}" for stage in ("train", "evaluate")
                                                   for model in MODELS)}


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.pipeline
def test_repro_then_experiment_reruns_only_what_changed(tiny_project, isolated_environment):
    environment = isolated_environment
    first = run(["dvc", "repro"], tiny_project, environment)
    assert stages_run(first.stdout) == ALL_STAGES

    comparison = json.loads((tiny_project / "metrics/comparison.json").read_text())
    assert sorted(comparison) == sorted(MODELS)
    assert comparison["conv3_dropout"]["parameters"] == 1_562_474
    assert "study" in comparison["conv3_pool"] and "study" not in comparison["arch"]
    for model in MODELS:
        assert 0.0 <= comparison[model]["test_accuracy"] <= 1.0
        history = (tiny_project / f"metrics/train/{model}/plots/metrics/eval/loss.tsv").read_text().splitlines()
        assert history[0] == "step\tloss" and len(history) == 2  # one epoch
        assert (tiny_project / f"plots/weights/{model}.png").read_bytes().startswith(b"\x89PNG")
        confusion = (tiny_project / f"plots/confusion/{model}.csv").read_text().splitlines()
        assert confusion[0] == "actual,predicted" and len(confusion) == 301
    assert "| **conv3_pool** |" in (tiny_project / "metrics/comparison.md").read_text()

    # Data and models live in the DVC cache, not in git: nothing generated is left untracked.
    run(["git", "add", "-A"], tiny_project, environment)
    tracked = run(["git", "ls-files"], tiny_project, environment).stdout.split()
    assert not [path for path in tracked if path.startswith(("data/", "models/"))]
    run(["git", "commit", "-qm", "tiny run"], tiny_project, environment)

    second = run(["dvc", "repro"], tiny_project, environment)
    assert stages_run(second.stdout) == set()

    experiment = run(["dvc", "exp", "run", "-S", "arch.kernel=5"], tiny_project, environment)
    assert stages_run(experiment.stdout) == {"train@arch", "evaluate@arch", "compare"}
    spec = json.loads((tiny_project / "models/arch/spec.json").read_text())
    assert spec["architecture"]["kernel"] == 5

    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], tiny_project, environment).stdout)
    changed = {path for path, metrics in diff.items() if metrics}
    assert changed and all("/arch" in path for path in changed)
    assert diff["metrics/train/arch/metrics.json"]["parameters"]["new"] != \
        diff["metrics/train/arch/metrics.json"]["parameters"]["old"]

    plots = json.loads(run(["dvc", "plots", "show", "--json"], tiny_project, environment).stdout)
    assert {"conv3_pool loss per epoch", "arch accuracy per epoch", "plots/confusion/arch.csv",
            "plots/weights/conv7_pool.png"} <= set(plots["data"])
    assert not plots.get("errors")


@pytest.mark.pipeline
def test_impossible_kernel_stops_before_training_and_names_the_layer(tiny_project, isolated_environment):
    params_path = tiny_project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["architectures"]["conv3_pool"]["kernel"] = 9
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(["dvc", "repro", "train@conv3_pool"], tiny_project, isolated_environment, check=False)
    assert failed.returncode != 0
    # 28 -> conv 9x9 -> 20 -> pool -> 10 -> conv 9x9 -> 2 -> pool -> 1: the third conv cannot fit.
    assert ("train: error: model 'conv3_pool', layer 4 (conv): conv window 9x9 is larger than its 1x1 input "
            "feature map; use a smaller kernel or padding 'same'") in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tiny_project / "models/conv3_pool").exists()
