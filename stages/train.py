"""Stage `train@<name>`: build one model from its spec in params.yaml and train it as the study did.

Glorot-normal init, categorical cross-entropy, accuracy; optimizer, batch size, epochs, learning
rate and seed from the `train` section. Everything is seeded and TensorFlow's op determinism is on,
so the same inputs give the same weights. DVCLive logs each epoch's loss and accuracy, training
and validation, while the model trains. A checkpoint after every epoch (stages/checkpoint.py) lets
a killed run resume where it stopped, with the same result.
"""

import argparse
import dataclasses
import math
import shutil
import signal
import sys
import time
from pathlib import Path

from stages import architecture, artifacts, checkpoint, cli, params, precision, progress
from stages.errors import ParamsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Each with Keras' defaults but for the learning rate.
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """The `train` section: settings shared by every model."""

    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    max_gflop_per_epoch: float
    precision: str

    @classmethod
    def from_section(cls, section) -> "TrainParams":
        # `seeds` makes one stage per seed in dvc.yaml; each stage gets its seed on the command line,
        # so adding a seed changes no existing stage.
        params.check_keys(
            "train", section, {field.name for field in dataclasses.fields(cls)}, optional=frozenset({"seeds"})
        )
        return cls(
            epochs=params.typed("train.epochs", section["epochs"], int, minimum=1),
            batch_size=params.typed("train.batch_size", section["batch_size"], int, minimum=1),
            optimizer=params.one_of("train.optimizer", section["optimizer"], tuple(OPTIMIZERS)),
            learning_rate=float(
                params.typed("train.learning_rate", section["learning_rate"], (int, float), minimum=0, exclusive=True)
            ),
            max_gflop_per_epoch=float(
                params.typed(
                    "train.max_gflop_per_epoch", section["max_gflop_per_epoch"], (int, float), minimum=0, exclusive=True
                )
            ),
            precision=params.one_of("train.precision", section["precision"], precision.PRECISIONS),
        )


def epoch_gflop(spec: architecture.ArchitectureSpec, train_images: int, validation_images: int) -> float:
    """One epoch's cost in GFLOP: forward and backward (about 3x forward) over the training images,
    forward over the validation images."""
    forward = architecture.forward_flops(spec)
    return (3 * forward * train_images + forward * validation_images) / 1e9


def check_cost(spec: architecture.ArchitectureSpec, gflop: float, limit: float) -> None:
    """Refuses a model whose epoch would cost more than `limit` GFLOP: a typo, not a plan."""
    if gflop > limit:
        raise ParamsError(
            f"model '{spec.name}' would cost {gflop:,.0f} GFLOP per epoch, over the limit "
            f"train.max_gflop_per_epoch = {limit:,.0f}; check the spec for a typo, or raise "
            "train.max_gflop_per_epoch in params.yaml if you mean it"
        )


def compile_model(model, settings: TrainParams) -> None:
    import keras

    optimizer = getattr(keras.optimizers, OPTIMIZERS[settings.optimizer])(learning_rate=settings.learning_rate)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])


def with_float32_compute(model, spec: architecture.ArchitectureSpec, settings: TrainParams):
    """The trained model as a float32 model: the same variables (float32 in every policy), float32 compute.

    Evaluation, `tools.predict` and the digit page then compute alike for models trained in either
    precision, and a saved model never asks a CPU without bfloat16 units for bfloat16 arithmetic.
    """
    if settings.precision == "float32":
        return model
    with precision.dtype_policy("float32"):
        copy = architecture.build_model(spec, model.input_shape[1:], model.output_shape[-1])
        compile_model(copy, settings)
        copy.optimizer.build(copy.trainable_variables)
    pairs = [
        *zip(copy.weights, model.weights, strict=True),
        *zip(copy.optimizer.variables, model.optimizer.variables, strict=True),
    ]
    for target, source in pairs:
        target.assign(source)
    return copy


def configure_determinism(seed: int) -> None:
    """Seeds Python, NumPy and the backend, and makes TensorFlow's kernels deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def layer_table(model) -> list[dict]:
    """One row per layer: name, type, output shape (without batch) and parameter count."""
    return [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": list(layer.output.shape[1:]),
            "parameters": layer.count_params(),
        }
        for layer in model.layers
    ]


def _without_autotune(dataset):
    """tf.data's autotuner runs a thread that the iterator's destructor waits for: up to seconds after
    `fit` ends or a validation pass finishes (docs/performance.md). A fixed prefetch of two batches
    keeps the next batch ready, which is all this cheap input needs."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)


