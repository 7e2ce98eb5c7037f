"""Per-epoch checkpoints for the training stage: a killed `dvc repro` resumes after the last finished epoch.

A checkpoint holds everything the rest of training depends on: every model variable (weights and
the dropout layers' seed-generator states), every optimizer variable (Adam's moments and step
count), the number of finished epochs, and DVCLive's directory (its per-epoch logs, which DVC
deletes with the stage's other outputs before a rerun). The input order of an epoch depends only
on (seed, epoch) (`train.training_batches`), so a resumed run is byte-identical to one that never
stopped.

Keras' `BackupAndRestore` does part of this, but its weights file leaves out the seed generators
(dropout would draw other masks after a resume), it writes in place (a kill mid-write leaves a
truncated file its loader does not survive), and it restores inside `fit`, after the input
stream has been built from epoch 0. So this module saves with Keras' own variable API instead.

Layout, outside the stage's outputs (DVC deletes those before running a stage), in a directory
that git and DVC ignore:
    <directory>/fingerprint.json       a hash of the command, code, params and data that made it
    <directory>/epoch-0003/            one finished epoch; renamed into place only once complete
        variables.npz, optimizer.npz   the values, by position and path
        live/                          DVCLive's directory as it was at the end of that epoch
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from stages import artifacts
from stages.errors import DataError

EPOCH_PREFIX = "epoch-"


def loaded_modules(root: Path, package: str) -> list[Path]:
    """The files of `package`'s modules loaded in this process: the code the stage runs.

    The stage's declared code deps in dvc.yaml are exactly the package modules it imports
    (tests/test_pipeline.py checks that), so this hashes what DVC hashes and nothing more: an
    edit to a module the stage does not use keeps its checkpoint.
    """
    files = {
        Path(module.__file__).resolve()
        for name, module in list(sys.modules.items())
        if (name == package or name.startswith(f"{package}.")) and getattr(module, "__file__", None)
    }
    return sorted(path for path in files if path.is_relative_to(Path(root).resolve()))


def fingerprint(command: list[str], root: Path, code_files: list[Path], settings: dict, data_files: list[Path]) -> str:
    """A SHA-256 of everything that determines a training run, so a checkpoint is resumed only by its own inputs.

    Files are named by their path relative to the project `root` (data paths as the command gives
    them, relative to it too), so a project moved or cloned elsewhere resumes its checkpoints.
    """
    root = Path(root).resolve()
    digest = hashlib.sha256()
    digest.update(json.dumps({"command": command, "settings": settings}, sort_keys=True).encode())
    for path in [*sorted(code_files), *data_files]:
        absolute = Path(path).resolve()
        digest.update((absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else str(path)).encode())
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _variable_arrays(variables) -> dict[str, np.ndarray]:
    return {f"{index:04d}": np.asarray(variable.numpy()) for index, variable in enumerate(variables)}


def _variable_paths(variables) -> list[str]:
    return [variable.path for variable in variables]


class Checkpoints:
    """The checkpoints of one training stage, tied to the fingerprint of its inputs."""

    def __init__(self, directory: Path, inputs_fingerprint: str, label: str):
        self.directory = Path(directory)
        self.inputs_fingerprint = inputs_fingerprint
        self.label = label

    def discard_if_stale(self) -> None:
        """Removes checkpoints made from other inputs (another seed, spec, code or data), saying why."""
        marker = self.directory / "fingerprint.json"
        if not self.directory.exists():
            return
        try:
            recorded = artifacts.read_json(marker)["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if recorded != self.inputs_fingerprint:
            print(
                f"{self.label}: discarding the checkpoint in {self.directory}: it was made from other inputs "
                "(command, code, params or data); training starts at epoch 1",
                flush=True,
            )
            self.remove()

    def finished_epochs(self) -> list[Path]:
        """Complete checkpoint directories, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted(
            (
                path
                for path in self.directory.glob(f"{EPOCH_PREFIX}*")
                if path.is_dir() and path.name[len(EPOCH_PREFIX) :].isdigit()
            ),
            reverse=True,
        )

    def restore_latest(self, model, live_dir: Path) -> int:
        """Loads the newest readable checkpoint into `model` and `live_dir`; returns its epoch count (0: none).

        A checkpoint that cannot be read (a kill or a full disk while it was written) is reported
        in one line and skipped; nothing is assigned to the model until a checkpoint has been read
        whole.
        """
        for path in self.finished_epochs():
            try:
                values = artifacts.load_npz(path / "variables.npz", ())
                optimizer_values = artifacts.load_npz(path / "optimizer.npz", ())
                recorded = artifacts.read_json(path / "paths.json")
            except (DataError, OSError, ValueError) as error:
                print(f"{self.label}: ignoring the unreadable checkpoint {path} ({error})", flush=True)
                continue
            model.optimizer.build(model.trainable_variables)
            pairs = [
                (variable, arrays.get(f"{index:04d}"))
                for variables, arrays in ((model.variables, values), (model.optimizer.variables, optimizer_values))
                for index, variable in enumerate(variables)
            ]
            expected = {
                "variables": _variable_paths(model.variables),
                "optimizer": _variable_paths(model.optimizer.variables),
            }
            if recorded != expected or any(
                value is None or value.shape != tuple(variable.shape) for variable, value in pairs
            ):
                print(
                    f"{self.label}: ignoring the checkpoint {path}: its variables do not match the model's", flush=True
                )
                continue
            for variable, value in pairs:
                variable.assign(value)
            shutil.rmtree(live_dir, ignore_errors=True)
            if (path / "live").is_dir():
                shutil.copytree(path / "live", live_dir)
            return int(path.name[len(EPOCH_PREFIX) :])
        return 0

    def save(self, model, epochs_done: int, live_dir: Path) -> None:
        """Writes the checkpoint after `epochs_done` epochs, then drops the older ones.

        Everything goes to a temporary sibling first and is renamed into place at the end, so a
        kill at any moment leaves either the previous checkpoint or the new one, never half of one.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(self.directory / "fingerprint.json", {"fingerprint": self.inputs_fingerprint})
        final = self.directory / f"{EPOCH_PREFIX}{epochs_done:04d}"
        scratch = self.directory / f".{final.name}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        artifacts.save_npz(scratch / "variables.npz", _variable_arrays(model.variables))
        artifacts.save_npz(scratch / "optimizer.npz", _variable_arrays(model.optimizer.variables))
        artifacts.write_json(
            scratch / "paths.json",
            {"variables": _variable_paths(model.variables), "optimizer": _variable_paths(model.optimizer.variables)},
        )
        if Path(live_dir).is_dir():
            shutil.copytree(live_dir, scratch / "live")
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
        for older in self.finished_epochs():
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def checkpoint_callback(checkpoints: Checkpoints, live_dir: Path):
    """A Keras callback saving a checkpoint at the end of every epoch (after DVCLive has logged it)."""
    import keras

    class SaveCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            checkpoints.save(self.model, epoch + 1, live_dir)

    return SaveCheckpoint()
