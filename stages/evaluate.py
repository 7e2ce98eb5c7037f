"""Stage `evaluate@<name>`: test loss and accuracy, a confusion matrix, sample predictions, weight violins.

Writes, for one trained model: its test metrics (JSON), one (actual, predicted) row per test image
for DVC's confusion-matrix plot (CSV), the predictions for the study's sample test images and its
most confidently wrong test images (JSON), and a violin plot of every conv and dense kernel's
weights (PNG).
"""

import argparse
import csv
import dataclasses
import io
from pathlib import Path

import numpy as np

from stages import artifacts, cli, params
from stages.errors import ParamsError

# A violin of 1.5 million weights looks like one of 20,000 evenly spaced ones and takes far longer.
MAX_WEIGHTS_PER_VIOLIN = 20_000


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """The `evaluate` section."""

    batch_size: int
    sample_indices: tuple[int, ...]
    error_count: int

    @classmethod
    def from_section(cls, section) -> "EvaluateParams":
        params.check_keys("evaluate", section, {"batch_size", "sample_indices", "error_count"})
        indices = section["sample_indices"]
        if not isinstance(indices, list):
            raise ParamsError(f"params.yaml: 'evaluate.sample_indices' must be a list, got {indices!r}")
        return cls(
            batch_size=params.typed("evaluate.batch_size", section["batch_size"], int, minimum=1),
            sample_indices=tuple(
                params.typed(f"evaluate.sample_indices[{position}]", index, int, minimum=0)
                for position, index in enumerate(indices)
            ),
            error_count=params.typed("evaluate.error_count", section["error_count"], int, minimum=0),
        )


def loss_and_accuracy(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """Categorical cross-entropy (the training loss) and accuracy, from one pass of predictions.

    Args:
        labels: float32 (N, classes) one-hot; probabilities: float32 (N, classes) softmax outputs.
    """
    import keras

    loss = float(np.mean(keras.losses.categorical_crossentropy(labels, probabilities)))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels.argmax(axis=1)))
    return loss, accuracy


def sample_predictions(
    probabilities: np.ndarray, true_classes: np.ndarray, indices: tuple[int, ...], class_names: list[str]
) -> list[dict]:
    """The prediction for each test image in `indices`.

    Args:
        probabilities: float32 (N, classes) softmax outputs.
        true_classes: int (N,) labels.

    Returns:
        One {"index", "label", "predicted", "probability"} per index, in the given order; label and
        predicted are class names.
    """
    for index in indices:
        if index >= len(true_classes):
            raise ParamsError(
                f"evaluate.sample_indices: index {index} is past the {len(true_classes)} test images; "
                f"expected indices below {len(true_classes)} (is data.limit set?)"
            )
    return [
        {
            "index": index,
            "label": class_names[true_classes[index]],
            "predicted": class_names[probabilities[index].argmax()],
            "probability": round(float(probabilities[index].max()), 6),
        }
        for index in indices
    ]


def confident_errors(
    probabilities: np.ndarray, true_classes: np.ndarray, class_names: list[str], count: int
) -> list[dict]:
    """The `count` misclassified test images with the highest predicted probability, most confident first.

    Returns:
        One {"index", "label", "predicted", "probability"} per image, as `sample_predictions` gives;
        ties are broken by index, so the list is the same on every run.
    """
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true_classes)
    confidence = probabilities[wrong, predicted[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")[:count]]
    return [
        {
            "index": int(index),
            "label": class_names[true_classes[index]],
            "predicted": class_names[predicted[index]],
            "probability": round(float(probabilities[index, predicted[index]]), 6),
        }
        for index in chosen
    ]


def confusion_csv(true_classes: np.ndarray, predicted_classes: np.ndarray, class_names: list[str]) -> str:
    """One `actual,predicted` row of class names per image, the form DVC's confusion template reads."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows(
        [class_names[actual], class_names[predicted]]
        for actual, predicted in zip(true_classes, predicted_classes, strict=True)
    )
    return buffer.getvalue()


def kernel_weights(model) -> dict[str, np.ndarray]:
    """Every conv and dense layer's kernel, flattened, keyed by layer name (biases are left out)."""
    return {layer.name: np.asarray(layer.kernel).ravel() for layer in model.layers if hasattr(layer, "kernel")}


def weight_violin_png(weights: dict[str, np.ndarray], title: str) -> bytes:
    """A violin per layer of its kernel weights, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frames = []
    for layer_name, values in weights.items():
        keep = np.linspace(0, len(values) - 1, min(len(values), MAX_WEIGHTS_PER_VIOLIN)).astype(int)
        frames.append(pd.DataFrame({"layer": layer_name, "weight": values[keep]}))
    figure, axes = plt.subplots(figsize=(min(1.1 * len(weights) + 2, 11), 4.5))
    sns.violinplot(
        data=pd.concat(frames), x="layer", y="weight", hue="layer", legend=False, cut=0, inner="quartile", ax=axes
    )
    axes.set_title(title)
    axes.set_xlabel("layer (kernel weights; biases not shown)")
    figure.tight_layout()
    buffer = io.BytesIO()
    # No Software/date metadata, so the same weights give the same bytes.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the model's name, for titles")
    parser.add_argument("--model-dir", type=Path, required=True, help="holds model.keras")
    parser.add_argument("--test", type=Path, required=True, help="the prepared test.npz")
    parser.add_argument("--metrics", type=Path, required=True, help="test metrics JSON to write")
    parser.add_argument(
        "--predictions", type=Path, required=True, help="sample predictions and confident errors JSON to write"
    )
    parser.add_argument("--confusion", type=Path, required=True, help="confusion CSV to write")
    parser.add_argument("--weights-plot", type=Path, required=True, help="weight violin PNG to write")
    arguments = parser.parse_args()
    settings = EvaluateParams.from_section(params.select(params.load_params(), "evaluate"))
    test_set = artifacts.load_npz(arguments.test, ("x", "y", "class_names"))
    model = artifacts.load_keras_model(arguments.model_dir / "model.keras")
    probabilities = model.predict(test_set["x"], batch_size=settings.batch_size, verbose=0)
    loss, accuracy = loss_and_accuracy(test_set["y"], probabilities)
    true_classes = test_set["y"].argmax(axis=1)
    class_names = test_set["class_names"].tolist()
    samples = sample_predictions(probabilities, true_classes, settings.sample_indices, class_names)
    artifacts.write_text_atomic(
        arguments.confusion, confusion_csv(true_classes, probabilities.argmax(axis=1), class_names)
    )
    artifacts.write_bytes_atomic(
        arguments.weights_plot,
        weight_violin_png(kernel_weights(model), f"{arguments.name}: conv and dense kernel weights"),
    )
    errors = confident_errors(probabilities, true_classes, class_names, settings.error_count)
    artifacts.write_json(arguments.predictions, {"samples": samples, "confident_errors": errors})
    artifacts.write_json(
        arguments.metrics,
        {"test": {"loss": float(loss), "accuracy": float(accuracy)}, "test_images": len(true_classes)},
    )
    print(
        f"evaluate@{arguments.name}: test loss {loss:.4f}, test accuracy {accuracy:.4f}; "
        + ", ".join(
            f"image {sample['index']}: label {sample['label']} -> {sample['predicted']} ({sample['probability']:.3f})"
            for sample in samples
        )
    )


if __name__ == "__main__":
    cli.run("evaluate", main, uses_tensorflow=True)
