"""Training checkpoints on the DVC remote, so a task that Ray retries on another node resumes.

The train stage writes a checkpoint after every epoch into its `--checkpoint-dir` (stages/
checkpoint.py): `fingerprint.json` and one `epoch-NNNN/` directory, renamed into place once
complete. On a worker that directory is in the task's scratch copy and dies with the node, so the
task mirrors each new epoch to the remote, under

    <remote>/cluster-checkpoints/<stage>/<task inputs hash>/
        epoch-NNNN/...           the newest complete epoch, uploaded first
        fingerprint.json         stages/checkpoint.py's hash of the command, code, params and data
        latest.json              {"epoch": N}, written last: an epoch counts only once this names it

The key is a hash of the task's exact inputs (cluster/worker.py task_key: the point's code and
params, the dvc.lock its data hashes come from, the stage), so a retry of the same task, and only
it, finds the checkpoint; the train stage then checks its own fingerprint and discards a
checkpoint made from other inputs. The coordinator
removes the key once the stage is placed.
"""

import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from stages.checkpoint import EPOCH_PREFIX, Checkpoints

STORE_FOLDER = "cluster-checkpoints"
LATEST = "latest.json"
FINGERPRINT = "fingerprint.json"


def finished_epochs(directory: Path) -> list[int]:
    """The epochs of the complete checkpoints in a local checkpoint directory, ascending (stages/checkpoint.py
    decides what a complete one is)."""
    complete = Checkpoints(directory, inputs_fingerprint="", label="").finished_epochs()
    return sorted(int(path.name[len(EPOCH_PREFIX) :]) for path in complete)


class CheckpointStore:
    """A folder on a DVC remote's filesystem (local directory, S3, ...)."""

    def __init__(self, filesystem, path: str):
        self.filesystem, self.path = filesystem, path

    @classmethod
    def for_remote(cls, project: Path, remote: str) -> "CheckpointStore":
        """The store on the remote named `remote` in the DVC project at `project`."""
        from dvc.fs import get_cloud_fs
        from dvc.repo import Repo

        with Repo(str(project)) as repo:
            filesystem_class, config, remote_path = get_cloud_fs(repo.config, name=remote)
        filesystem = filesystem_class(**config)
        return cls(filesystem, filesystem.join(remote_path, STORE_FOLDER))

    def _key(self, key: str, *parts: str) -> str:
        return self.filesystem.join(self.path, *key.split("/"), *parts)

    def _put(self, local: Path, remote: str) -> None:
        self.filesystem.makedirs(self.filesystem.parent(remote), exist_ok=True)
        self.filesystem.put_file(str(local), remote)

    def latest_epoch(self, key: str) -> int:
        """The newest complete epoch stored under `key` (0: none)."""
        latest = self._key(key, LATEST)
        if not self.filesystem.exists(latest):
            return 0
        return int(json.loads(self.filesystem.cat_file(latest))["epoch"])

    def upload(self, key: str, checkpoint_dir: Path, epoch: int) -> None:
        """Stores the local checkpoint of `epoch` under `key`, then names it in latest.json, then drops older ones."""
        name = f"{EPOCH_PREFIX}{epoch:04d}"
        with tempfile.TemporaryDirectory() as scratch:
            # A private copy first: the stage deletes older epochs as it saves newer ones.
            copy = Path(scratch) / name
            shutil.copytree(checkpoint_dir / name, copy)
            shutil.copy2(checkpoint_dir / FINGERPRINT, Path(scratch) / FINGERPRINT)
            for file in sorted(copy.rglob("*")):
                if file.is_file():
                    self._put(file, self._key(key, name, *file.relative_to(copy).parts))
            self._put(Path(scratch) / FINGERPRINT, self._key(key, FINGERPRINT))
            (Path(scratch) / LATEST).write_text(json.dumps({"epoch": epoch}))
            self._put(Path(scratch) / LATEST, self._key(key, LATEST))
        for older in self.filesystem.ls(self._key(key), detail=False):
            if self.filesystem.name(older).startswith(EPOCH_PREFIX) and self.filesystem.name(older) != name:
                self.filesystem.rm(older, recursive=True)

    def restore(self, key: str, checkpoint_dir: Path) -> int:
        """Copies the newest stored epoch under `key` into a local checkpoint directory; returns it (0: none)."""
        epoch = self.latest_epoch(key)
        if not epoch:
            return 0
        name = f"{EPOCH_PREFIX}{epoch:04d}"
        stored = self._key(key, name)
        staging = checkpoint_dir / f".{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for remote_file in self.filesystem.find(stored):
            relative = self.filesystem.relpath(remote_file, stored)
            local = staging / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            self.filesystem.get_file(remote_file, str(local))
        self.filesystem.get_file(self._key(key, FINGERPRINT), str(checkpoint_dir / FINGERPRINT))
        staging.rename(checkpoint_dir / name)
        return epoch

    def remove(self, key: str) -> None:
        """Forgets the checkpoints under `key` (the stage is placed)."""
        if self.filesystem.exists(self._key(key)):
            self.filesystem.rm(self._key(key), recursive=True)


class Mirror(threading.Thread):
    """While a stage runs, uploads each new complete epoch of its local checkpoint directory to the store."""

    def __init__(self, store: CheckpointStore, key: str, checkpoint_dir: Path, interval_seconds: float = 0.5):
        super().__init__(daemon=True, name=f"checkpoint-mirror {key}")
        self.store, self.key, self.checkpoint_dir = store, key, checkpoint_dir
        self.interval_seconds = interval_seconds
        self.uploaded = store.latest_epoch(key)
        self.stopping = threading.Event()

    def sync(self) -> None:
        epochs = finished_epochs(self.checkpoint_dir)
        if epochs and epochs[-1] > self.uploaded:
            self.store.upload(self.key, self.checkpoint_dir, epochs[-1])
            self.uploaded = epochs[-1]

    def run(self) -> None:
        while not self.stopping.wait(self.interval_seconds):
            try:
                self.sync()
            except Exception as error:  # noqa: BLE001 - a mirror that stops would leave a retry an old epoch
                # The stage replaced that epoch while it was copied, or the remote failed once: say so, go on.
                print(f"checkpoint mirror {self.key}: {type(error).__name__}: {error}; trying again", file=sys.stderr)

    def __enter__(self) -> "Mirror":
        self.start()
        return self

    def __exit__(self, *exception) -> None:
        self.stopping.set()
        self.join()
