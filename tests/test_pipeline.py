"""The real pipeline, end to end, on a tiny configuration in a fresh git + DVC repository."""

import ast
import json
import re
import sys
import time

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, project_params, run, set_params

MODELS = tuple(project_params()["models"])


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def pairs(seeds, models=MODELS) -> set[str]:
    return {f"{stage}@{model}-{seed}" for stage in ("train", "evaluate") for model in models for seed in seeds}


def test_the_model_registry_names_exactly_the_models_in_params():
    artifacts = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["artifacts"]
    assert sorted(artifacts) == sorted(name.replace("_", "-") for name in MODELS)
    assert all(artifacts[name.replace("_", "-")]["path"] == f"models/{name}" for name in MODELS)


def test_two_seeds_give_one_stage_per_model_and_seed(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"train.seeds": [1, 2]})
    listed = run(["dvc", "stage", "list", "--name-only"], tiny_project, isolated_environment).stdout.split()
    assert set(listed) == {"download", "prepare", "compare", "report"} | pairs([1, 2])


@pytest.mark.pipeline
def test_repro_then_experiment_reruns_only_what_changed(reproduced_template, reproduced_project, isolated_environment):
    environment, tiny_project = isolated_environment, reproduced_project
    # The fixture ran the first `dvc repro` of a fresh project and committed everything it made.
    first = (reproduced_template.parent / "first-repro.log").read_text()
    assert stages_run(first) == {"download", "prepare", "compare", "report"} | pairs([1])
    assert "train@arch-1: 467,818 parameters, " in first and " GFLOP per epoch (limit 100,000)" in first

    comparison = json.loads((tiny_project / "metrics/comparison.json").read_text())
    assert sorted(comparison["models"]) == sorted(MODELS) and comparison["seeds"] == [1]
    assert comparison["models"]["conv3_dropout"]["parameters"] == 1_562_474
    assert "study" in comparison["models"]["conv3_pool"] and "study" not in comparison["models"]["arch"]
    for model in MODELS:
        confusion = (tiny_project / f"plots/confusion/{model}/seed-1.csv").read_text().splitlines()
        # The test accuracy, counted from the confusion matrix's rows (one per test image): right / all.
        right = sum(1 for line in confusion[1:] if line.split(",")[0] == line.split(",")[1])
        mean = comparison["models"][model]["metrics"]["test_accuracy"]["mean"]
        assert mean == pytest.approx(right / 300, abs=1e-4), model
        live = tiny_project / f"metrics/train/{model}/seed-1/plots/metrics/eval/loss.tsv"
        history = live.read_text().splitlines()
        assert history[0] == "step\tloss" and len(history) == 2  # one epoch
        assert (tiny_project / f"plots/weights/{model}/seed-1.png").read_bytes().startswith(b"\x89PNG")
        confusion = (tiny_project / f"plots/confusion/{model}/seed-1.csv").read_text().splitlines()
        assert confusion[0] == "actual,predicted" and len(confusion) == 301
    assert "| **conv3_pool** |" in (tiny_project / "metrics/comparison.md").read_text()

    # Data and models live in the DVC cache, not in git: `git add -A` committed none of them.
    tracked = run(["git", "ls-files"], tiny_project, environment).stdout.split()
    assert "dvc.lock" in tracked and "metrics/comparison.md" in tracked
    assert not [path for path in tracked if path.startswith(("data/", "models/")) or path.endswith("seed-1.json")
                and path.startswith("metrics/predictions/")]  # fmt: skip
    assert run(["git", "status", "--porcelain"], tiny_project, environment).stdout == ""

    second = run(["dvc", "repro"], tiny_project, environment)
    assert stages_run(second.stdout) == set()

    experiment = run(["dvc", "exp", "run", "-S", "arch.kernel=5"], tiny_project, environment)
    assert stages_run(experiment.stdout) == {"train@arch-1", "evaluate@arch-1", "compare", "report"}
    spec = json.loads((tiny_project / "models/arch/seed-1/spec.json").read_text())
    assert spec["architecture"]["kernel"] == 5 and spec["train"]["seed"] == 1

    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], tiny_project, environment).stdout)
    changed = {f"{path}:{key}" for path, metrics in diff.items() for key in metrics}
    assert changed and all("/arch/" in change or change.endswith(".arch") for change in changed), changed
    assert "metrics/test_accuracy.json:test_accuracy.arch" in changed
    arch_train = diff["metrics/train/arch/seed-1/metrics.json"]["parameters"]
    assert arch_train["new"] != arch_train["old"]

    plots = json.loads(run(["dvc", "plots", "show", "--json"], tiny_project, environment).stdout)
    assert {
        "metrics/train/conv3_pool/seed-1/plots/metrics/eval/loss.tsv",
        "plots/confusion/arch/seed-1.csv",
        "plots/weights/conv7_pool/seed-1.png",
    } <= set(plots["data"])
    assert not plots.get("errors")


