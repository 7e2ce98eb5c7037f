"""A quick probe of candidate designs for `arch`: plain Keras, one seed per call, mixed bfloat16.

    python -m benchmarks.arch_probe plain_two_convs 1       # a candidate's name and a seed; prints one JSON line
    python -m benchmarks.arch_probe plain_two_convs 1 20    # the same for 20 epochs: is the protocol what binds?
    python -m benchmarks.arch_probe plain_two_convs 1 10 2  # two columns of it, their softmax outputs averaged

Not the pipeline: `model.fit` on the prepared arrays (Keras' own shuffling), batch 200, 10 epochs
(the study's protocol) unless an epoch count is given, Adam 1e-3, Glorot-normal, the classifier in
float32, under Keras' mixed_bfloat16 policy to be quick. It only says which designs are worth the
pipeline's seeds; the committed comparison is what decides (docs/results.md). Each candidate is
written in params.yaml's layer language.
"""

import json
import sys
import time

import numpy as np

from stages import architecture, artifacts

CONV = {"type": "conv", "padding": "same"}
HEAD = [{"type": "flatten"}, {"type": "dropout", "rate": 0.4}, {"type": "dense", "units": 128},
        {"type": "dropout", "rate": 0.4}]  # fmt: skip
CANDIDATES = {
    # Two 3x3 convs before each of two pools, dropout around the dense layer.
    "plain_two_convs": [CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"}, CONV | {"filters": 64},
                        CONV | {"filters": 64}, {"type": "pool"}, *HEAD],
    # One conv, then two, then one, a pool after each group: fewer FLOPs at full resolution.
    "pool_early": [CONV | {"filters": 32}, {"type": "pool"}, CONV | {"filters": 64}, CONV | {"filters": 64},
                   {"type": "pool"}, CONV | {"filters": 128}, {"type": "pool"}, *HEAD],
    # plain_two_convs with batch normalization after every conv.
    "batchnorm": [CONV | {"filters": 32}, {"type": "batchnorm"}, CONV | {"filters": 32}, {"type": "batchnorm"},
                  {"type": "pool"}, CONV | {"filters": 64}, {"type": "batchnorm"}, CONV | {"filters": 64},
                  {"type": "batchnorm"}, {"type": "pool"}, *HEAD],
    # plain_two_convs behind random shifts of up to a tenth of the image.
    "shift": [{"type": "augment", "shift": 0.1}, CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"},
              CONV | {"filters": 64}, CONV | {"filters": 64}, {"type": "pool"}, *HEAD],
    # batchnorm behind the same shifts.
    "batchnorm_shift": [{"type": "augment", "shift": 0.1}, CONV | {"filters": 32}, {"type": "batchnorm"},
                        CONV | {"filters": 32}, {"type": "batchnorm"}, {"type": "pool"}, CONV | {"filters": 64},
                        {"type": "batchnorm"}, CONV | {"filters": 64}, {"type": "batchnorm"}, {"type": "pool"}, *HEAD],
    # plain_two_convs with dropout 0.25 after each pool as well (Keras' classic MNIST remedy).
    "block_dropout": [CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"},
                      {"type": "dropout", "rate": 0.25}, CONV | {"filters": 64}, CONV | {"filters": 64},
                      {"type": "pool"}, {"type": "dropout", "rate": 0.25}, *HEAD],
    # plain_two_convs with a third block (two 128-filter convs on the 7x7 maps, a pool) before the head.
    "three_blocks": [CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"}, CONV | {"filters": 64},
                     CONV | {"filters": 64}, {"type": "pool"}, CONV | {"filters": 128}, CONV | {"filters": 128},
                     {"type": "pool"}, *HEAD],
    # plain_two_convs with 96 filters in the second block: more capacity on the 14x14 maps.
    "wide_second_block": [CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"}, CONV | {"filters": 96},
                          CONV | {"filters": 96}, {"type": "pool"}, *HEAD],
    # plain_two_convs with a wider dense layer and dropout 0.5 around it.
    "wide_head": [CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"}, CONV | {"filters": 64},
                  CONV | {"filters": 64}, {"type": "pool"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.5},
                  {"type": "dense", "units": 256}, {"type": "dropout", "rate": 0.5}],
    # plain_two_convs with 5x5 kernels in the first block.
    "kernel5_first": [CONV | {"filters": 32, "kernel": 5}, CONV | {"filters": 32, "kernel": 5}, {"type": "pool"},
                      CONV | {"filters": 64}, CONV | {"filters": 64}, {"type": "pool"}, *HEAD],
    # plain_two_convs with dropout 0.25 around the dense layer: it was still learning at epoch 10.
    "light_dropout": [CONV | {"filters": 32}, CONV | {"filters": 32}, {"type": "pool"}, CONV | {"filters": 64},
                      CONV | {"filters": 64}, {"type": "pool"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.25},
                      {"type": "dense", "units": 128}, {"type": "dropout", "rate": 0.25}],
}  # fmt: skip


def build(name: str, columns: int):
    """The candidate, or `columns` copies of it side by side on the same input with their softmax
    outputs averaged (a multi-column network, Ciresan et al. 2012, trained jointly as one model):
    does averaging columns lift the mean the way an ensemble of separately trained models would?"""
    import keras

    def column(model_name: str):
        return architecture.build_model(
            architecture.parse_architecture(model_name, {"kernel": 3, "layers": CANDIDATES[name]})
        )

    if columns == 1:
        return column("arch")
    image = keras.Input(shape=artifacts.IMAGE_SHAPE)
    outputs = [column(f"column_{index}")(image) for index in range(1, columns + 1)]
    return keras.Model(image, keras.layers.Average(dtype="float32")(outputs))


def main() -> None:
    import keras

    name, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    columns = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy("mixed_bfloat16")
    splits = {split: np.load(f"data/prepared/{split}.npz") for split in ("train", "validation", "test")}
    model = build(name, columns)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(splits["train"]["x"], splits["train"]["y"], batch_size=200, epochs=epochs, verbose=0,
                        validation_data=(splits["validation"]["x"], splits["validation"]["y"]))  # fmt: skip
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(splits["test"]["x"], splits["test"]["y"], batch_size=1000, verbose=0)
    print(json.dumps({"name": name, "seed": seed, "epochs": epochs, "columns": columns,
                      "parameters": model.count_params(), "fit_seconds": round(seconds),
                      "test_accuracy": round(accuracy, 4),
                      "val_accuracy": round(history.history["val_accuracy"][-1], 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
