"""tools/cluster.py on a real two-node Ray cluster on loopback (tests/ray_cluster.py), with real DVC remotes."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, S3_CREDENTIALS, add_s3_remote, allow_ctrl_c, free_ports, run, set_params
from tests.ray_cluster import RayCluster, descendants
from tools import cluster

# One model, two seeds: two trainings at once keep both nodes busy, and the test takes a minute, not five.
CLUSTER_PARAMS = {"models": ["arch"], "train.seeds": [1, 2]}


def cluster_command(project, environment, *arguments, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "tools.cluster", "repro", *arguments], cwd=project, capture_output=True, text=True,
        env=environment | {"PYTHONPATH": str(PROJECT_ROOT)}, timeout=timeout, check=False,
    )  # fmt: skip


def lock_stages(project) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


@pytest.fixture
def cluster_project(tiny_project, isolated_environment, tmp_path):
    """The tiny project with two models and two seeds, committed, with a local-directory DVC remote."""
    project = tiny_project
    set_params(project / "params.yaml", CLUSTER_PARAMS)
    run(["dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")], project, isolated_environment)
    run(["git", "commit", "-qam", "two models, two seeds, a remote"], project, isolated_environment)
    return project


def test_grid_overrides_expand_like_dvcs():
    assert cluster.parse_overrides(["arch.kernel=2,3", "train.epochs=1"]) == [
        {"arch.kernel": 2, "train.epochs": 1},
        {"arch.kernel": 3, "train.epochs": 1},
    ]
    with pytest.raises(cluster.ParamsError, match="expected key=value"):
        cluster.parse_overrides(["arch.kernel"])


@pytest.mark.pipeline
def test_a_two_node_cluster_runs_the_study_and_records_what_a_local_repro_records(
    cluster_project, isolated_environment, tmp_path
):
    project, environment = cluster_project, isolated_environment
    # A developer's local credentials: they must never be shipped to the workers.
    (project / ".dvc/config.local").write_text(
        "['remote \"vault\"']\n    url = s3://vault/store\n    secret_access_key = do-not-ship-me\n"
    )
    with RayCluster(environment) as ray_cluster:
        summary_path = tmp_path / "summary.json"
        completed = cluster_command(project, environment, "--address", ray_cluster.address, "--summary",
                                    str(summary_path))  # fmt: skip
        assert completed.returncode == 0, completed.stdout + completed.stderr
        node_ids = set(ray_cluster.node_ids())
    summary = json.loads(summary_path.read_text())
    remote_rows = [row for row in summary if row["node"] != "coordinator"]
    pairs = [("arch", 1), ("arch", 2)]
    expected = {f"{kind}@{model}-{seed}" for kind in ("train", "evaluate") for model, seed in pairs}
    assert {row["stage"] for row in remote_rows} == expected
    assert {row["node"] for row in remote_rows} == node_ids  # both nodes ran stages
    shipped = {path for row in remote_rows for path in row["shipped_files"]}
    assert ".dvc/config.local" not in shipped and not any(path.startswith(("data/", ".git/")) for path in shipped)
    assert "cluster [" in completed.stdout and "done on node" in completed.stdout

    # The final local restore runs nothing, and git sees only what a local run changes.
    status = run(["dvc", "repro"], project, environment).stdout
    assert "Running stage" not in status, status
    cluster_lock = lock_stages(project)
    changed = set(run(["git", "status", "--porcelain"], project, environment).stdout.split())

    # The same configuration, reproduced locally from the same commit.
    local = tmp_path / "local"
    run(["git", "clone", "-q", str(project), str(local)], tmp_path, environment)
    run(["dvc", "repro"], local, environment)
    assert lock_stages(local) == cluster_lock
    assert set(run(["git", "status", "--porcelain"], local, environment).stdout.split()) == changed


@pytest.mark.pipeline
def test_a_failing_stage_stops_the_run_with_its_one_line_error(cluster_project, isolated_environment, tmp_path):
    project, environment = cluster_project, isolated_environment
    run(["dvc", "repro", "prepare"], project, environment)
    set_params(project / "params.yaml", {"arch.kernel": 99})  # larger than any window on a 28x28 image
    with RayCluster(environment) as ray_cluster:
        completed = cluster_command(project, environment, "--address", ray_cluster.address, "train@arch-1",
                                    "train@arch-2")  # fmt: skip
    assert completed.returncode == 1, completed.stdout + completed.stderr
    error = completed.stderr.strip().splitlines()
    # Both trainings fail the same way; whichever a node reports first stops the run.
    assert re.match(r"cluster: error: train@arch-[12] failed on node \w{8}: ", error[-1]), completed.stderr
    assert "conv window 99x99" in error[-1] and "expected a window of at most 55x55" in error[-1]
    assert not (project / "models/arch/seed-1").exists() and not (project / "models/arch/seed-2").exists()


def test_an_address_with_nothing_listening_fails_in_one_line_quickly(tiny_project, isolated_environment):
    (port,) = free_ports(1)
    started = time.monotonic()
    completed = cluster_command(tiny_project, isolated_environment, "--address", f"127.0.0.1:{port}", timeout=60)
    assert time.monotonic() - started < 30
    assert completed.returncode == 1
    expected = f"cluster: error: --address 127.0.0.1:{port}: cannot reach a Ray cluster"
    assert completed.stderr.strip().startswith(expected)
    assert len(completed.stderr.strip().splitlines()) == 1


def test_no_remote_is_named_with_the_command_that_adds_one(tiny_project, isolated_environment):
    completed = cluster_command(tiny_project, isolated_environment, "--address", "127.0.0.1:1")
    assert completed.returncode == 1
    assert "cannot reach" in completed.stderr  # the address is checked first
    with pytest.raises(cluster.SourceError, match=r"`dvc remote add -d storage <url>`"):
        cluster.default_remote(tiny_project)


@pytest.mark.pipeline
def test_ctrl_c_at_the_coordinator_cancels_the_tasks_and_leaves_the_workspace(
    cluster_project, isolated_environment, tmp_path
):
    project, environment = cluster_project, isolated_environment
    run(["dvc", "repro", "prepare"], project, environment)
    before = run(["git", "status", "--porcelain"], project, environment).stdout
    set_params(project / "params.yaml", {"train.epochs": 30, "data.limit": 1500})
    with RayCluster(environment) as ray_cluster:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "tools.cluster", "repro", "--address", ray_cluster.address, "train@arch-1"],
            cwd=project, env=environment | {"PYTHONPATH": str(PROJECT_ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=allow_ctrl_c,
        )  # fmt: skip
        try:
            for line in coordinator.stdout:
                if "submitted train@arch-1" in line:
                    break
            time.sleep(8)  # the task is training on a node
            coordinator.send_signal(signal.SIGINT)
            output, errors = coordinator.communicate(timeout=60)
        finally:
            if coordinator.poll() is None:
                os.killpg(coordinator.pid, signal.SIGKILL)
    assert coordinator.returncode == 130, errors
    assert "cluster: cancelled train@arch-1" in errors
    assert "cluster: interrupted; the running tasks were cancelled" in errors
    assert not (project / "models/arch/seed-1").exists() and not (project / "models/arch/seed-2").exists()
    set_params(project / "params.yaml", {"train.epochs": 1, "data.limit": 300})
    assert run(["git", "status", "--porcelain"], project, environment).stdout == before


@pytest.mark.pipeline
def test_a_killed_worker_node_loses_its_task_to_the_other_node_with_an_s3_remote(
    cluster_project, isolated_environment, s3_endpoint, tmp_path
):
    # Credentials from each node's environment (the nodes are started with them), never from the project.
    environment = isolated_environment | S3_CREDENTIALS
    project = cluster_project
    add_s3_remote(project, environment, s3_endpoint)
    set_params(project / "params.yaml", {"train.epochs": 4, "data.limit": 1500})  # a few seconds per training
    run(["git", "commit", "-qam", "S3 remote, longer trainings"], project, environment)
    targets = ["train@arch-1", "train@arch-2"]
    with RayCluster(environment) as ray_cluster:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "tools.cluster", "repro", "--address", ray_cluster.address,
             "--summary", str(tmp_path / "summary.json"), *targets],
            cwd=project, env=environment | {"PYTHONPATH": str(PROJECT_ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while not training_on(ray_cluster.nodes[1].pid):
                assert coordinator.poll() is None and time.monotonic() < deadline, "no training reached the worker"
                time.sleep(0.2)
            os.kill(ray_cluster.raylet_pid(1), signal.SIGKILL)  # the worker node is lost mid-training
            output, _ = coordinator.communicate(timeout=300)
        finally:
            if coordinator.poll() is None:
                os.killpg(coordinator.pid, signal.SIGKILL)
        head = ray_cluster.node_ids()
    assert coordinator.returncode == 0, output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {row["node"] for row in summary if row["stage"] in targets} == set(head)  # both finished on the head
    in_sync = run(["dvc", "status", "--cloud", *targets], project, environment).stdout
    assert "Cache and remote 's3' are in sync" in in_sync

    local = tmp_path / "local"
    run(["git", "clone", "-q", str(project), str(local)], tmp_path, environment)
    run(["dvc", "repro", *targets], local, environment)
    cluster_lock, local_lock = lock_stages(project), lock_stages(local)
    assert {stage: cluster_lock[stage] for stage in targets} == {stage: local_lock[stage] for stage in targets}


def training_on(node_pid: int) -> bool:
    """Whether a training stage runs among the processes of the node that `ray start` (PID) started."""
    for pid in descendants(node_pid):
        try:
            if b"stages.train" in open(f"/proc/{pid}/cmdline", "rb").read():
                return True
        except OSError:
            continue
    return False


@pytest.mark.pipeline
def test_a_grid_on_the_embedded_local_ray_saves_one_experiment_per_point(
    reproduced_project, isolated_environment, tmp_path
):
    project, environment = reproduced_project, isolated_environment
    run(["dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")], project, environment)
    run(["git", "commit", "-qam", "a remote"], project, environment)
    completed = cluster_command(project, environment, "-S", "arch.kernel=4,5")  # no --address: Ray starts here
    assert completed.returncode == 0, completed.stdout + completed.stderr
    ran = {line.split()[4] for line in completed.stdout.splitlines() if " done " in line}
    assert ran == {"train@arch-1", "evaluate@arch-1", "compare", "report"}, completed.stdout
    assert "saved experiment kernel-4" in completed.stdout and "saved experiment kernel-5" in completed.stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, environment).stdout)
    kernels = {
        revision["data"]["params"]["params.yaml"]["data"]["arch"]["kernel"]: revision["data"]["metrics"]
        for baseline in shown for experiment in baseline.get("experiments") or [] for revision in experiment["revs"]
    }  # fmt: skip
    assert sorted(kernels) == [4, 5]
    assert kernels[4]["metrics/evaluate/arch/seed-1.json"]["data"]["test"]["accuracy"] > 0
    # The workspace is back at the baseline.
    assert run(["git", "status", "--porcelain", "params.yaml"], project, environment).stdout == ""


def test_a_grid_refuses_a_workspace_with_uncommitted_changes(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"train.epochs": 2})  # an edit the restore after each point would lose
    completed = cluster_command(tiny_project, isolated_environment, "-S", "arch.kernel=5", timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.startswith("cluster: error: -S: the workspace has uncommitted changes (params.yaml)")
    assert yaml.safe_load((tiny_project / "params.yaml").read_text())["train"]["epochs"] == 2
