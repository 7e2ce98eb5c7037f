"""Stage `prepare`: normalize images, one-hot encode labels, hold out the validation split.

The validation split is taken the way Keras' `validation_split` takes it (the last fraction of
the training arrays, before any shuffling), so results compare with the study's.
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from stages import artifacts, cli, params
from stages.errors import ParamsError


@dataclasses.dataclass(frozen=True)
class PrepareParams:
    """The keys of the `data` section this stage reads (declared for it in dvc.yaml)."""

    validation_fraction: float
    limit: int | None

    @classmethod
    def from_section(cls, section) -> "PrepareParams":
        # `download` reads the rest of the `data` section and checks it.
        params.check_keys("data", section, {"validation_fraction", "limit"}, other_keys_allowed=True)
        fraction = params.typed(
            "data.validation_fraction",
            section["validation_fraction"],
            (int, float),
            minimum=0,
            maximum=1,
            exclusive=True,
        )
        limit = section["limit"]
        if limit is not None:
            limit = params.typed("data.limit", limit, int, minimum=2)
        return cls(validation_fraction=float(fraction), limit=limit)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) in 0..255 -> float32 (N, 28, 28, 1) in [0, 1], channels last."""
    return (images.astype(np.float32) / np.float32(255.0))[..., np.newaxis]


def one_hot(labels: np.ndarray, class_count: int) -> np.ndarray:
    """uint8 (N,) class indices -> float32 (N, class_count) one-hot rows."""
    return np.eye(class_count, dtype=np.float32)[labels]


def split_index(count: int, fraction: float) -> int:
    """How many of `count` images stay for training when the last `fraction` is held out."""
    # Keras computes the split index as int(N * (1 - fraction)).
    return int(count * (1.0 - fraction))


def split_validation(images: np.ndarray, labels: np.ndarray, fraction: float):
    """Splits off the last `fraction` of the arrays, as Keras' `validation_split` does.

    Returns:
        (train_images, train_labels, validation_images, validation_labels).
    """
    split_at = split_index(len(images), fraction)
    if split_at == 0 or split_at == len(images):
        raise ParamsError(f"data.validation_fraction {fraction} leaves an empty split of {len(images)} images")
    return images[:split_at], labels[:split_at], images[split_at:], labels[split_at:]


def prepare(raw: dict[str, np.ndarray], settings: PrepareParams) -> dict[str, dict[str, np.ndarray]]:
    """Turns the raw uint8 arrays into the train, validation and test sets.

    Returns:
        {"train" | "validation" | "test": {"x": float32 (N, 28, 28, 1), "y": float32 (N, classes) one-hot,
        "class_names": unicode (classes,)}}.
    """
    x_train, y_train, x_test, y_test = (raw[name] for name in ("x_train", "y_train", "x_test", "y_test"))
    class_names = raw["class_names"]
    if settings.limit is not None:
        if settings.limit > len(x_train):
            raise ParamsError(
                f"data.limit {settings.limit} exceeds the {len(x_train)} training images; use null for all of them"
            )
        # The same limit applies to the test set, so a smoke run stays small end to end.
        x_train, y_train = x_train[: settings.limit], y_train[: settings.limit]
        x_test, y_test = x_test[: settings.limit], y_test[: settings.limit]
    train_x, train_y, validation_x, validation_y = split_validation(x_train, y_train, settings.validation_fraction)
    return {
        split: {"x": normalize_images(images), "y": one_hot(labels, len(class_names)), "class_names": class_names}
        for split, images, labels in (
            ("train", train_x, train_y),
            ("validation", validation_x, validation_y),
            ("test", x_test, y_test),
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="the raw .npz from `download`")
    parser.add_argument("--output-dir", type=Path, required=True, help="where train/validation/test.npz go")
    arguments = parser.parse_args()
    all_params = params.load_params()
    settings = PrepareParams.from_section(params.select(all_params, "data"))
    # Not used here: checked here because this is the last stage before any training (params.seed_list).
    seeds = params.seed_list(params.select(all_params, "train.seeds"))
    raw = artifacts.load_npz(arguments.input, ("x_train", "y_train", "x_test", "y_test", "class_names"))
    splits = prepare(raw, settings)
    for split, arrays in splits.items():
        artifacts.save_npz(arguments.output_dir / f"{split}.npz", arrays)
    print(
        "prepare: "
        + ", ".join(f"{split} {len(arrays['x'])}" for split, arrays in splits.items())
        + f" images -> {arguments.output_dir}; training seeds {seeds} checked"
    )


if __name__ == "__main__":
    cli.run("prepare", main)
