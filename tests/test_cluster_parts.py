"""The cluster package's pure parts and DVC-facing helpers, without Ray: lineage, snapshot, checkpoint store, plan."""

import json

import pytest
import yaml
from dvc_objects.fs.local import LocalFileSystem

from cluster import checkpoint_store, experiments, lineage, plan, snapshot
from stages.errors import SourceError
from tests.conftest import environment_of, run, set_params

# A train stage's lock entry as DVC writes it (abridged to what the invariant reads).
WORKER_ENTRY = {
    "cmd": "python -m stages.train --name arch --seed 1",
    "deps": [
        {"path": "data/prepared/train.npz", "hash": "md5", "md5": "aaa", "size": 10},
        {"path": "stages/train.py", "hash": "md5", "md5": "bbb", "size": 20},
    ],
    "params": {"params.yaml": {"arch": {"kernel": 3, "layers": [{"type": "conv", "filters": 32}]}, "train.epochs": 1}},
    "outs": [{"path": "models/arch/seed-1", "hash": "md5", "md5": "ccc.dir"}],
}


def entry_with(**changes) -> dict:
    entry = json.loads(json.dumps(WORKER_ENTRY))
    entry.update(changes)
    return entry


def test_the_same_inputs_with_other_outputs_are_no_difference():
    # The coordinator's own entry has no outputs yet: only inputs are compared.
    assert lineage.first_difference(WORKER_ENTRY, entry_with(outs=[])) is None


def test_a_changed_parameter_deep_in_a_spec_is_named_with_both_values():
    ours = entry_with()
    ours["params"]["params.yaml"]["arch"]["layers"][0]["filters"] = 16
    assert lineage.first_difference(WORKER_ENTRY, ours) == (
        "parameter params.yaml.arch.layers[0].filters: the worker ran 32, this workspace has 16"
    )
    ours["params"]["params.yaml"]["arch"]["kernel"] = 5  # the first difference in key order is named
    assert lineage.first_difference(WORKER_ENTRY, ours).startswith(
        "parameter params.yaml.arch.kernel: the worker ran 3"
    )


def test_a_changed_or_missing_dependency_and_command_are_named():
    changed = entry_with(deps=[WORKER_ENTRY["deps"][0], {"path": "stages/train.py", "hash": "md5", "md5": "zzz"}])
    assert lineage.first_difference(WORKER_ENTRY, changed) == (
        "dependency stages/train.py: the worker's md5 bbb, this workspace's zzz"
    )
    missing = entry_with(deps=WORKER_ENTRY["deps"][:1])
    assert lineage.first_difference(WORKER_ENTRY, missing) == (
        "dependency stages/train.py: the worker's md5 bbb, this workspace's none"
    )
    assert lineage.first_difference(WORKER_ENTRY, entry_with(cmd="python -m stages.train --name arch --seed 2"))
    line = lineage.refusal("train@arch-1", "parameter x: the worker ran 1, this workspace has 2")
    assert line.startswith("train@arch-1: result refused, its inputs differ from this workspace's: parameter x")
    assert "\n" not in line


def test_a_snapshot_leaves_out_data_secrets_and_the_lock_and_its_digest_follows_every_byte(tmp_path):
    for relative in ("params.yaml", "stages/train.py", ".dvc/config", ".dvc/config.local", "dvc.lock",
                     "data/prepared/train.npz", "stages/__pycache__/train.cpython-311.pyc", ".git/HEAD"):  # fmt: skip
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(relative)
    files = snapshot.collect(tmp_path)
    assert sorted(files) == [".dvc/config", "params.yaml", "stages/train.py"]
    before = snapshot.digest(files)
    (tmp_path / "params.yaml").write_text("arch: {kernel: 5}")
    assert snapshot.digest(snapshot.collect(tmp_path)) != before
    snapshot.materialize(files, tmp_path / "copy")
    assert (tmp_path / "copy/params.yaml").read_text() == "params.yaml"


def write_checkpoint(directory, epoch: int, content: bytes) -> None:
    """A checkpoint directory as stages/checkpoint.py lays it out."""
    (directory / f"epoch-{epoch:04d}/live").mkdir(parents=True)
    (directory / f"epoch-{epoch:04d}/variables.npz").write_bytes(content)
    (directory / f"epoch-{epoch:04d}/live/metrics.json").write_text(f'{{"epoch": {epoch}}}')
    (directory / "fingerprint.json").write_text('{"fingerprint": "f00"}')


