"""The cluster's grids and the invariant: each point records the model it trained, and a result whose inputs
changed while it ran is refused (on the embedded local Ray)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from cluster import placement, worker
from tests.conftest import PROJECT_ROOT, environment_of, run, set_params
from tests.test_cluster import cluster_command, cluster_project, lock_stages, training_on

__all__ = ["cluster_project"]  # a fixture, used by name


# arch's parameters by kernel k, by hand: convs 1x32, 32x32, 32x64, 64x64 with `same` padding (k*k*in*out + out
# each), two 2x2 pools (28 -> 14 -> 7), Dense(128) on 7*7*64 = 3,136 inputs, Dense(10); dropout has none.
ARCH_PARAMETERS = {
    k: (k * k * 1 * 32 + 32)
    + (k * k * 32 * 32 + 32)
    + (k * k * 32 * 64 + 64)
    + (k * k * 64 * 64 + 64)
    + (3136 * 128 + 128)
    + (128 * 10 + 10)
    for k in (3, 4, 5)
}
assert ARCH_PARAMETERS == {3: 467_818, 4: 518_218, 5: 583_018}


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
        cluster_entries[kernel] = lock_stages(project)
        run(["git", "checkout", "--", "."], project, environment)
        run(["dvc", "checkout", "--force"], project, environment)

    # The same points trained locally in a clone with the baseline's cache but not the cluster's run cache.
    local = tmp_path / "local"
    run(["git", "clone", "-q", str(project), str(local)], tmp_path, environment)
    shutil.copytree(project / ".dvc/cache", local / ".dvc/cache", ignore=shutil.ignore_patterns("runs"))
    run(["dvc", "checkout", "-q"], local, environment)
    for kernel in (4, 5):  # the stages the point changes, as `dvc exp run -S` would run them (compare and report
        set_params(local / "params.yaml", {"arch.kernel": kernel})  # read no arch param; they are left out here)
        run(["dvc", "repro", "evaluate@arch-1"], local, environment)
        local_stages = lock_stages(local)
        for stage in ("train@arch-1", "evaluate@arch-1"):
            assert local_stages[stage] == cluster_entries[kernel][stage], (kernel, stage)

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


def test_an_edit_between_the_two_checks_is_caught_and_everything_is_put_back(
    reproduced_project, isolated_environment, tmp_path, monkeypatch
):
    """placement checks the worker's inputs before it writes anything, and again under DVC's lock with the hashes
    it then records: an edit that lands in between (here, while the outputs are pulled) is caught by the second."""
    project, environment = reproduced_project, isolated_environment
    run(["dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")], project, environment)
    run(["dvc", "push", "-q"], project, environment)
    stage = "train@arch-1"
    entry = lock_stages(project)[stage]
    metrics = project / "metrics/train/arch/seed-1"
    files = worker.read_outputs(
        [str(metrics.relative_to(project) / "metrics.json"), str(metrics.relative_to(project) / "plots")], project
    )
    result = {"stage": stage, "entry": entry, "files": files}
    (metrics / "metrics.json").write_text("what was here before")
    watched = [project / "dvc.lock", metrics / "metrics.json", *sorted((project / "models/arch/seed-1").iterdir())]
    before = {path: path.read_bytes() for path in watched}
    run_cache = sorted((project / ".dvc/cache/runs").rglob("*"))

    def pull_while_someone_edits(*arguments, **options):
        set_params(project / "params.yaml", {"arch.kernel": 5})
        return placement_dvc(*arguments, **options)

    placement_dvc = placement.dvc
    monkeypatch.setattr(placement, "dvc", pull_while_someone_edits)
    with environment_of(environment), pytest.raises(placement.LineageError) as refused:
        placement.place(project, result)
    assert "parameter params.yaml.arch.kernel: the worker ran 3, this workspace has 5" in str(refused.value)
    assert {path: path.read_bytes() for path in before} == before  # lock, the files, the model: as they were
    assert sorted((project / ".dvc/cache/runs").rglob("*")) == run_cache  # no run-cache entry written
