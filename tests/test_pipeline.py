"""The real pipeline, end to end, on a tiny configuration in a fresh git + DVC repository."""

import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run, set_params

MODELS = ("conv3_pool", "conv5_pool", "conv7_pool", "conv3_dropout", "arch")
ALL_STAGES = {
    "download",
    "prepare",
    "compare",
    *(f"{stage}@{model}" for stage in ("train", "evaluate") for model in MODELS),
}


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
    changed = {f"{path}:{key}" for path, metrics in diff.items() for key in metrics}
    assert changed and all("/arch" in change or change.endswith(".arch") for change in changed), changed
    assert "metrics/test_accuracy.json:test_accuracy.arch" in changed
    assert (
        diff["metrics/train/arch/metrics.json"]["parameters"]["new"]
        != diff["metrics/train/arch/metrics.json"]["parameters"]["old"]
    )

    plots = json.loads(run(["dvc", "plots", "show", "--json"], tiny_project, environment).stdout)
    assert {
        "conv3_pool loss per epoch",
        "arch accuracy per epoch",
        "plots/confusion/arch.csv",
        "plots/weights/conv7_pool.png",
    } <= set(plots["data"])
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
    assert (
        "train: error: model 'conv3_pool', layer 4 (conv): conv window 9x9 is larger than its 1x1 input "
        "feature map; use a smaller kernel or padding 'same'"
    ) in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tiny_project / "models/conv3_pool").exists()


def experiments_by_kernel(project, environment) -> dict[int, dict]:
    """From `dvc exp show --json`: each experiment's arch.kernel -> its metrics, by file."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, environment).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment["revs"]:
                data = revision["data"]
                kernel = data["params"]["params.yaml"]["data"]["arch"]["kernel"]
                found[kernel] = {path: value["data"] for path, value in data["metrics"].items()}
    return found


@pytest.mark.pipeline
def test_queued_sweep_runs_only_the_arch_stages(reproduced_project, isolated_environment):
    environment = isolated_environment
    tiny_project = reproduced_project

    run(["dvc", "exp", "run", "--queue", "-S", "arch.kernel=2,5"], tiny_project, environment)
    run(["dvc", "queue", "start", "-j", "2"], tiny_project, environment)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], tiny_project, environment).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status

    names = re.findall(r"^\w+\s+(\S+)\s+.*Success", status, flags=re.MULTILINE)
    for name in names:
        log = run(["dvc", "queue", "logs", name], tiny_project, environment).stdout
        assert stages_run(log) == {"train@arch", "evaluate@arch", "compare"}, log
        assert "Stage 'train@conv3_dropout' didn't change, skipping" in log

    experiments = experiments_by_kernel(tiny_project, environment)
    assert sorted(experiments) == [2, 5]
    arch_parameters = {
        kernel: metrics["metrics/train/arch/metrics.json"]["parameters"] for kernel, metrics in experiments.items()
    }
    assert arch_parameters[2] != arch_parameters[5]
    study_accuracy = {
        kernel: metrics["metrics/test_accuracy.json"]["test_accuracy"]["conv3_pool"]
        for kernel, metrics in experiments.items()
    }
    assert study_accuracy[2] == study_accuracy[5]


FASHION_MNIST_DIRECTORY = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.pipeline
@pytest.mark.skipif(not FASHION_MNIST_DIRECTORY.is_dir(), reason="needs Debian's package dataset-fashion-mnist")
def test_fashion_mnist_through_params_only(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"data.source": "idx_dir", "data.idx_dir": str(FASHION_MNIST_DIRECTORY)})
    run(["dvc", "repro", "evaluate@arch"], tiny_project, isolated_environment)
    confusion = (tiny_project / "plots/confusion/arch.csv").read_text().splitlines()
    fashion_classes = {
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    }
    assert confusion[1].split(",")[0] == "Ankle boot"  # Fashion-MNIST's first test image
    assert {row.split(",")[0] for row in confusion[1:]} <= fashion_classes
    samples = json.loads((tiny_project / "metrics/predictions/arch.json").read_text())["samples"]
    assert {sample["label"] for sample in samples} <= fashion_classes
    predicted = run(
        [sys.executable, "-m", "stages.predict", "--model", "arch", "--test-index", "0"],
        tiny_project,
        isolated_environment,
    ).stdout
    assert predicted.startswith("test image 0 (true: Ankle boot): ")
    assert len([name for name in fashion_classes if name in predicted.split("): ")[1]]) == 3