@pytest.mark.pipeline
def test_a_revisited_experiment_is_restored_from_the_run_cache(reproduced_project, isolated_environment):
    project, environment = reproduced_project, isolated_environment
    committed = (project / "models/arch/seed-1/model.keras").read_bytes()
    run(["dvc", "exp", "run", "-S", "arch.kernel=5"], project, environment)
    assert (project / "models/arch/seed-1/model.keras").read_bytes() != committed
    back = run(["dvc", "exp", "run", "-S", "arch.kernel=3"], project, environment)
    assert "Stage 'train@arch-1' is cached - skipping run, checking out outputs" in back.stdout
    assert "Stage 'evaluate@arch-1' is cached - skipping run, checking out outputs" in back.stdout
    assert stages_run(back.stdout) == {"compare"}  # compare writes plain outputs; it is cheap and reruns
    assert (project / "models/arch/seed-1/model.keras").read_bytes() == committed
    assert list((project / ".dvc/cache/runs").rglob("*")), "no run-cache entries were saved"


@pytest.mark.pipeline
def test_more_seeds_train_only_the_new_pairs_and_one_seed_restores(reproduced_project, isolated_environment):
    project, environment = reproduced_project, isolated_environment
    # Two of the five models, to keep the test short: the others' stages are dropped, not rerun.
    two_models = ["conv3_pool", "conv5_pool"]
    set_params(project / "params.yaml", {"models": two_models})
    # The README's commands. prepare reruns too: it checks train.seeds before any training (dvc.yaml),
    # and writes the same bytes, so nothing downstream of it reruns.
    more = run(["dvc", "exp", "run", "-S", "train.seeds=[1,2]"], project, environment)
    assert stages_run(more.stdout) == {"prepare", "compare", "report"} | pairs([2], models=two_models)
    summary = json.loads((project / "metrics/test_accuracy.json").read_text())
    assert sorted(summary) == ["pairs", "test_accuracy", "test_accuracy_sd"]
    assert sorted(summary["test_accuracy_sd"]) == sorted(two_models) and sum(summary["pairs"].values()) == 1
    assert "| first | second | difference |" in (project / "metrics/comparison.md").read_text()

    # A change to one model's spec retrains that model's seeds only.
    set_params(project / "params.yaml", {"conv5_pool.layers[0].filters": 8})
    spec_change = run(["dvc", "repro"], project, environment)
    assert stages_run(spec_change.stdout) == {"compare", "report"} | pairs([1, 2], models=["conv5_pool"])

    # Back to the committed params with one seed: everything comes from the cache.
    run(["git", "checkout", "params.yaml"], project, environment)
    single = run(["dvc", "exp", "run", "-S", "train.seeds=[1]"], project, environment)
    assert stages_run(single.stdout) <= {"prepare", "compare", "report"}
    assert "test_accuracy_sd" not in json.loads((project / "metrics/test_accuracy.json").read_text())


@pytest.mark.pipeline
def test_a_bad_seed_list_stops_before_any_training(tiny_project, isolated_environment):
    for seeds, message in (
        ([], r"'train.seeds' is \[\]; expected a non-empty list of distinct non-negative integers"),
        ([1, 1], r"'train.seeds' repeats 1 in \[1, 1\]"),
    ):
        set_params(tiny_project / "params.yaml", {"train.seeds": seeds})
        failed = run(["dvc", "repro"], tiny_project, isolated_environment, check=False)
        assert failed.returncode != 0
        assert re.search(r"prepare: error: params.yaml: " + message, failed.stderr), failed.stderr
        assert "Running stage 'train@" not in failed.stdout and not (tiny_project / "models").exists()


