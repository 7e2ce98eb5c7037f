"""Training throughput of the study's models, four ways and in each precision, side by side in one run.

For each model in params.yaml and each precision asked for (train.precision's values: float32,
mixed_bfloat16), at batch 200 on the real prepared MNIST:
  pipeline  the pipeline's own code path: `stages.train.train` (determinism on, DVCLive logging);
  checkpoint the same with a checkpoint after every epoch, as the training stage runs (opt-in);
  keras     plain Keras as the study wrote it: the same layers, `model.fit(x, y, batch_size=200,
            validation_split=0.2)`, nothing else;
  torch     the same architecture in native PyTorch on the CPU (channels first, its own loop);
  bound     the compute bound: training FLOPs per image (3x the forward FLOPs of the conv and dense
            layers) divided into this machine's matrix-multiply rate in that precision, measured
            the same way for both: TensorFlow's matmul (oneDNN, all cores) of two 2048 x 2048
            matrices in float32 or bfloat16. numpy's float32 rate is reported beside it.
Images per second count each epoch's training: from the epoch's start (including any per-epoch
set-up of the input) to its last batch; validation is timed apart. The first epoch is a warm-up
(graph tracing, allocator), then the median over the remaining epochs, and their mean, which
counts every stall.

Usage (from the project root, after `dvc pull` or `dvc repro prepare`):
    python -m benchmarks.train_speed                       # all models, all paths: about 20 minutes
    python -m benchmarks.train_speed --models conv3_pool --paths pipeline keras --epochs 4
    python -m benchmarks.train_speed --paths pipeline keras --precisions float32 mixed_bfloat16 --epochs 3
Needs `pip install -r benchmarks/requirements.txt` for the torch path.
"""

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stages import architecture, artifacts, params, precision, train

PATHS = ("pipeline", "checkpoint", "keras", "torch")


def first_seed(all_params: dict) -> int:
    """The seed every benchmark trains with: the first of `train.seeds`, as `train@<model>-<seed>` does."""
    return params.seed_list(params.select(all_params, "train.seeds"))[0]


def matmul_rate(size: int = 2048, repetitions: int = 7) -> float:
    """This machine's float32 matrix-multiply rate in FLOP/s: numpy (BLAS, all cores), median of runs."""
    generator = np.random.default_rng(0)
    left, right = (generator.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    left @ right  # warm-up: threads start, pages fault in
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        left @ right
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds)


def tensorflow_matmul_rate(dtype: str, size: int = 2048, repetitions: int = 7) -> float:
    """This machine's matrix-multiply rate in FLOP/s in `dtype` (float32 or bfloat16), through TensorFlow's
    own matmul: the kernels training runs on. Median of timed products, as `matmul_rate`."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(0)
    left, right = (tf.cast(generator.normal((size, size)), dtype) for _ in range(2))
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(left, right)[0, :1], tf.float32)))
    product()  # warm-up: tracing, threads, pages
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        product().numpy()
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds)


def epoch_timer():
    """A Keras callback recording per epoch: seconds before the first batch, of training batches, of validation.

    From the epoch's start, not its first batch: Keras' own per-epoch set-up (a new input iterator
    with `fit(x, y)`) can block for seconds before the first batch, and a user waits for it too.
    Validation follows the last batch.
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.first_batch = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last_batch = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(
                {
                    "wait": self.first_batch - self.started,
                    "train": self.last_batch - self.first_batch,
                    "validation": time.perf_counter() - self.last_batch,
                }
            )

        def seconds(self) -> dict:
            """Per epoch: training from the epoch's start (wait included), and validation."""
            return {
                "epoch_seconds": [epoch["wait"] + epoch["train"] for epoch in self.epochs],
                "validation_seconds": [epoch["validation"] for epoch in self.epochs],
            }

    return EpochTimer()


