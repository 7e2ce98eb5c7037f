"""The cluster package on a real two-node Ray cluster on loopback (harness/ray_cluster.py), with real DVC remotes."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from cluster import coordinator, grid
from harness.ray_cluster import RayCluster, descendants
from stages.errors import ParamsError, SourceError
from tests.conftest import PROJECT_ROOT, S3_CREDENTIALS, add_s3_remote, allow_ctrl_c, free_ports, run, set_params

# One model, two seeds: two trainings at once keep both nodes busy, and the test takes a minute, not five.
CLUSTER_PARAMS = {"models": ["arch"], "train.seeds": [1, 2]}


def cluster_command(project, environment, *arguments, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "cluster", "repro", *arguments], cwd=project, capture_output=True, text=True,
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
    assert grid.parse_overrides(["arch.kernel=2,3", "train.epochs=1"]) == [
        {"arch.kernel": 2, "train.epochs": 1},
        {"arch.kernel": 3, "train.epochs": 1},
    ]
    # A list is one value: its commas are not the grid's.
    assert grid.parse_overrides(["train.seeds=[1,2],[3]"]) == [{"train.seeds": [1, 2]}, {"train.seeds": [3]}]
    with pytest.raises(ParamsError, match="expected key=value"):
        grid.parse_overrides(["arch.kernel"])
    with pytest.raises(ParamsError, match=r"^-S 'train.seeds=\[1,': not a YAML value \("):
        grid.parse_overrides(["train.seeds=[1,"])


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


@pytest.fixture
def private_tmp(isolated_environment):
    """A TMPDIR of the test's own, short (Ray's socket paths live under it), so that the cluster tasks' scratch
    directories, and the trainings found in them, are this test's alone."""
    directory = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    yield directory, isolated_environment | {"TMPDIR": str(directory)}
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.pipeline
def test_a_failing_stage_stops_the_run_with_its_one_line_error_and_cancels_the_others(
    cluster_project, private_tmp, tmp_path
):
    (scratch, environment), project = private_tmp, cluster_project
    # arch trains briefly, then its evaluation fails (a sample index past the 3,000 test images), while
    # conv3_dropout, ten times arch's cost per image, is still training on the other node, for a minute more:
    # long enough that an orphaned training would still be there when the test looks.
    set_params(project / "params.yaml", {"models": ["arch", "conv3_dropout"], "train.epochs": 12, "data.limit": 3000,
                                         "evaluate.sample_indices": [99_999]})  # fmt: skip
    run(["dvc", "repro", "prepare"], project, environment)
    seen: set[str] = set()
    with RayCluster(environment) as ray_cluster:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "cluster", "repro", "--address", ray_cluster.address, "evaluate@arch-1",
             "train@conv3_dropout-1"], cwd=project, env=environment | {"PYTHONPATH": str(PROJECT_ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            while coordinator.poll() is None:  # which trainings ran, while the run lasts
                seen.update(stage for stage in map(training_stage, trainers(scratch)) if stage)
                time.sleep(0.2)
            output, errors = coordinator.communicate(timeout=60)
        finally:
            if coordinator.poll() is None:
                os.killpg(coordinator.pid, signal.SIGKILL)
        assert coordinator.returncode == 1, output + errors
        error = errors.strip().splitlines()
        assert re.match(r"cluster: error: evaluate@arch-1 failed on node \w{8}: ", error[-1]), errors
        assert "evaluate.sample_indices: index 99999 is past the 3000 test images" in error[-1]
        # conv3_dropout was training when arch's evaluation failed, and its training is gone with its task.
        assert "train@conv3_dropout-1" in seen and "cluster: cancelled train@conv3_dropout-1" in errors, seen
        assert no_trainer_left(scratch, timeout=15) == [], "a training outlived its cancelled task"
    stages = lock_stages(project)
    # What finished before the failure stays recorded, as with dvc repro; nothing of the failed or cancelled ones.
    assert "train@arch-1" in stages and (project / "models/arch/seed-1/model.keras").exists()
    assert "evaluate@arch-1" not in stages and "train@conv3_dropout-1" not in stages
    assert not (project / "models/conv3_dropout/seed-1").exists()


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
    with pytest.raises(SourceError, match=r"`dvc remote add -d storage <url>`"):
        coordinator.default_remote(tiny_project)


@pytest.mark.pipeline
def test_ctrl_c_at_the_coordinator_cancels_the_tasks_and_leaves_the_workspace(cluster_project, private_tmp, tmp_path):
    (scratch, environment), project = private_tmp, cluster_project
    run(["dvc", "repro", "prepare"], project, environment)
    before = run(["git", "status", "--porcelain"], project, environment).stdout
    # Minutes of training: an orphan left behind by the cancel would outlast the test's look by far.
    set_params(project / "params.yaml", {"train.epochs": 300, "data.limit": 1500})
    with RayCluster(environment) as ray_cluster:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "cluster", "repro", "--address", ray_cluster.address, "train@arch-1"],
            cwd=project, env=environment | {"PYTHONPATH": str(PROJECT_ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=allow_ctrl_c,
        )  # fmt: skip
        try:
            # Not a fixed sleep: the training has stored its first epoch on the remote, so it is surely running.
            stored = tmp_path / "remote/cluster-checkpoints/train@arch-1"
            deadline = time.monotonic() + 180
            while not list(stored.glob("*/latest.json")):
                assert coordinator.poll() is None and time.monotonic() < deadline, "the training never stored an epoch"
                time.sleep(0.2)
            assert [training_stage(pid) for pid in trainers(scratch)] == ["train@arch-1"]
            coordinator.send_signal(signal.SIGINT)
            output, errors = coordinator.communicate(timeout=60)
        finally:
            if coordinator.poll() is None:
                os.killpg(coordinator.pid, signal.SIGKILL)
        assert no_trainer_left(scratch, timeout=15) == [], "a training outlived its cancelled task"
    assert coordinator.returncode == 130, errors
    assert "cluster: cancelled train@arch-1" in errors
    assert "cluster: interrupted; the running tasks were cancelled" in errors
    assert "train@arch-1" not in lock_stages(project) and not (project / "models/arch/seed-1").exists()
    set_params(project / "params.yaml", {"train.epochs": 1, "data.limit": 300})
    assert run(["git", "status", "--porcelain"], project, environment).stdout == before


@pytest.mark.pipeline
def test_a_killed_worker_node_loses_its_task_to_the_other_node_which_resumes_it(
    cluster_project, isolated_environment, s3_endpoint, tmp_path
):
    # Credentials from each node's environment (the nodes are started with them), never from the project.
    environment = isolated_environment | S3_CREDENTIALS
    project = cluster_project
    add_s3_remote(project, environment, s3_endpoint)
    set_params(project / "params.yaml", {"train.epochs": 5, "data.limit": 2000})  # about a second per epoch
    run(["git", "commit", "-qam", "S3 remote, longer trainings"], project, environment)
    targets = ["train@arch-1", "train@arch-2"]
    with RayCluster(environment) as ray_cluster:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "cluster", "repro", "--address", ray_cluster.address,
             "--summary", str(tmp_path / "summary.json"), *targets],
            cwd=project, env=environment | {"PYTHONPATH": str(PROJECT_ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            lost = None
            # The worker node's training has stored at least one epoch on the remote: then the node is lost.
            while not (lost and stored_epochs(s3_endpoint, lost)):
                assert coordinator.poll() is None and time.monotonic() < deadline, "no checkpoint left the worker"
                lost = lost or training_on(ray_cluster.nodes[1].pid)
                time.sleep(0.1)
            os.kill(ray_cluster.raylet_pid(1), signal.SIGKILL)
            output, _ = coordinator.communicate(timeout=300)
        finally:
            if coordinator.poll() is None:
                os.killpg(coordinator.pid, signal.SIGKILL)
        head = ray_cluster.node_ids()
    assert coordinator.returncode == 0, output
    resumed = re.search(
        rf"cluster: {re.escape(lost)} on node \w{{8}}: {re.escape(lost)}: resuming after epoch (\d) of 5", output
    )
    assert resumed and int(resumed.group(1)) >= 1, output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {row["node"] for row in summary if row["stage"] in targets} == set(head)  # both finished on the head
    in_sync = run(["dvc", "status", "--cloud", *targets], project, environment).stdout
    assert "Cache and remote 's3' are in sync" in in_sync
    assert stored_epochs(s3_endpoint, lost) == []  # placed, so its checkpoints are gone from the remote

    local = tmp_path / "local"
    run(["git", "clone", "-q", str(project), str(local)], tmp_path, environment)
    run(["dvc", "repro", *targets], local, environment)
    cluster_lock, local_lock = lock_stages(project), lock_stages(local)
    assert {stage: cluster_lock[stage] for stage in targets} == {stage: local_lock[stage] for stage in targets}


def stored_epochs(endpoint: str, stage: str) -> list[str]:
    """The checkpoint objects of `stage` on the S3 remote (cluster/checkpoint_store.py's layout)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    listed = client.list_objects_v2(Bucket="study", Prefix="cache/cluster-checkpoints/")
    return [
        item["Key"]
        for item in listed.get("Contents", [])
        if item["Key"].startswith(f"cache/cluster-checkpoints/{stage}/") and item["Key"].endswith("/latest.json")
    ]


def trainers(scratch: Path) -> list[int]:
    """Training processes of cluster tasks whose TMPDIR is `scratch` (any node: orphans leave their node's process
    tree), found by their working directory in the tasks' scratch area there (cluster/worker.py)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(process / "cwd")
            if (
                cwd.startswith(str(scratch / "cluster-stages"))
                and b"stages.train" in (process / "cmdline").read_bytes()
            ):
                found.append(int(process.name))
        except OSError:
            continue
    return found


def training_stage(pid: int) -> str | None:
    """train@<model>-<seed> of a training process, from its command line (None once it is gone)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    if "stages.train" not in words:
        return None
    return f"train@{words[words.index('--name') + 1]}-{words[words.index('--seed') + 1]}"


def no_trainer_left(scratch: Path, timeout: float) -> list[int]:
    """Waits up to `timeout` seconds for every cluster training process under `scratch` to end; those left."""
    deadline = time.monotonic() + timeout
    while trainers(scratch) and time.monotonic() < deadline:
        time.sleep(0.5)
    return trainers(scratch)


def training_on(node_pid: int) -> str | None:
    """The training stage (train@<model>-<seed>) running among the processes that `ray start` (PID) started."""
    stages = [stage for stage in map(training_stage, descendants(node_pid)) if stage]
    return stages[0] if stages else None


def test_a_grid_refuses_a_workspace_with_uncommitted_changes(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"train.epochs": 2})  # an edit the restore after each point would lose
    completed = cluster_command(tiny_project, isolated_environment, "-S", "arch.kernel=5", timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.startswith("cluster: error: -S: the workspace has uncommitted changes (params.yaml)")
    assert yaml.safe_load((tiny_project / "params.yaml").read_text())["train"]["epochs"] == 2


def test_gpus_per_task_are_checked_against_the_cluster_before_anything_runs(tiny_project, isolated_environment):
    for wrong in ("-1", "1.5", "nan"):
        refused = cluster_command(tiny_project, isolated_environment, "--gpus-per-task", wrong)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"cluster: error: --gpus-per-task: got {float(wrong):g}; expected 0, a fraction up to 1, or a whole number"
        )
    # A Ray started here, on a machine without GPUs: asking for one would make Ray wait forever.
    missing = cluster_command(tiny_project, isolated_environment, "--gpus-per-task", "1", timeout=120)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == (
        "cluster: error: --gpus-per-task 1: the Ray cluster's nodes have at most 0 GPUs each; expected at most 0 "
        "per task (leave the option out to train on CPUs)"
    )
    assert not (tiny_project / "data").exists()  # nothing ran