def training_batches(train_set: dict, batch_size: int, seed: int, first_epoch: int = 0):
    """The training set as one endless stream of batches, from epoch `first_epoch` on.

    Each epoch is a new permutation in ceil(N / batch_size) batches, the last one partial, and the
    permutation of epoch k depends only on (seed, k): a run resumed at epoch k sees the batches an
    uninterrupted run would. Not `model.fit(x, y, shuffle=True)`: Keras then builds a fresh input
    iterator for every epoch, and swapping iterators blocked training here for seconds per epoch
    (docs/performance.md). One repeating iterator never swaps.
    """
    import tensorflow as tf

    images, labels = tf.constant(train_set["x"]), tf.constant(train_set["y"])
    count = len(train_set["x"])

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    # Gathering whole batches by index is Keras' own way with arrays: one vectorized copy per batch.
    return _without_autotune(
        tf.data.Dataset.counter(first_epoch)
        .flat_map(epoch_batches)
        .map(lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)))
    )


def validation_batches(validation_set: dict, batch_size: int):
    """The validation set in order, in batches of `batch_size` (Keras would use 32 for a dataset)."""
    import tensorflow as tf

    images, labels = tf.constant(validation_set["x"]), tf.constant(validation_set["y"])
    starts = tf.data.Dataset.range(0, len(validation_set["x"]), batch_size)
    return _without_autotune(
        starts.map(lambda start: (images[start : start + batch_size], labels[start : start + batch_size]))
    )


def train(
    spec: architecture.ArchitectureSpec,
    settings: TrainParams,
    seed: int,
    train_set: dict,
    validation_set: dict,
    live_dir: Path,
    checkpoints: checkpoint.Checkpoints | None = None,
    extra_callbacks: tuple = (),
    epoch_times: progress.History | None = None,
):
    """Builds, compiles and fits the model; DVCLive writes per-epoch metrics under `live_dir`.

    Args:
        seed: seeds the initial weights, dropout and the order of the training images.
        train_set, validation_set: {"x": float32 (N, 28, 28, 1) in [0, 1], "y": float32 (N, classes) one-hot}.
        checkpoints: where to save a checkpoint after every epoch and resume from; None for none.
        extra_callbacks: more Keras callbacks, e.g. the benchmark's timer.
        epoch_times: this machine's past epoch times, for the estimate and the time left; None for neither.

    Returns:
        (the trained keras.Model, its history of the epochs run here: {"loss": [...], "val_loss": ...}).
    """
    import tensorflow as tf
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    gflop = epoch_gflop(spec, len(train_set["x"]), len(validation_set["x"]))
    configure_determinism(seed)
    with precision.dtype_policy(settings.precision):
        model = architecture.build_model(
            spec, input_shape=train_set["x"].shape[1:], class_count=train_set["y"].shape[1]
        )
        compile_model(model, settings)
    label = f"train@{spec.name}-{seed}"
    print(
        f"{label}: {model.count_params():,} parameters, {gflop:,.1f} GFLOP per epoch "
        f"(limit {settings.max_gflop_per_epoch:,.0f}), {settings.epochs} epochs in {settings.precision}",
        flush=True,
    )
    warning = precision.slow_precision_warning(
        settings.precision, precision.cpu_flags(), bool(tf.config.list_physical_devices("GPU"))
    )
    if warning:
        print(f"{label}: {warning}", flush=True)
    done = checkpoints.restore_latest(model, live_dir) if checkpoints else 0
    if done:
        print(f"{label}: resuming after epoch {done} of {settings.epochs}", flush=True)
    if epoch_times:
        key = f"{spec.name}/{settings.precision}/{len(train_set['x'])} images"
        print(progress.starting_line(label, settings.epochs - done, epoch_times.seconds_per_epoch(key)), flush=True)
    # dvcyaml=False: the metrics and plots are declared in the project's dvc.yaml, which DVCLive
    # would otherwise rewrite; save_dvc_exp=False: DVC, not DVCLive, records experiments here.
    live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=bool(done))
    live.step = done  # DVCLive's own resume miscounts after exactly one logged step (step 0)
    live.summary["parameters"] = model.count_params()
    callbacks = [DVCLiveCallback(live=live)]
    if epoch_times:
        callbacks.append(progress.progress_callback(label, settings.epochs, epoch_times, key))
    if checkpoints:
        callbacks.append(checkpoint.checkpoint_callback(checkpoints, live_dir))
    with StopOnSignal() as stop:
        history = model.fit(
            training_batches(train_set, settings.batch_size, seed, first_epoch=done),
            epochs=settings.epochs,
            initial_epoch=done,
            steps_per_epoch=math.ceil(len(train_set["x"]) / settings.batch_size),
            shuffle=False,  # the stream shuffles every epoch itself
            validation_data=validation_batches(validation_set, settings.batch_size),
            callbacks=[stop, *callbacks, *extra_callbacks],
            # A progress bar in a terminal; one line per epoch in a log file.
            verbose=1 if sys.stdout.isatty() else 2,
        )
    return with_float32_compute(model, spec, settings), history.history


