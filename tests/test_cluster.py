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
    with pytest.raises(ParamsError, match="expected key=value"):
        grid.parse_overrides(["arch.kernel"])


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
    # arch fails at once (a kernel larger than any window on a 28x28 image); conv3_pool trains for minutes.
    set_params(project / "params.yaml", {"models": ["arch", "conv3_pool"], "arch.kernel": 99, "train.epochs": 30,
                                         "data.limit": 1500})  # fmt: skip
    run(["dvc", "repro", "prepare"], project, environment)
    with RayCluster(environment) as ray_cluster:
        completed = cluster_command(project, environment, "--address", ray_cluster.address, "train@arch-1",
                                    "train@conv3_pool-1")  # fmt: skip
        assert completed.returncode == 1, completed.stdout + completed.stderr
        error = completed.stderr.strip().splitlines()
        assert re.match(r"cluster: error: train@arch-1 failed on node \w{8}: ", error[-1]), completed.stderr
        assert "conv window 99x99" in error[-1] and "expected a window of at most 55x55" in error[-1]
        # The other task was cancelled, and its training on the other node is gone with it.
        assert "cluster: cancelled train@conv3_pool-1" in completed.stderr
        assert no_trainer_left(timeout=30) == [], "a training outlived its cancelled task"
    assert "train@conv3_pool-1" not in lock_stages(project) and "train@arch-1" not in lock_stages(project)
    assert not (project / "models/arch/seed-1").exists() and not (project / "models/conv3_pool/seed-1").exists()


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
def test_ctrl_c_at_the_coordinator_cancels_the_tasks_and_leaves_the_workspace(
    cluster_project, isolated_environment, tmp_path
):
    project, environment = cluster_project, isolated_environment
    run(["dvc", "repro", "prepare"], project, environment)
    before = run(["git", "status", "--porcelain"], project, environment).stdout
    set_params(project / "params.yaml", {"train.epochs": 30, "data.limit": 1500})
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
            assert trainers() != []
            coordinator.send_signal(signal.SIGINT)
            output, errors = coordinator.communicate(timeout=60)
        finally:
            if coordinator.poll() is None:
                os.killpg(coordinator.pid, signal.SIGKILL)
        assert no_trainer_left(timeout=30) == [], "a training outlived its cancelled task"
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
    set_params(project / "params.yaml", {"train.epochs": 6, "data.limit": 3000})  # about 2 s per epoch
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
        rf"cluster: {re.escape(lost)} on node \w{{8}}: {re.escape(lost)}: resuming after epoch (\d) of 6", output
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


def trainers() -> list[int]:
    """Training processes of cluster tasks on this machine (any node: orphans leave their node's process tree),
    found by their working directory in the tasks' scratch area (cluster/worker.py)."""
    scratch = str(Path(tempfile.gettempdir()) / "cluster-stages")
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if b"stages.train" in (process / "cmdline").read_bytes() and os.readlink(process / "cwd").startswith(
                scratch
            ):
                found.append(int(process.name))
        except OSError:
            continue
    return found


def no_trainer_left(timeout: float) -> list[int]:
    """Waits up to `timeout` seconds for every cluster training process to end; the ones still there."""
    deadline = time.monotonic() + timeout
    while trainers() and time.monotonic() < deadline:
        time.sleep(0.5)
    return trainers()


def training_on(node_pid: int) -> str | None:
    """The training stage (train@<model>-<seed>) running among the processes that `ray start` (PID) started."""
    for pid in descendants(node_pid):
        try:
            words = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        except OSError:
            continue
        if "stages.train" in words:
            return f"train@{words[words.index('--name') + 1]}-{words[words.index('--seed') + 1]}"
    return None


# arch's parameters by kernel k, by hand: convs 1x32, 32x64, 64x96 with `same` padding (k*k*in*out + out each),
# three 2x2 pools (28 -> 14 -> 7 -> 3), Dense(128) on 3*3*96 = 864 inputs, Dense(10).
ARCH_PARAMETERS = {
    k: (k * k * 1 * 32 + 32) + (k * k * 32 * 64 + 64) + (k * k * 64 * 96 + 96) + (864 * 128 + 128) + (128 * 10 + 10)
    for k in (3, 4, 5)
}
assert ARCH_PARAMETERS == {3: 186_218, 4: 243_786, 5: 317_802}  # 3 and 5 as the study's README and issue 20 state


