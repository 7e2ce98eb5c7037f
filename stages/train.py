"""Stage `train@<name>`: build one model from its spec in params.yaml and train it as the study did.

Glorot-normal init, Adam, categorical cross-entropy, accuracy; batch size, epochs, learning rate and
seed from the `train` section. Everything is seeded and TensorFlow's op determinism is on, so the
same inputs give the same weights. DVCLive logs each epoch's loss and accuracy, training and
validation, while the model trains.
"""

import argparse
import dataclasses
import shutil
import signal
import sys
import time
from pathlib import Path

from stages import architecture, artifacts, cli, params


def configure_determinism(seed: int) -> None:
    """Seeds Python, NumPy and the backend, and makes TensorFlow's kernels deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def layer_table(model) -> list[dict]:
    """One row per layer: name, type, output shape (without batch) and parameter count."""
    return [{"name": layer.name, "type": type(layer).__name__, "output_shape": list(layer.output.shape[1:]),
             "parameters": layer.count_params()} for layer in model.layers]


def train(spec: architecture.ArchitectureSpec, settings: params.TrainParams, train_set: dict, validation_set: dict,
          live_dir: Path):
    """Builds, compiles and fits the model; DVCLive writes per-epoch metrics under `live_dir`.

    Args:
        train_set, validation_set: {"x": float32 (N, 28, 28, 1) in [0, 1], "y": float32 (N, classes) one-hot}.

    Returns:
        (the trained keras.Model, its history: {"loss": [...], "accuracy": [...], "val_loss": ..., ...}).
    """
    import keras
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    configure_determinism(settings.seed)
    stop = stop_on_signal()  # before DVCLive creates its directory, so a kill from here on cleans up
    model = architecture.build_model(spec, input_shape=train_set["x"].shape[1:], class_count=train_set["y"].shape[1])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    # dvcyaml=False: the metrics and plots are declared in the project's dvc.yaml, which DVCLive
    # would otherwise rewrite; save_dvc_exp=False: DVC, not DVCLive, records experiments here.
    live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)
    live.summary["parameters"] = model.count_params()
    history = model.fit(train_set["x"], train_set["y"], batch_size=settings.batch_size, epochs=settings.epochs,
                        validation_data=(validation_set["x"], validation_set["y"]), shuffle=True,
                        callbacks=[stop, DVCLiveCallback(live=live)],
                        # A progress bar in a terminal; one line per epoch in a log file.
                        verbose=1 if sys.stdout.isatty() else 2)
    return model, history.history




def stop_on_signal():
    """A Keras callback that turns Ctrl-C (SIGINT) or a kill (SIGTERM) into KeyboardInterrupt between batches.

    Python raises a signal handler's exception wherever the interpreter is, which can be inside
    TensorFlow's input pipeline; that was seen here to corrupt the heap (`free(): invalid next
    size`, exit by SIGABRT) before any cleanup ran. So the handler only records the signal and the
    callback raises at the next batch boundary, a fraction of a second later. A second signal raises
    at once, for a user who will not wait.
    """
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.received = None
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signal_number, self.record)

        def record(self, signal_number, frame) -> None:
            if self.received is not None:
                raise KeyboardInterrupt(f"signal {signal_number}")
            self.received = signal_number

        def raise_if_signalled(self, *unused, **unused_keywords) -> None:
            if self.received is not None:
                raise KeyboardInterrupt(f"signal {self.received}")

        on_train_batch_end = on_test_batch_end = on_epoch_end = raise_if_signalled

    return StopOnSignal()


def remove_outputs(*paths: Path) -> None:
    """Deletes what an interrupted or failed training left, so no partial model or log looks finished."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the params.yaml key of the architecture, e.g. arch")
    parser.add_argument("--data-dir", type=Path, required=True, help="holds train.npz and validation.npz")
    parser.add_argument("--model-dir", type=Path, required=True, help="where model.keras and spec.json go")
    parser.add_argument("--live-dir", type=Path, required=True, help="DVCLive's directory for this model")
    arguments = parser.parse_args()
    all_params = params.load_params()
    settings = params.TrainParams.from_section(params.select(all_params, "train"))
    spec = architecture.parse_architecture(arguments.spec.split(".")[-1], params.select(all_params, arguments.spec))
    architecture.output_shapes(spec, (28, 28, 1))  # an impossible spec stops before any data is loaded
    train_set = artifacts.load_npz(arguments.data_dir / "train.npz", ("x", "y", "class_names"))
    validation_set = artifacts.load_npz(arguments.data_dir / "validation.npz", ("x", "y"))
    started = time.perf_counter()
    try:
        model, history = train(spec, settings, train_set, validation_set, arguments.live_dir)
        # The model carries what made it: its spec, the training settings and each layer's shape.
        artifacts.write_json(arguments.model_dir / "spec.json", {
            "architecture": spec.to_dict(), "train": dataclasses.asdict(settings),
            "parameters": model.count_params(), "layers": layer_table(model),
            "train_images": len(train_set["x"]), "validation_images": len(validation_set["x"]),
            "class_names": train_set["class_names"].tolist(),
        })
        artifacts.save_keras_model(model, arguments.model_dir / "model.keras")
    except BaseException:
        # Ctrl-C, a kill or a failed write: DVCLive's per-epoch log and any model file are removed,
        # so the output paths hold either a finished training or nothing. Then the error goes on.
        remove_outputs(arguments.live_dir, arguments.model_dir)
        raise
    seconds = time.perf_counter() - started
    print(f"train@{spec.name}: {model.count_params():,} parameters, {settings.epochs} epochs in {seconds:.0f} s, "
          f"val_loss {history['val_loss'][-1]:.4f}, val_accuracy {history['val_accuracy'][-1]:.4f}")


if __name__ == "__main__":
    cli.run("train", main)
