"""Reproducible by construction: identical reruns, a stale-lock check, and remote storage round trips."""

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, S3_CREDENTIALS, add_s3_remote, run

CHECK_LOCK = [sys.executable, str(PROJECT_ROOT / "scripts" / "check_lock.py")]


def locked_hashes(project: Path) -> dict[str, str]:
    """Every output hash in dvc.lock, by stage and path."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        f"{stage}:{output['path']}": output["md5"]
        for stage, entry in lock["stages"].items()
        for output in entry.get("outs", [])
    }


def commit_all(project: Path, environment: dict, message: str) -> None:
    run(["git", "add", "-A"], project, environment)
    run(["git", "commit", "-qm", message], project, environment)


@pytest.mark.pipeline
def test_forced_rerun_gives_byte_identical_outputs(reproduced_project, isolated_environment):
    # Every kind of stage, forced: the data, one model (conv3_dropout: dropout draws random numbers, the
    # hardest case) with its evaluation, the comparison and the report. The other models' stages are the
    # same code with other params; leaving them out keeps the test short.
    rerun = ["download", "prepare", "train@conv3_dropout-1", "evaluate@conv3_dropout-1", "compare", "report"]
    first = locked_hashes(reproduced_project)
    forced = run(["dvc", "repro", "-f", "-s", *rerun], reproduced_project, isolated_environment)
    assert set(re.findall(r"Running stage '([^']+)'", forced.stdout)) == set(rerun)
    second = locked_hashes(reproduced_project)
    compared = [key for key in first if key.split(":")[0] in rerun]
    assert len(compared) == 20  # data, the model, metrics, plot data, the report: every output of those stages
    assert {key: (first[key], second[key]) for key in compared if first[key] != second[key]} == {}


@pytest.mark.pipeline
def test_lock_check_passes_on_a_consistent_clone_and_names_stale_stages(
    reproduced_project, isolated_environment, tmp_path
):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(reproduced_project), str(clone)], tmp_path, isolated_environment)
    passed = run(CHECK_LOCK, clone, isolated_environment)
    assert "dvc.lock matches the code, dvc.yaml and params.yaml for all 14 stages" in passed.stdout

    with open(clone / "stages" / "evaluate.py", "a") as stream:
        stream.write("\n# a change to the code\n")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["arch"]["kernel"] = 4
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(CHECK_LOCK, clone, isolated_environment, check=False)
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert "dvc.lock is stale for 6 stage(s)" in lines[0]
    assert "  evaluate@conv3_pool-1: dep stages/evaluate.py modified" in lines
    assert "  train@arch-1: parameter arch modified" in lines


@pytest.mark.pipeline
def test_lock_check_catches_a_hand_edited_result_and_a_broken_chain(reproduced_project, isolated_environment):
    with open(reproduced_project / "metrics" / "comparison.md", "a") as stream:
        stream.write("edited by hand\n")
    lock_path = reproduced_project / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    for dependency in lock["stages"]["evaluate@arch-1"]["deps"]:
        if dependency["path"] == "models/arch/seed-1":
            dependency["md5"] = "0" * 32 + ".dir"
    lock["stages"]["train@retired-1"] = lock["stages"]["train@arch-1"]  # a stage since removed from dvc.yaml
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    failed = run(CHECK_LOCK, reproduced_project, isolated_environment, check=False)
    assert failed.returncode == 1
    assert "  compare: out metrics/comparison.md modified" in failed.stderr
    assert "evaluate@arch-1: " in failed.stderr and "dep models/arch/seed-1 locked as 000" in failed.stderr
    assert "  train@retired-1: in dvc.lock but not a stage of dvc.yaml" in failed.stderr


@pytest.mark.pipeline
def test_the_order_of_dvcs_gitignore_lines_changes_no_hash(reproduced_project, isolated_environment):
    # DVC appends an output's .gitignore line when its stage runs, so on a cluster the order is the order
    # stages finished. report depends on the directory metrics/predictions, which holds such files.
    gitignores = sorted((reproduced_project / "metrics/predictions").glob("*/.gitignore"))
    assert gitignores
    for path in gitignores:
        lines = path.read_text().splitlines()
        path.write_text("\n".join(["# reordered", *reversed(lines)]) + "\n")
    status = run(["dvc", "status", "--json"], reproduced_project, isolated_environment)
    assert json.loads(status.stdout) == {}


@pytest.mark.pipeline
def test_push_to_s3_then_a_fresh_clone_pulls_everything(
    reproduced_project, isolated_environment, s3_endpoint, tmp_path
):
    # Credentials come from the environment only; the committed config holds the bucket and endpoint.
    environment = isolated_environment | S3_CREDENTIALS
    project = reproduced_project
    add_s3_remote(project, environment, s3_endpoint)
    commit_all(project, environment, "S3 remote")
    run(["dvc", "push"], project, environment)
    # From here on the S3 server holds the only copy of the cache.
    shutil.rmtree(project / ".dvc" / "cache")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, environment)
    assert not (clone / "models").exists()
    run(["dvc", "pull"], clone, environment)
    for path in (
        "data/raw/mnist.npz",
        "data/prepared/test.npz",
        "models/arch/seed-1/model.keras",
        "models/conv3_dropout/seed-1/spec.json",
    ):
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone, environment).stdout
    assert "Running stage" not in run(["dvc", "repro"], clone, environment).stdout

    # The model registry: a version tag in GTO's form, then `dvc artifacts get` from a clone without a
    # cache, so the model can only come through the S3 remote.
    run(["git", "tag", "-a", "arch@v1.0.0", "-m", "first arch"], project, environment)
    registry = tmp_path / "registry"
    run(["git", "clone", "-q", str(project), str(registry)], tmp_path, environment)
    assert not (registry / ".dvc" / "cache").exists()
    download_dir = tmp_path / "download"
    download_dir.mkdir()
    run(["dvc", "artifacts", "get", str(registry), "arch"], download_dir, environment)
    downloaded = download_dir / "arch" / "seed-1" / "model.keras"
    assert downloaded.read_bytes() == (project / "models/arch/seed-1/model.keras").read_bytes()


def test_project_has_a_default_remote_outside_the_repository():
    import configobj  # DVC's own config format

    config = configobj.ConfigObj(str(PROJECT_ROOT / ".dvc" / "config"))
    assert config["core"]["remote"] == "storage"
    url = config['remote "storage"']["url"]
    # Relative to .dvc/, so every clone finds the store beside it, and outside the repository.
    resolved = (PROJECT_ROOT / ".dvc" / url).resolve()
    assert not os.path.isabs(url) and PROJECT_ROOT not in resolved.parents