def test_the_store_keeps_the_newest_epoch_and_restores_it_byte_for_byte(tmp_path):
    store = checkpoint_store.CheckpointStore(LocalFileSystem(), str(tmp_path / "remote/cluster-checkpoints"))
    local, key = tmp_path / "node-a", "digest/train@arch-1"
    assert store.latest_epoch(key) == 0 and store.restore(key, tmp_path / "nothing") == 0
    write_checkpoint(local, 1, b"one")
    with checkpoint_store.Mirror(store, key, local, interval_seconds=0.05) as mirror:
        mirror.sync()
        assert store.latest_epoch(key) == 1
        write_checkpoint(local, 2, b"two")  # the stage saves epoch 2, then drops epoch 1
        (local / "epoch-0001/variables.npz").unlink()
        mirror.sync()
    assert store.latest_epoch(key) == 2
    stored = sorted(path.name for path in (tmp_path / "remote/cluster-checkpoints/digest/train@arch-1").iterdir())
    assert stored == ["epoch-0002", "fingerprint.json", "latest.json"]
    retry = tmp_path / "node-b"
    retry.mkdir()
    assert store.restore(key, retry) == 2
    assert (retry / "epoch-0002/variables.npz").read_bytes() == b"two"
    assert (retry / "epoch-0002/live/metrics.json").read_text() == '{"epoch": 2}'
    assert (retry / "fingerprint.json").read_text() == '{"fingerprint": "f00"}'
    store.remove(key)
    assert store.latest_epoch(key) == 0


def test_plan_is_what_dvc_repro_would_run(tiny_project):
    """plan() calls DVC's private plan_repro and collect_stages: if an upgrade changes them, this fails first."""
    set_params(tiny_project / "params.yaml", {"models": ["conv3_pool", "arch"]})
    try:
        planned = plan.plan(tiny_project, [])
    except Exception as error:  # noqa: BLE001 - the message below is the point of this test
        pytest.fail(f"cluster/plan.py no longer works with the installed DVC's private API: {error!r}")
    names = [stage.name for stage in planned]
    assert names[:2] == ["download", "prepare"] and names[-2:] == ["compare", "report"], names
    assert sorted(names[2:-2]) == ["evaluate@arch-1", "evaluate@conv3_pool-1", "train@arch-1", "train@conv3_pool-1"]
    by_name = {stage.name: stage for stage in planned}
    assert set(by_name["evaluate@arch-1"].upstream) == {"train@arch-1", "prepare"}
    assert by_name["train@arch-1"].checkpoint_dir == ".dvc/tmp/checkpoints/train@arch-1"
    assert by_name["evaluate@arch-1"].checkpoint_dir is None
    assert by_name["train@arch-1"].uncached == [
        "metrics/train/arch/seed-1/metrics.json", "metrics/train/arch/seed-1/plots",
    ]  # fmt: skip
    # Only the given target and what it needs; nothing once it is up to date is covered by the cluster tests.
    assert [stage.name for stage in plan.plan(tiny_project, ["prepare"])] == ["download", "prepare"]


def test_a_point_whose_stages_are_not_up_to_date_is_not_saved(tiny_project):
    # `dvc exp save` commits every stage with force, run cache included: a stale workspace must not get there.
    with pytest.raises(
        experiments.UnsavedPointError,
        match=r"^experiment kernel-5: not saved: compare, download, evaluate@arch-1 changed since it ran",
    ):
        experiments.require_up_to_date(tiny_project, "kernel-5")


def test_a_point_that_fails_leaves_params_yaml_as_committed_and_no_experiment(tiny_project, isolated_environment):
    committed = (tiny_project / "params.yaml").read_text()

    def failing_point():
        assert yaml.safe_load((tiny_project / "params.yaml").read_text())["arch"]["kernel"] == 5  # set for the point
        raise SourceError("the cluster went away")

    with environment_of(isolated_environment), pytest.raises(SourceError, match="the cluster went away"):
        experiments.run_points(tiny_project, [{"arch.kernel": 5}], failing_point)
    assert (tiny_project / "params.yaml").read_text() == committed
    # A point that ran but is not up to date (nothing was reproduced here) is not saved either.
    with environment_of(isolated_environment), pytest.raises(experiments.UnsavedPointError):
        experiments.run_points(tiny_project, [{"arch.kernel": 5}], lambda: None)
    assert (tiny_project / "params.yaml").read_text() == committed
    listed = run(["dvc", "exp", "list", "--all-commits", "--name-only"], tiny_project, isolated_environment)
    assert listed.stdout.strip() == ""