def saved_model_facts(model_dir) -> tuple[int, int]:
    """(the kernel recorded in spec.json, the number of weights stored in model.keras), read from the files."""
    import zipfile

    import h5py

    spec = json.loads((model_dir / "spec.json").read_text())
    with zipfile.ZipFile(model_dir / "model.keras") as archive, h5py.File(archive.open("model.weights.h5")) as stored:
        weights = stored["layers"]  # the optimizer's moments are stored beside them
        sizes = []
        weights.visititems(lambda name, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None)
    return spec["architecture"]["kernel"], sum(sizes)


@pytest.mark.pipeline
def test_a_grid_saves_each_point_with_the_model_it_trained_and_a_later_local_run_agrees(
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
    # The workspace is back at the baseline.
    assert run(["git", "status", "--porcelain", "params.yaml"], project, environment).stdout == ""
    model = project / "models/arch/seed-1"
    cluster_entries = {}
    for kernel in (4, 5):
        run(["dvc", "exp", "apply", f"kernel-{kernel}"], project, environment)
        assert yaml.safe_load((project / "params.yaml").read_text())["arch"]["kernel"] == kernel
        assert saved_model_facts(model) == (kernel, ARCH_PARAMETERS[kernel])
        assert run(["dvc", "status"], project, environment).stdout.strip() == "Data and pipelines are up to date."
        cluster_entries[kernel] = lock_stages(project)["train@arch-1"]
        run(["git", "checkout", "--", "."], project, environment)
        run(["dvc", "checkout", "--force"], project, environment)

    # The same points by plain `dvc exp run` in a clone with the baseline's cache but not the cluster's run cache.
    local = tmp_path / "local"
    run(["git", "clone", "-q", str(project), str(local)], tmp_path, environment)
    shutil.copytree(project / ".dvc/cache", local / ".dvc/cache", ignore=shutil.ignore_patterns("runs"))
    run(["dvc", "checkout", "-q"], local, environment)
    for kernel in (4, 5):
        run(["dvc", "exp", "run", "-S", f"arch.kernel={kernel}"], local, environment)
        assert lock_stages(local)["train@arch-1"] == cluster_entries[kernel]
        run(["git", "checkout", "--", "."], local, environment)
        run(["dvc", "checkout", "--force"], local, environment)

    # In the cluster's own clone, with the run cache its placements wrote: restored, and kernel 5's model.
    rerun = run(["dvc", "exp", "run", "-S", "arch.kernel=5"], project, environment).stdout
    assert "Stage 'train@arch-1' is cached - skipping run" in rerun, rerun
    assert saved_model_facts(model) == (5, ARCH_PARAMETERS[5])


@pytest.mark.pipeline
def test_an_edit_while_a_stage_trains_gets_its_result_refused_and_nothing_recorded(
    cluster_project, isolated_environment, tmp_path
):
    project, environment = cluster_project, isolated_environment
    run(["dvc", "repro", "prepare"], project, environment)
    set_params(project / "params.yaml", {"train.epochs": 2, "data.limit": 1000})
    run(["dvc", "repro", "prepare"], project, environment)
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "cluster", "repro", "train@arch-1"], cwd=project,
        env=environment | {"PYTHONPATH": str(PROJECT_ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while training_on(coordinator.pid) != "train@arch-1":  # the embedded Ray's processes are its children
            assert coordinator.poll() is None and time.monotonic() < deadline, "the training never started"
            time.sleep(0.1)
        set_params(project / "params.yaml", {"arch.layers[0].filters": 16})  # a person edits the spec meanwhile
        output, errors = coordinator.communicate(timeout=300)
    finally:
        if coordinator.poll() is None:
            os.killpg(coordinator.pid, signal.SIGKILL)
    assert coordinator.returncode == 1, output + errors
    assert errors.strip().splitlines()[-1] == (
        "cluster: error: train@arch-1: result refused, its inputs differ from this workspace's: "
        "parameter params.yaml.arch.layers[0].filters: the worker ran 32, this workspace has 16; nothing of it "
        "was recorded (run the command again to train with the workspace's inputs)"
    )
    assert "train@arch-1" not in lock_stages(project)
    assert not (project / "models/arch/seed-1").exists()
    assert not (project / "metrics/train/arch/seed-1").exists()
    run_cache = [path.read_text() for path in (project / ".dvc/cache/runs").rglob("*") if path.is_file()]
    assert run_cache and not [entry for entry in run_cache if "stages.train" in entry]  # prepare's only


def test_a_grid_refuses_a_workspace_with_uncommitted_changes(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"train.epochs": 2})  # an edit the restore after each point would lose
    completed = cluster_command(tiny_project, isolated_environment, "-S", "arch.kernel=5", timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.startswith("cluster: error: -S: the workspace has uncommitted changes (params.yaml)")
    assert yaml.safe_load((tiny_project / "params.yaml").read_text())["train"]["epochs"] == 2
