"""Probe: how long `fit` waits between the end of training and returning, before and after issue 11.

A diagnostic for the wait found after issue 6 (docs/performance.md, section 4), not a benchmark of
the pipeline: conv3_pool, all 48,000 images, 2 epochs, op determinism on. `autotune` is the
training stream before issue 11 (tf.data's autotuner on, `benchmarks.knobs.autotuned_stream`);
`stage` the training stage's streams now (`stages.train.training_batches`, autotuner off).
A native stack sample of the wait (py-spy dump --native) showed the main thread in
`RootDataset::Iterator::~Iterator`, waiting for the autotuner's thread to notice the iterator is
gone.

Usage (from the project root, with data/prepared present):
    for run in 1 2 3 4 5 6; do for variant in autotune stage; do
        python -m benchmarks.end_wait $variant; done; done
"""

import json
import math
import sys
import time
from pathlib import Path

from benchmarks import knobs, train_speed


def main() -> None:
    import keras

    from stages import architecture, params, train

    variant, epochs = sys.argv[1], 2
    all_params = params.load_params()
    settings = train.TrainParams.from_section(params.select(all_params, "train"))
    seed = train_speed.first_seed(all_params)
    train.configure_determinism(seed)
    train_set, validation_set = train_speed.load_slice(Path("data/prepared"), 48000)
    model = architecture.build_model(
        architecture.parse_architecture("conv3_pool", params.select(all_params, "conv3_pool"))
    )
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    if variant == "autotune":
        stream = knobs.autotuned_stream(train_set, settings.batch_size, seed)
        validation = {
            "validation_data": (validation_set["x"], validation_set["y"]),
            "validation_batch_size": settings.batch_size,
        }
    else:
        stream = train.training_batches(train_set, settings.batch_size, seed)
        validation = {"validation_data": train.validation_batches(validation_set, settings.batch_size)}

    class EndTime(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.ended = time.perf_counter()

    end = EndTime()
    started = time.perf_counter()
    model.fit(
        stream,
        steps_per_epoch=math.ceil(len(train_set["x"]) / settings.batch_size),
        epochs=epochs,
        shuffle=False,
        callbacks=[end],
        verbose=0,
        **validation,
    )
    returned = time.perf_counter()
    print(
        json.dumps(
            {
                "variant": variant,
                "end_wait_seconds": round(returned - end.ended, 2),
                "fit_seconds": round(returned - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
