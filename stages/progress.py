"""Where a training is: an estimate of its whole time when it starts, and the time left after every epoch.

The estimate at the start comes from this machine's own past: every finished training records its
seconds per epoch by model and precision in a small JSON file beside the checkpoints (ignored by
git and DVC, never an input of any stage). A model never trained here has no estimate until its
first epoch ends. After each epoch the time left is the median epoch so far times the epochs
left: the first epoch also traces the graph, and one slow epoch should not swing the estimate.
"""

import time
from pathlib import Path

import numpy as np

from stages import artifacts


def duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def time_left(epoch_seconds: list[float], epochs_left: int) -> float:
    """The median epoch so far times the epochs still to run."""
    return float(np.median(epoch_seconds)) * epochs_left


class History:
    """Seconds per epoch of the trainings finished on this machine, by '<model>/<precision>'."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            recorded = artifacts.read_json(self.path)
        except (OSError, ValueError):
            return {}  # none yet, or a file cut short: only an estimate is lost
        return recorded if isinstance(recorded, dict) else {}

    def seconds_per_epoch(self, key: str) -> float | None:
        value = self._read().get(key)
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def record(self, key: str, seconds_per_epoch: float) -> None:
        try:
            artifacts.write_json(self.path, self._read() | {key: round(seconds_per_epoch, 3)})
        except OSError:
            pass  # a full disk or a read-only directory costs the next estimate, never the training


def starting_line(label: str, epochs_to_run: int, seconds_per_epoch: float | None) -> str:
    if seconds_per_epoch is None:
        return f"{label}: no earlier training of this model here to estimate from; the time left follows each epoch"
    return (
        f"{label}: about {duration(seconds_per_epoch * epochs_to_run)} for {epochs_to_run} epochs "
        f"(from this machine's last training of it, {duration(seconds_per_epoch)} per epoch)"
    )


def progress_callback(label: str, epochs: int, history: History, key: str, clock=time.monotonic):
    """A Keras callback printing '<label>: epoch 3/10 in 12 s, about 1 min 24 s left' after every epoch, and
    recording the median epoch in `history` when training ends."""
    import keras

    class Progress(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = clock()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_seconds.append(clock() - self.started)
            left = time_left(self.epoch_seconds, epochs - (epoch + 1))
            tail = "done" if epoch + 1 == epochs else f"about {duration(left)} left"
            print(f"{label}: epoch {epoch + 1}/{epochs} in {duration(self.epoch_seconds[-1])}, {tail}", flush=True)

        def on_train_end(self, logs=None):
            if self.epoch_seconds:
                history.record(key, float(np.median(self.epoch_seconds)))

    return Progress()
