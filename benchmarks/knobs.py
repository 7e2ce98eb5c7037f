"""Before/after for each training-speed knob: the pipeline's training with one thing changed.

Every variant trains like `stages.train.train` (same model, optimizer, seed, op determinism, batch
200, validation every epoch) and differs in one setting:
  arrays          before issue 6: `model.fit(x, y, shuffle=True)` on NumPy arrays;
  autotune        before issue 11: one repeating tf.data iterator with tf.data's autotuner on
                  (prefetch AUTOTUNE) and the validation set as arrays (Keras' own autotuned input);
  stream          the pipeline now: `stages.train.training_batches` and `validation_batches`, autotuner
                  off, two batches prefetched;
  steps4, steps16 stream, and Keras running 4 or 16 batches per call (`steps_per_execution`);
  validation1000  stream, validating in batches of 1,000 instead of 200;
  inter_op1       stream, TensorFlow's inter-op thread pool cut to one thread (2 cores);
  onednn_off      stream, with TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's own kernels instead of oneDNN).
Each (variant, model, repeat) runs in its own process, repeats interleaved so drift hits all alike.
Per epoch it records the wait before the first batch, the training batches and validation.

Usage (from the project root, after `dvc pull` or `dvc repro prepare`):
    python -m benchmarks.knobs --models conv3_pool --repeats 2
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks import train_speed

VARIANTS = ("arrays", "autotune", "stream", "steps4", "steps16", "validation1000", "inter_op1", "onednn_off")


def autotuned_stream(train_set: dict, batch_size: int, seed: int):
    """The training stream as it was before issue 11: reshuffled by tf.data, prefetched with the autotuner on."""
    import tensorflow as tf

    images, labels = tf.constant(train_set["x"]), tf.constant(train_set["y"])
    count = len(train_set["x"])
    return (
        tf.data.Dataset.range(count)
        .shuffle(count, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)))
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )


def run_variant(variant: str, model_name: str, images: int, epochs: int, data_dir: Path) -> dict:
    """Trains one model with one variant in this process; returns its per-epoch times and final val_loss."""
    import keras
    import tensorflow as tf

    from stages import architecture, params, train

    settings = train.TrainParams.from_section(params.select(params.load_params(), "train"))
    seed = train_speed.first_seed(params.load_params())
    if variant == "inter_op1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
    train.configure_determinism(seed)
    train_set, validation_set = train_speed.load_slice(data_dir, images)
    spec = architecture.parse_architecture(model_name, params.select(params.load_params(), model_name))
    model = architecture.build_model(spec)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=int(variant[5:]) if variant.startswith("steps") else 1,
    )
    timer = train_speed.epoch_timer()
    validation_batch_size = 1000 if variant == "validation1000" else settings.batch_size
    if variant in ("arrays", "autotune"):
        common = {
            "validation_data": (validation_set["x"], validation_set["y"]),
            "validation_batch_size": validation_batch_size,
        }
    else:
        common = {"validation_data": train.validation_batches(validation_set, validation_batch_size)}
    common |= {"epochs": epochs, "callbacks": [timer], "verbose": 0}
    if variant == "arrays":
        history = model.fit(train_set["x"], train_set["y"], batch_size=settings.batch_size, shuffle=True, **common)
    else:
        stream = (autotuned_stream if variant == "autotune" else train.training_batches)(
            train_set, settings.batch_size, seed
        )
        history = model.fit(
            stream, shuffle=False, steps_per_epoch=math.ceil(len(train_set["x"]) / settings.batch_size), **common
        )
    return {"epochs": timer.epochs, "val_loss": history.history["val_loss"][-1]}


def summarize(variant: str, model_name: str, images: int, measured: dict) -> dict:
    """Medians over the epochs after the first (tracing, warm-up); the mean epoch counts every stall."""
    epochs = measured["epochs"][1:]
    epoch_seconds = [epoch["wait"] + epoch["train"] for epoch in epochs]
    return {
        "variant": variant,
        "model": model_name,
        "median_epoch_seconds": round(statistics.median(epoch_seconds), 2),
        "mean_epoch_seconds": round(statistics.fmean(epoch_seconds), 2),
        "median_images_per_second": round(images / statistics.median(epoch_seconds)),
        "median_validation_seconds": round(statistics.median(epoch["validation"] for epoch in epochs), 2),
        "waits_over_1s": sum(epoch["wait"] > 1 for epoch in epochs),
        "epochs": [{key: round(value, 2) for key, value in epoch.items()} for epoch in measured["epochs"]],
        "val_loss": measured["val_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--models", nargs="+", default=["conv3_pool"], help="names from `models` in params.yaml")
    parser.add_argument("--repeats", type=int, default=1, help="runs per (variant, model), interleaved")
    train_speed.add_run_options(parser)
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "MODEL"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:  # a child process: the environment is already set for the variant
        print(json.dumps(run_variant(*arguments.one, arguments.images, arguments.epochs, arguments.data_dir)))
        return
    rows = []
    for model_name in arguments.models:
        for _ in range(arguments.repeats):
            for variant in arguments.variants:
                # oneDNN is chosen when TensorFlow loads, so it is set in the child's environment.
                environment = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0" if variant == "onednn_off" else "1"}
                finished = subprocess.run(
                    train_speed.child_command("benchmarks.knobs", [variant, model_name], arguments),
                    check=True,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=environment,
                )
                row = summarize(
                    variant, model_name, arguments.images, json.loads(finished.stdout.strip().splitlines()[-1])
                )
                rows.append(row)
                print(
                    f"  {model_name:14} {variant:15} {row['median_epoch_seconds']:6.2f} s/epoch median, "
                    f"{row['mean_epoch_seconds']:6.2f} mean, waits > 1 s: {row['waits_over_1s']}, "
                    f"validation {row['median_validation_seconds']} s",
                    file=sys.stderr,
                    flush=True,
                )
    train_speed.report(
        {"images_per_epoch": arguments.images, "epochs": arguments.epochs, "runs": rows}, arguments.output
    )


if __name__ == "__main__":
    main()
