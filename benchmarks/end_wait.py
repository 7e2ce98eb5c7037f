"""Probe: how long `fit` waits between the end of training and returning, endless vs used-up input stream.

A diagnostic for the wait left after issue 6 (docs/performance.md, section 4), not a benchmark of
the pipeline: conv3_pool, all 48,000 images, 2 epochs, op determinism on. `endless` is the
training stage's stream (`stages.train.training_batches`); `finite` the same pipeline repeated
exactly `epochs` times, so its iterator is used up when training ends.

Usage (from the project root, with data/prepared present):
    for run in 1 2 3 4 5 6; do for variant in endless finite; do
        python -m benchmarks.end_wait $variant; done; done
"""

import json
import math
import sys
import time
from pathlib import Path

from benchmarks import train_speed


def main() -> None:
    import keras
    import tensorflow as tf

    from stages import architecture, params, train

    variant, epochs = sys.argv[1], 2
    all_params = params.load_params()
    settings = params.TrainParams.from_section(params.select(all_params, "train"))
    train.configure_determinism(settings.seed)
    train_set, validation_set = train_speed.load_slice(Path("data/prepared"), 48000)
    model = architecture.build_model(architecture.parse_architecture(
        "conv3_pool", params.select(all_params, "architectures.conv3_pool")))
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    steps = math.ceil(len(train_set["x"]) / settings.batch_size)
    if variant == "endless":
        stream = train.training_batches(train_set, settings.batch_size, settings.seed)
    else:  # the stage's stream with repeat(epochs) for repeat(): same batches, then the end
        images, labels = tf.constant(train_set["x"]), tf.constant(train_set["y"])
        stream = (tf.data.Dataset.range(len(images)).shuffle(len(images), seed=settings.seed)
                  .batch(settings.batch_size).map(lambda indices: (tf.gather(images, indices),
                                                                   tf.gather(labels, indices)))
                  .repeat(epochs).prefetch(tf.data.AUTOTUNE))

    class EndTime(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.ended = time.perf_counter()

    end = EndTime()
    model.fit(stream, steps_per_epoch=steps, epochs=epochs, shuffle=False, callbacks=[end], verbose=0,
              validation_data=(validation_set["x"], validation_set["y"]), validation_batch_size=settings.batch_size)
    print(json.dumps({"variant": variant, "end_wait_seconds": round(time.perf_counter() - end.ended, 2)}))


if __name__ == "__main__":
    main()