@pytest.mark.pipeline
def test_impossible_kernel_stops_before_training_and_names_the_layer(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"conv3_pool.kernel": 9})
    failed = run(["dvc", "repro", "train@conv3_pool-1"], tiny_project, isolated_environment, check=False)
    # The stage exits 1 with one line; DVC reports the failed stage and exits 255.
    assert failed.returncode == 255 and "exited with 1" in failed.stderr
    # 28 -> conv 9x9 -> 20 -> pool -> 10 -> conv 9x9 -> 2 -> pool -> 1: the third conv cannot fit.
    assert (
        "train: error: model 'conv3_pool', layer 4 (conv): conv window 9x9 is larger than its 1x1 input "
        "feature map; use a smaller kernel or padding 'same'"
    ) in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tiny_project / "models/conv3_pool").exists()


@pytest.mark.pipeline
def test_a_spec_that_would_train_for_hours_is_refused_before_training(tiny_project, isolated_environment):
    # A typo of 9600 filters for 64 (1,802 GFLOP per epoch on the tiny run), over a limit of 100 GFLOP.
    set_params(tiny_project / "params.yaml", {"arch.layers[4].filters": 9600, "train.max_gflop_per_epoch": 100})
    failed = run(["dvc", "repro", "train@arch-1"], tiny_project, isolated_environment, check=False)
    assert failed.returncode != 0
    assert re.search(
        r"train: error: model 'arch' would cost [\d,]+ GFLOP per epoch, over the limit train.max_gflop_per_epoch = "
        r"100; check the spec for a typo, or raise train.max_gflop_per_epoch in params.yaml if you mean it",
        failed.stderr,
    ), failed.stderr
    assert "Epoch 1/" not in failed.stdout and not (tiny_project / "models/arch").exists()


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
    project = reproduced_project
    run(["dvc", "exp", "run", "--queue", "-S", "arch.kernel=5"], project, environment)
    try:
        run(["dvc", "queue", "start", "-j", "1"], project, environment)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = run(["dvc", "queue", "status"], project, environment).stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(3)
        assert status.count("Success") == 1, status
    finally:
        # Workers left running would outlive the test: stop them whatever happened.
        run(["dvc", "queue", "stop", "--kill"], project, environment, check=False)

    name = re.findall(r"^\w+\s+(\S+)\s+.*Success", status, flags=re.MULTILINE)[0]
    log = run(["dvc", "queue", "logs", name], project, environment).stdout
    assert stages_run(log) == {"train@arch-1", "evaluate@arch-1", "compare", "report"}, log
    assert "Stage 'train@conv3_dropout-1' didn't change, skipping" in log

    experiments = experiments_by_kernel(project, environment)
    assert sorted(experiments) == [5]
    committed = json.loads((project / "metrics/train/arch/seed-1/metrics.json").read_text())
    assert experiments[5]["metrics/train/arch/seed-1/metrics.json"]["parameters"] != committed["parameters"]
    summary = json.loads((project / "metrics/test_accuracy.json").read_text())["test_accuracy"]
    assert experiments[5]["metrics/test_accuracy.json"]["test_accuracy"]["conv3_pool"] == summary["conv3_pool"]

    # The README's sweep report, on this real experiment: kernel 5's row is the experiment's accuracy.
    command = [sys.executable, "-m", "tools.sweep", "--param", "arch.kernel", "--model", "arch"]
    table = run(command, project, environment | {"PYTHONPATH": str(PROJECT_ROOT)}).stdout
    kernel_5 = experiments[5]["metrics/evaluate/arch/seed-1.json"]["test"]["accuracy"]
    row = rf"^\| arch \| 5 \| {name} \| [\d,]+ \| 1 \| {kernel_5:.4f} \|.*needs two seeds"
    assert re.search(row, table, re.MULTILINE), table
    assert re.search(r"^\| arch \| 3 \| baseline \w{7} \|", table, re.MULTILINE), table