def pipeline_epochs(spec, settings, seed, train_set, validation_set) -> dict:
    """Seconds per epoch, training and validation, through the pipeline's own `train()`."""
    timer = epoch_timer()
    with tempfile.TemporaryDirectory() as live_dir:
        train.train(spec, settings, seed, train_set, validation_set, Path(live_dir), extra_callbacks=(timer,))
    return timer.seconds() | {"images": len(train_set["x"])}


def checkpoint_epochs(spec, settings, seed, train_set, validation_set) -> dict:
    """Seconds per epoch through the pipeline's `train()` with a checkpoint saved after every epoch, as the
    training stage runs it; set against `pipeline` (no checkpoints) it gives the checkpoint's cost."""
    from stages import checkpoint

    timer = epoch_timer()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoints = checkpoint.Checkpoints(Path(scratch) / "checkpoints", "benchmark", f"benchmark@{spec.name}")
        train.train(spec, settings, seed, train_set, validation_set, Path(scratch) / "live", checkpoints,
                    extra_callbacks=(timer,))  # fmt: skip
    return timer.seconds() | {"images": len(train_set["x"])}


def keras_epochs(spec, settings, seed, train_set, validation_set) -> dict:
    """Seconds per epoch, training and validation, with plain `model.fit`, as the study's notebook trains."""
    import keras

    x = np.concatenate([train_set["x"], validation_set["x"]])
    y = np.concatenate([train_set["y"], validation_set["y"]])
    with precision.dtype_policy(settings.precision):
        model = architecture.build_model(spec)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    timer = epoch_timer()
    model.fit(
        x,
        y,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        validation_split=len(validation_set["x"]) / len(x),
        callbacks=[timer],
        verbose=0,
    )
    keras.backend.clear_session()
    return timer.seconds() | {"images": len(train_set["x"])}


def _torch_pool(layer, before, after, nn):
    if layer["padding"] == "valid":
        return [nn.MaxPool2d(layer["size"])]
    # Keras' 'same' pooling at stride 1 pads right and bottom; after ReLU, zeros pad like -inf.
    return [nn.ZeroPad2d((0, layer["size"] - 1, 0, layer["size"] - 1)), nn.MaxPool2d(layer["size"], stride=1)]


# Layer type -> PyTorch modules, from the layer and its input and output shapes (channels last).
# The benchmark's own table: the pipeline's lives in stages/architecture.py (LAYER_TYPES).
TORCH_LAYERS = {
    "conv": lambda layer, before, after, nn: [
        nn.Conv2d(before[-1], layer["filters"], layer["kernel"], padding=layer["padding"]),
        nn.ReLU(),
    ],
    "pool": _torch_pool,
    "batchnorm": lambda layer, before, after, nn: [
        nn.BatchNorm2d(before[-1]) if len(before) == 3 else nn.BatchNorm1d(before[0])
    ],
    "dropout": lambda layer, before, after, nn: [nn.Dropout(layer["rate"])],
    "flatten": lambda layer, before, after, nn: [nn.Flatten()],
    "dense": lambda layer, before, after, nn: [nn.Linear(before[0], layer["units"]), nn.ReLU()],
}


