"""Classify digits with trained models: photos, scans or drawings of any size, or MNIST test images by index.

    python -m tools.predict --model arch my_digit.png another.jpg
    python -m tools.predict --model all photo.jpg --show-input what-the-model-saw.png
    python -m tools.predict --model conv5_pool --seed 2 --test-index 500 1500 2500

An image is made into an MNIST-style input the way a person finds the digit (tools/digit_image.py:
transparency, uneven light, paper edges and specks handled, then MNIST's 20x20 box centred by mass
in 28x28). A low top probability is flagged, and with `--model all` so is disagreement.
"""

import argparse
from pathlib import Path

import numpy as np

from stages import architecture, artifacts, cli, params
from stages.errors import DataError, ParamsError
from tools import digit_image

TOP_CLASSES = 3
# Below this top probability an answer is flagged as a guess.
LOW_CONFIDENCE = 0.6


def top_classes(probabilities: np.ndarray, class_names: list[str], count: int = TOP_CLASSES) -> list[tuple[str, float]]:
    """The `count` most probable classes, most probable first, as (class name, probability)."""
    order = np.argsort(-probabilities, kind="stable")[:count]
    return [(class_names[index], float(probabilities[index])) for index in order]


def load_trained_model(models_dir: Path, name: str, seed: int | None = None):
    """The model `name` trained with `seed` (default: the lowest seed there), its class names and that seed.

    Raises:
        DataError: no such trained model; names the command that trains or fetches it.
    """
    if not architecture.NAME_PATTERN.match(name):
        raise ParamsError(f"--model {name!r}: not a model name; expected one of `models` in params.yaml, e.g. arch")
    if seed is None:
        trained = sorted(
            int(path.name.removeprefix("seed-"))
            for path in (models_dir / name).glob("seed-*")
            if path.name.removeprefix("seed-").isdigit() and (path / "model.keras").exists()
        )
        seed = trained[0] if trained else 1
    model_dir = models_dir / name / f"seed-{seed}"
    if not (model_dir / "model.keras").exists():
        raise DataError(
            f"{model_dir / 'model.keras'}: no trained model '{name}' for seed {seed}; run "
            f"`dvc repro train@{name}-{seed}` to train it, or `dvc pull` to fetch it from the remote"
        )
    spec = artifacts.read_json(model_dir / "spec.json")
    return artifacts.load_keras_model(model_dir / "model.keras"), spec["class_names"], seed


def trained_model_names(models_dir: Path, requested: str) -> list[str]:
    """`--model`: one name, or `all` for every model in params.yaml's `models` (those trained, in that order)."""
    if requested != "all":
        return [requested]
    names = [name for name in params.select(params.load_params(), "models") if (models_dir / name).is_dir()]
    if not names:
        raise DataError(f"{models_dir}: no trained model; run `dvc repro` to train them, or `dvc pull` to fetch them")
    return names


def describe(ranked: list[tuple[str, float]]) -> str:
    text = ", ".join(f"{name} {probability:.3f}" for name, probability in ranked)
    return text + (" (low confidence: a guess)" if ranked[0][1] < LOW_CONFIDENCE else "")


def agreement(tops: dict[str, str]) -> str:
    """What several models' top classes (model -> class) say together: agreement, or who says what."""
    if len(set(tops.values())) > 1:
        return "models disagree: " + ", ".join(f"{name} says {top}" for name, top in tops.items())
    return f"all {len(tops)} models agree: {next(iter(tops.values()))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="arch", help="a model name from params.yaml, or all (default: arch)")
    parser.add_argument("--seed", type=int, help="which training seed's model (default: the lowest one trained)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("images", nargs="*", type=Path, help="image files (PNG, JPEG, ...) of digits")
    parser.add_argument("--test-index", type=int, nargs="+", default=[], help="MNIST test image indices")
    parser.add_argument("--test-data", type=Path, default=Path("data/prepared/test.npz"))
    parser.add_argument("--show-input", type=Path, help="write the image beside the 28x28 input the model saw (PNG)")
    arguments = parser.parse_args()
    if not arguments.images and not arguments.test_index:
        parser.error("give image files, --test-index N, or both")
    if arguments.show_input and len(arguments.images) != 1:
        raise ParamsError(f"--show-input: got {len(arguments.images)} image files; expected exactly one")
    inputs, labels, truths = [], [], []
    for path in arguments.images:
        inputs.append(digit_image.load(path))
        labels.append(str(path))
        truths.append(None)
    if arguments.show_input:
        picture = digit_image.side_by_side_png(digit_image.open_image(arguments.images[0]), inputs[0])
        artifacts.write_bytes_atomic(arguments.show_input, picture)
    if arguments.test_index:
        test_set = artifacts.load_npz(arguments.test_data, ("x", "y"))
        for index in arguments.test_index:
            if not 0 <= index < len(test_set["x"]):
                raise ParamsError(
                    f"--test-index {index}: expected 0 to {len(test_set['x']) - 1} "
                    f"({arguments.test_data} holds {len(test_set['x'])} images)"
                )
            inputs.append(test_set["x"][index, :, :, 0])
            labels.append(f"test image {index}")
            truths.append(int(test_set["y"][index].argmax()))
    names = trained_model_names(arguments.models_dir, arguments.model)
    answers = {}
    for name in names:
        model, class_names, _ = load_trained_model(arguments.models_dir, name, arguments.seed)
        probabilities = model.predict(np.stack(inputs)[..., np.newaxis], verbose=0)
        answers[name] = [top_classes(row, class_names) for row in probabilities]
    for position, (label, truth) in enumerate(zip(labels, truths, strict=True)):
        known = "" if truth is None else f" (true: {class_names[truth]})"
        if len(names) == 1:
            print(f"{label}{known}: {describe(answers[names[0]][position])}")
            continue
        print(f"{label}{known}:")
        for name in names:
            print(f"  {name}: {describe(answers[name][position])}")
        print("  " + agreement({name: answers[name][position][0][0] for name in names}))


if __name__ == "__main__":
    cli.run("predict", main, uses_tensorflow=True)
