"""Classify digits with a trained model: image files of any size, or MNIST test images by index.

    python -m tools.predict --model arch my_digit.png another.jpg
    python -m tools.predict --model conv5_pool --seed 2 --test-index 500 1500 2500

An image is converted the way MNIST's digits were made: grayscale, inverted if it is dark on
light, cropped to the digit's bounding box and fitted into 20x20 keeping its aspect ratio, then
placed in 28x28 with its centre of mass at the centre, and scaled to [0, 1].
"""

import argparse
from pathlib import Path

import numpy as np

from stages import architecture, artifacts, cli
from stages.errors import DataError, ParamsError

DIGIT_BOX = 20
CANVAS = artifacts.IMAGE_SHAPE[0]
TOP_CLASSES = 3


def mnist_style(image) -> np.ndarray:
    """Turns a PIL image into an MNIST-style digit.

    Returns:
        float32 (28, 28) in [0, 1]: a light digit on a black background, centred by mass.

    Raises:
        DataError: the image is blank (no digit stands out from the background).
    """
    from PIL import Image

    pixels = np.asarray(image.convert("L"), dtype=np.float32)
    # MNIST digits are light on dark; most photos and drawings are dark ink on light paper.
    background = float(np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])))
    if background > 127:
        pixels, background = 255.0 - pixels, 255.0 - background
    pixels = np.clip(pixels - background, 0, None)
    if pixels.max() <= 0:
        raise DataError("blank image: no digit stands out from the background")
    rows = np.flatnonzero(pixels.max(axis=1) > 0.1 * pixels.max())
    columns = np.flatnonzero(pixels.max(axis=0) > 0.1 * pixels.max())
    digit = pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    scale = DIGIT_BOX / max(digit.shape)
    height, width = max(1, round(digit.shape[0] * scale)), max(1, round(digit.shape[1] * scale))
    resized = np.asarray(Image.fromarray(digit).resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)
    resized = np.clip(resized, 0, None)
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    total = resized.sum()
    centre_row = (resized.sum(axis=1) * np.arange(height)).sum() / total
    centre_column = (resized.sum(axis=0) * np.arange(width)).sum() / total
    top = int(np.clip(round(CANVAS / 2 - 0.5 - centre_row), 0, CANVAS - height))
    left = int(np.clip(round(CANVAS / 2 - 0.5 - centre_column), 0, CANVAS - width))
    canvas[top : top + height, left : left + width] = resized
    return canvas / canvas.max()


def load_image(path: Path) -> np.ndarray:
    """Reads an image file and converts it with `mnist_style`; a clear error if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return mnist_style(image)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file Pillow can read (PNG, JPEG, BMP, GIF, ...)") from None
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def top_classes(probabilities: np.ndarray, class_names: list[str], count: int = TOP_CLASSES) -> list[tuple[str, float]]:
    """The `count` most probable classes, most probable first, as (class name, probability)."""
    order = np.argsort(-probabilities, kind="stable")[:count]
    return [(class_names[index], float(probabilities[index])) for index in order]


def load_trained_model(models_dir: Path, name: str, seed: int | None = None):
    """The model `name` trained with `seed` (default: the lowest seed there), and its class names.

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
    return artifacts.load_keras_model(model_dir / "model.keras"), spec["class_names"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="arch", help="a model name from dvc.yaml (default: arch)")
    parser.add_argument("--seed", type=int, help="which training seed's model (default: the lowest one trained)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("images", nargs="*", type=Path, help="image files (PNG, JPEG, ...) of digits")
    parser.add_argument("--test-index", type=int, nargs="+", default=[], help="MNIST test image indices")
    parser.add_argument("--test-data", type=Path, default=Path("data/prepared/test.npz"))
    arguments = parser.parse_args()
    if not arguments.images and not arguments.test_index:
        parser.error("give image files, --test-index N, or both")
    inputs, labels, truths = [], [], []
    for path in arguments.images:
        inputs.append(load_image(path))
        labels.append(str(path))
        truths.append(None)
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
    model, class_names = load_trained_model(arguments.models_dir, arguments.model, arguments.seed)
    probabilities = model.predict(np.stack(inputs)[..., np.newaxis], verbose=0)
    for label, truth, row in zip(labels, truths, probabilities, strict=True):
        ranked = ", ".join(f"{name} {probability:.3f}" for name, probability in top_classes(row, class_names))
        known = "" if truth is None else f" (true: {class_names[truth]})"
        print(f"{label}{known}: {ranked}")


if __name__ == "__main__":
    cli.run("predict", main, uses_tensorflow=True)
