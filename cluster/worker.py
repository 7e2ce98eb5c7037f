"""The task a worker runs: one stage, in a scratch copy of exactly the snapshot it was given.

It runs `dvc repro --pull -s <stage>` (which pulls the inputs from the shared DVC remote), pushes
the stage's cached outputs (the model) to the remote, and returns its `dvc.lock` entry and its
small git-tracked outputs (metrics, plot data). It records nothing: the coordinator checks the
entry against its own workspace before placing anything (cluster/placement.py).
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from cluster import checkpoint_store, snapshot
from cluster.dvc_command import dvc, stage_error

# Lines of a stage's output the coordinator shows: how a retried training started.
SHOWN_LINES = ("resuming after epoch", "discarding the checkpoint")


def read_outputs(paths: list[str], root: Path) -> dict[str, bytes]:
    """The files at `paths` (files, or every file under a directory), keyed by path relative to `root`."""
    files = {}
    for relative in paths:
        path = root / relative
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[str(file.relative_to(root))] = file.read_bytes()
    return files


def task_key(snapshot_digest: str, lock_text: str, stage: str) -> str:
    """A task's exact inputs (code and params, the lock its data hashes come from, the stage) as a path.

    A retry of the task has the same key, and no other task does: the checkpoint store and the scratch
    directory are named by it.
    """
    inputs = hashlib.sha256(f"{snapshot_digest}\0{stage}\0{lock_text}".encode()).hexdigest()[:32]
    return f"{stage}/{inputs}"


@contextlib.contextmanager
def scratch_directory(key: str):
    """The task's scratch directory, at the same path on every node and for every retry of the task.

    The train stage's checkpoint fingerprint includes its code's absolute path (stages/train.py), so a
    retry resumes only at the same path. An exclusive lock, also held by the `dvc repro` child, keeps a
    retry on the same machine from reusing the directory while a lost attempt's stage still runs there.
    """
    base = Path(tempfile.gettempdir()) / "cluster-stages" / key.replace("/", "-")
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{base}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(base, ignore_errors=True)
        try:
            yield base, lock.fileno()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def run_stage(
    stage: str, uncached: list[str], checkpoint_dir: str | None, files: dict[str, bytes], files_digest: str,
    lock_text: str, remote: str, remote_url: str, threads: int,
) -> dict:  # fmt: skip
    """On a worker: one stage in a private copy of `files`; returns what the coordinator needs."""
    import ray

    started = time.monotonic()
    node = ray.get_runtime_context().get_node_id()
    if snapshot.digest(files) != files_digest:
        return {"stage": stage, "node": node, "error": "the shipped project arrived damaged (its SHA-256 differs)"}
    key = task_key(files_digest, lock_text, stage)
    with scratch_directory(key) as (scratch, lock_descriptor):
        root = scratch / "project"
        snapshot.materialize(files, root)
        (root / "dvc.lock").write_text(lock_text)
        # No git here (nothing is committed on a worker), and the remote at the coordinator's absolute URL.
        (root / ".dvc/config.local").write_text(
            f"[core]\n    no_scm = true\n['remote \"{remote}\"']\n    url = {remote_url}\n"
        )
        # TensorFlow's thread count changes a trained model's last bits (measured: 1 and 2 threads give other
        # bytes on the same machine), so it is set, not left to each node's core count.
        environment = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
        mirror = contextlib.nullcontext()
        if checkpoint_dir:
            store = checkpoint_store.CheckpointStore.for_remote(root, remote)
            store.restore(key, root / checkpoint_dir)
            mirror = checkpoint_store.Mirror(store, key, root / checkpoint_dir)
        with mirror:
            completed = dvc("repro", "--pull", "-s", stage, cwd=root, check=False, environment=environment,
                            pass_fds=(lock_descriptor,))  # fmt: skip
        if completed.returncode != 0:
            # Returned, not raised: the coordinator shows the stage's own one-line error, not a Ray traceback.
            return {"stage": stage, "node": node, "error": stage_error(completed)}
        dvc("push", stage, cwd=root, environment=environment)
        entry = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]
        outputs = read_outputs(uncached, root)
    shown = [line.strip() for line in completed.stdout.splitlines() if any(text in line for text in SHOWN_LINES)]
    return {
        "stage": stage, "node": node, "seconds": time.monotonic() - started, "entry": entry, "files": outputs,
        "shipped_files": sorted(files), "lines": shown,
    }  # fmt: skip