def torch_model(spec: architecture.ArchitectureSpec):
    """The spec as a `torch.nn.Sequential` with the Keras builder's semantics (padding, pooling, init)."""
    from torch import nn

    modules = []
    before = artifacts.IMAGE_SHAPE
    for layer, after in zip(spec.layers, architecture.output_shapes(spec), strict=True):
        modules += TORCH_LAYERS[layer.type](layer, before, after, nn)
        before = after
    modules.append(nn.Linear(before[0], artifacts.CLASS_COUNT))  # softmax lives in the loss
    model = nn.Sequential(*modules)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def torch_epochs(spec, settings, seed, train_set, validation_set) -> dict:
    """Seconds per epoch of a native PyTorch training loop (Adam, cross-entropy), shuffled each epoch."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(train_set["x"].transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(train_set["y"].argmax(axis=1))
    model = torch_model(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_function = torch.nn.CrossEntropyLoss()
    model.train()
    epoch_seconds = []
    # PyTorch's own mixed precision: bfloat16 autocast on the CPU, float32 weights.
    bfloat16 = settings.precision == "mixed_bfloat16"
    for _ in range(settings.epochs):
        order = torch.randperm(len(x))
        started = time.perf_counter()
        for start in range(0, len(x), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                loss = loss_function(model(x[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - started)
    # No validation: the comparison is of training.
    return {"epoch_seconds": epoch_seconds, "images": len(x)}


def parameter_counts(spec) -> dict:
    """Keras and torch parameter counts, which must agree for the comparison to be fair."""
    keras_model = architecture.build_model(spec)
    counts = {"keras": keras_model.count_params()}
    try:
        counts["torch"] = sum(parameter.numel() for parameter in torch_model(spec).parameters())
    except ImportError:
        pass
    return counts


RUNNERS = {"pipeline": pipeline_epochs, "checkpoint": checkpoint_epochs, "keras": keras_epochs, "torch": torch_epochs}


def child_command(module: str, one: list[str], arguments) -> list[str]:
    """The command that runs one measurement of a benchmark `module` in a fresh interpreter."""
    return [sys.executable, "-m", module, "--one", *one, "--images", str(arguments.images), "--epochs",
            str(arguments.epochs), "--data-dir", str(arguments.data_dir)]  # fmt: skip


def run_isolated(model: str, path: str, policy: str, arguments) -> dict:
    """Runs one (model, path, precision) in a fresh interpreter and returns its seconds per epoch.

    Isolation matters: TensorFlow's op determinism, once on, stays on for the process, and two
    frameworks in one process would compete for threads.
    """
    command = child_command("benchmarks.train_speed", [model, path, policy], arguments)
    finished = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def load_slice(data_dir: Path, images: int) -> tuple[dict, dict]:
    """The first `images` training images and a validation set a quarter that size (the study's 4:1)."""
    train_set = artifacts.load_npz(data_dir / "train.npz", ("x", "y", "class_names"))
    validation_set = artifacts.load_npz(data_dir / "validation.npz", ("x", "y"))
    train_slice = {key: train_set[key][:images] for key in ("x", "y")} | {"class_names": train_set["class_names"]}
    return train_slice, {key: validation_set[key][: images // 4] for key in ("x", "y")}


def benchmark_model(spec, settings, arguments, rates: dict[str, float]) -> dict:
    """One row: images per second for each precision and path, each precision's bound, and the ratios.

    Args:
        rates: matrix-multiply FLOP/s by precision (train.precision's names), the bound's denominator.
    """
    paths = arguments.paths
    row = {"model": spec.name, "parameters": parameter_counts(spec)}
    if "torch" in row["parameters"] and row["parameters"]["torch"] != row["parameters"]["keras"]:
        raise RuntimeError(
            f"{spec.name}: torch model has {row['parameters']['torch']} parameters, "
            f"Keras {row['parameters']['keras']}; the comparison would not be fair"
        )
    training_flops = 3 * architecture.forward_flops(spec)
    row["training_mflop_per_image"] = round(training_flops / 1e6, 1)
    row["precisions"] = {}
    for policy in rates:
        runs = row["precisions"][policy] = {"bound_images_per_second": round(rates[policy] / training_flops)}
        for path in paths:
            seconds = run_isolated(spec.name, path, policy, arguments)
            # Every image the child trained on, the last partial batch included.
            images = row["images_per_epoch"] = seconds.pop("images")
            # The first epoch traces graphs and warms caches. The median of the others resists a hiccup;
            # the mean counts every stall, which is what a user waits through.
            timed_epochs = seconds["epoch_seconds"][1:]
            runs[path] = {
                "images_per_second": round(images / statistics.median(timed_epochs)),
                "mean_images_per_second": round(images * len(timed_epochs) / sum(timed_epochs)),
            }
            runs[path] |= {key: [round(value, 2) for value in values] for key, values in seconds.items()}
            if "validation_seconds" in seconds:
                runs[path]["median_validation_seconds"] = round(statistics.median(seconds["validation_seconds"][1:]), 2)
            print(
                f"  {spec.name:14} {policy:14} {path:9} {runs[path]['images_per_second']:6,} img/s (mean "
                f"{runs[path]['mean_images_per_second']:,})  epochs {runs[path]['epoch_seconds']}",
                file=sys.stderr,
                flush=True,
            )
        runs["ratios"] = {
            f"pipeline/{path}": round(runs["pipeline"]["images_per_second"] / runs[path]["images_per_second"], 2)
            for path in paths
            if path != "pipeline" and "pipeline" in runs
        }
        best = max(runs[path]["images_per_second"] for path in paths)
        runs["ratios"]["best/bound"] = round(best / runs["bound_images_per_second"], 3)
        if "pipeline" in runs:
            runs["ratios"]["pipeline/bound"] = round(
                runs["pipeline"]["images_per_second"] / runs["bound_images_per_second"], 3
            )
    if "float32" in rates and len(rates) > 1:
        row["speedup_over_float32"] = {
            f"{path} {policy}": round(
                row["precisions"][policy][path]["images_per_second"]
                / row["precisions"]["float32"][path]["images_per_second"],
                2,
            )
            for policy in rates
            if policy != "float32"
            for path in paths
        }
    return row


def report(result: dict, output: Path | None) -> None:
    """Prints the result as JSON on stdout and, if asked, writes it to `output` too."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        output.write_text(text + "\n")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options every training benchmark shares: how much to train, on what, and where results go."""
    parser.add_argument("--images", type=int, default=48000, help="training images per epoch (default: all 48,000)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run, the first one a warm-up")
    parser.add_argument("--data-dir", type=Path, default=Path("data/prepared"))
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="names from `models` in params.yaml (default: all)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=["pipeline", "keras", "torch"])
    parser.add_argument("--precisions", nargs="+", choices=precision.PRECISIONS, default=["float32"],
                        help="train.precision values, each measured with its own bound (default: float32)")  # fmt: skip
    add_run_options(parser)
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "PATH", "PRECISION"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    all_params = params.load_params()
    settings = train.TrainParams.from_section(params.select(all_params, "train"))
    settings = dataclasses.replace(settings, epochs=arguments.epochs)
    if arguments.one:  # the child process of run_isolated
        model, path, policy = arguments.one
        spec = architecture.parse_architecture(model, params.select(all_params, model))
        seed = first_seed(all_params)
        settings = dataclasses.replace(settings, precision=policy)
        print(json.dumps(RUNNERS[path](spec, settings, seed, *load_slice(arguments.data_dir, arguments.images))))
        return
    models = arguments.models or params.select(all_params, "models")
    numpy_rate = matmul_rate()
    rates = {
        policy: tensorflow_matmul_rate("float32" if policy == "float32" else "bfloat16")
        for policy in arguments.precisions
    }
    print(
        f"matmul: numpy float32 {numpy_rate / 1e9:.0f} GFLOP/s; TensorFlow "
        + ", ".join(f"{policy} {rate / 1e9:.0f} GFLOP/s" for policy, rate in rates.items()),
        file=sys.stderr,
    )
    rows = [
        benchmark_model(
            architecture.parse_architecture(name, params.select(all_params, name)), settings, arguments, rates
        )
        for name in models
    ]
    result = {
        "matmul_gflops": round(numpy_rate / 1e9, 1),
        "tensorflow_matmul_gflops": {policy: round(rate / 1e9, 1) for policy, rate in rates.items()},
        "batch_size": settings.batch_size,
        "images_per_epoch": rows[0]["images_per_epoch"],
        "epochs": arguments.epochs,
        "models": rows,
    }
    report(result, arguments.output)


if __name__ == "__main__":
    main()