class StopOnSignal:
    """Turns Ctrl-C (SIGINT) or a kill (SIGTERM) into KeyboardInterrupt between batches, while training.

    Python raises a signal handler's exception wherever the interpreter is, which can be inside
    TensorFlow's input pipeline; that was seen here to corrupt the heap (`free(): invalid next
    size`, exit by SIGABRT) before any cleanup ran. So the handler only records the signal and a
    Keras callback raises at the next batch boundary. A second signal raises at once, for a user
    who will not wait. On exit the previous handlers come back, so a Ctrl-C while the model is
    saved, or in a process that trains and goes on, works as usual.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        import keras

        received = []

        def record(signal_number, frame) -> None:
            if received:
                raise KeyboardInterrupt(f"signal {signal_number}")
            received.append(signal_number)

        def raise_if_signalled(*unused, **unused_keywords) -> None:
            if received:
                raise KeyboardInterrupt(f"signal {received[0]}")

        class RaiseIfSignalled(keras.callbacks.Callback):
            on_train_batch_end = on_test_batch_end = on_epoch_end = staticmethod(raise_if_signalled)

        self.previous = {number: signal.signal(number, record) for number in self.SIGNALS}
        return RaiseIfSignalled()

    def __exit__(self, *exception) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def remove_outputs(*paths: Path) -> None:
    """Deletes what an interrupted or failed training left, so no partial model or log looks finished."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the model's name: its spec's key in params.yaml")
    parser.add_argument("--seed", type=int, required=True, help="one of train.seeds")
    parser.add_argument("--data-dir", type=Path, required=True, help="holds train.npz and validation.npz")
    parser.add_argument("--model-dir", type=Path, required=True, help="where model.keras and spec.json go")
    parser.add_argument("--live-dir", type=Path, required=True, help="DVCLive's directory for this model")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        required=True,
        help="per-epoch checkpoints, outside the outputs; removed when training finishes",
    )
    arguments = parser.parse_args()
    all_params = params.load_params()
    settings = TrainParams.from_section(params.select(all_params, "train"))
    spec = architecture.parse_architecture(arguments.name, params.select(all_params, arguments.name))
    if arguments.seed < 0:
        raise ParamsError(f"--seed {arguments.seed}: expected a non-negative integer from train.seeds")
    label = f"train@{spec.name}-{arguments.seed}"
    architecture.output_shapes(spec)  # an impossible spec stops before any data is loaded
    data_files = [arguments.data_dir / "train.npz", arguments.data_dir / "validation.npz"]
    train_set = artifacts.load_npz(data_files[0], ("x", "y", "class_names"))
    validation_set = artifacts.load_npz(data_files[1], ("x", "y"))
    check_cost(spec, epoch_gflop(spec, len(train_set["x"]), len(validation_set["x"])), settings.max_gflop_per_epoch)
    checkpoints = checkpoint.Checkpoints(
        arguments.checkpoint_dir,
        checkpoint.fingerprint(
            sys.argv[1:],
            PROJECT_ROOT,
            # This module runs as __main__, so it is added by its path.
            sorted({*checkpoint.loaded_modules(PROJECT_ROOT, "stages"), Path(__file__).resolve()}),
            {"train": dataclasses.asdict(settings), "architecture": spec.to_dict()},
            data_files,
        ),
        label,
    )
    checkpoints.discard_if_stale()
    started = time.perf_counter()
    try:
        # Beside the checkpoints: this machine's epoch times, for the next training's estimate.
        epoch_times = progress.History(arguments.checkpoint_dir.parent / "epoch-seconds.json")
        model, history = train(
            spec, settings, arguments.seed, train_set, validation_set, arguments.live_dir, checkpoints,
            epoch_times=epoch_times,
        )  # fmt: skip
        # The model carries what made it: its spec, the training settings and each layer's shape.
        artifacts.write_json(
            arguments.model_dir / "spec.json",
            {
                "architecture": spec.to_dict(),
                "train": dataclasses.asdict(settings) | {"seed": arguments.seed},
                "parameters": model.count_params(),
                "layers": layer_table(model),
                "train_images": len(train_set["x"]),
                "validation_images": len(validation_set["x"]),
                "class_names": train_set["class_names"].tolist(),
            },
        )
        artifacts.save_keras_model(model, arguments.model_dir / "model.keras")
    except BaseException:
        # Ctrl-C, a kill or a failed write: DVCLive's per-epoch log and any model file are removed,
        # so the output paths hold either a finished training or nothing; the checkpoint stays for
        # the rerun to resume from. Then the error goes on.
        remove_outputs(arguments.live_dir, arguments.model_dir)
        print(
            f"{label}: stopped; partial outputs removed, the checkpoint in {arguments.checkpoint_dir} "
            "is kept: `dvc repro` resumes from it",
            file=sys.stderr,
        )
        raise
    checkpoints.remove()
    seconds = time.perf_counter() - started
    last = {key: values[-1] for key, values in history.items() if values}
    print(
        f"{label}: {settings.epochs} epochs done in {seconds:.0f} s this run, "
        f"val_loss {last.get('val_loss', float('nan')):.4f}, val_accuracy {last.get('val_accuracy', float('nan')):.4f}"
    )


if __name__ == "__main__":
    cli.run("train", main, uses_tensorflow=True)