@pytest.mark.pipeline
def test_fashion_mnist_through_params_only(tiny_project, isolated_environment, fashion_mnist_idx_directory):
    set_params(
        tiny_project / "params.yaml", {"data.source": "idx_dir", "data.idx_dir": str(fashion_mnist_idx_directory)}
    )
    run(["dvc", "repro", "evaluate@arch-1"], tiny_project, isolated_environment)
    confusion = (tiny_project / "plots/confusion/arch/seed-1.csv").read_text().splitlines()
    fashion_classes = {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    }  # fmt: skip
    assert confusion[1].split(",")[0] == "Ankle boot"  # Fashion-MNIST's first test image
    assert {row.split(",")[0] for row in confusion[1:]} <= fashion_classes
    samples = json.loads((tiny_project / "metrics/predictions/arch/seed-1.json").read_text())["samples"]
    assert {sample["label"] for sample in samples} <= fashion_classes
    predicted = run(
        [sys.executable, "-m", "tools.predict", "--model", "arch", "--test-index", "0"],
        tiny_project,
        isolated_environment | {"PYTHONPATH": str(PROJECT_ROOT)},
    ).stdout
    assert predicted.startswith("test image 0 (true: Ankle boot): ")
    assert len([name for name in fashion_classes if name in predicted.split("): ")[1]]) == 3


def test_no_stage_depends_on_the_commands_a_person_runs():
    # tools/ and cluster/ hold commands a person runs; editing them must rerun nothing.
    declared = (PROJECT_ROOT / "dvc.yaml").read_text()
    assert "tools/" not in declared and "cluster/" not in declared
    importers = []
    for module in sorted((PROJECT_ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):  # imports inside functions too
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            importers += [f"{module.name}: {name}" for name in names if name.split(".")[0] in ("tools", "cluster")]
    assert importers == []


def stage_modules_imported(module: str) -> set[str]:
    """stages/<module>.py and every stages/*.py it imports, directly or not (at any depth, in functions too)."""
    found, frontier = set(), [module]
    while frontier:
        name = frontier.pop()
        path = f"stages/{name}.py"
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse((PROJECT_ROOT / path).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "stages":
                frontier += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stages."):
                frontier.append(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                frontier += [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("stages.")]
    return found | {"stages/__init__.py"}


def test_each_stage_depends_on_exactly_the_stage_modules_it_imports():
    # dvc.yaml's code deps are kept by hand; a module missing there would let an edit go unrerun.
    declared_stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in declared_stages.items():
        module = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
        declared = {dep for dep in stage["deps"] if dep.startswith("stages/") and dep.endswith(".py")}
        assert declared == stage_modules_imported(module), name


@pytest.mark.pipeline
def test_the_pull_request_summary_diffs_metrics_and_params_from_git_alone(reproduced_project, isolated_environment,
                                                                           tmp_path):  # fmt: skip
    project, environment = reproduced_project, isolated_environment
    run(["dvc", "exp", "run", "-S", "arch.kernel=5"], project, environment)
    run(["git", "add", "-A"], project, environment)
    run(["git", "commit", "-qm", "kernel 5"], project, environment)
    # A fresh clone has no DVC cache, no data and no models: only what git holds.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, environment)
    summary = run(["bash", str(PROJECT_ROOT / "scripts/pr_comparison.sh"), "HEAD~1"], clone, environment).stdout
    metrics, parameters = summary.split("### Params against ")
    assert metrics.startswith("### Metrics against ")
    assert re.search(r"\| metrics/test_accuracy\.json\s*\| test_accuracy\.arch\s*\|", metrics), metrics
    assert re.search(r"\| params\.yaml\s*\| arch\.kernel\s*\| 3\s*\| 5\s*\|", parameters), parameters
    missing = run(["bash", str(PROJECT_ROOT / "scripts/pr_comparison.sh"), "no-such-commit"], clone, environment,
                  check=False)  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "pr_comparison: base commit 'no-such-commit' not found; expected a commit of this repository (fetch it first)"
    )
