"""Stage `report`: the charts that compare the models, as data for dvc.yaml's plots and as pictures.

Writes into one directory:
- validation_accuracy.csv, validation_loss.csv: per model and epoch, the mean over seeds with the
  minimum and maximum (a line with a band; DVC template .dvc/plots/band.json);
- accuracy_vs_parameters.csv: per model, mean test accuracy with its range over seeds against the
  parameter count, and the study's published value (.dvc/plots/accuracy_parameters.json);
- confusion_errors.csv: per model, every off-diagonal (actual, predicted) count summed over seeds,
  so that the errors, not the diagonal, set the colour scale (.dvc/plots/confusion_errors.json);
- sample_predictions.png: the study's sample test images with every model's answer per seed;
- confident_errors.png: per model, the test images it got most confidently wrong, over all seeds.
"""

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from stages import artifacts, cli, params
from stages.errors import DataError

CURVE_COLUMNS = ("model", "epoch", "mean", "low", "high", "seeds")
ERRORS_PER_MODEL = 8


def read_tsv(path: Path, value_column: str) -> dict[int, float]:
    """DVCLive's per-epoch log (`step<TAB>value`) as {epoch (from 1): value}.

    Raises:
        DataError: the file is missing or lacks the columns.
    """
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
        return {int(row["step"]) + 1: float(row[value_column]) for row in rows}
    except FileNotFoundError as error:
        raise DataError(f"{path}: not found; expected DVCLive's log from `dvc repro train@...`") from error
    except (KeyError, ValueError) as error:
        raise DataError(f"{path}: expected tab-separated columns step and {value_column}, got {error}") from error


def curve_rows(curves: dict[str, list[dict[int, float]]]) -> list[dict]:
    """Per model and epoch, the mean, minimum and maximum over the seeds' curves (epochs all seeds reached)."""
    rows = []
    for model, per_seed in curves.items():
        epochs = sorted(set.intersection(*(set(curve) for curve in per_seed)))
        for epoch in epochs:
            values = [curve[epoch] for curve in per_seed]
            rows.append(
                {
                    "model": model,
                    "epoch": epoch,
                    "mean": float(np.mean(values)),
                    "low": min(values),
                    "high": max(values),
                    "seeds": len(values),
                }  # fmt: skip
            )
    return rows


def accuracy_parameter_rows(comparison: dict) -> list[dict]:
    """Per model, our mean test accuracy with its range over seeds, and the study's value where it has one."""
    rows = []
    for model, summary in comparison["models"].items():
        accuracy = summary["metrics"]["test_accuracy"]
        rows.append(
            {
                "model": model,
                "series": f"this study, mean of {summary['seeds']} seeds (bar: min to max)",
                "parameters": summary["parameters"],
                "test_accuracy": accuracy["mean"],
                "low": accuracy["min"],
                "high": accuracy["max"],
            }  # fmt: skip
        )
        study = summary.get("study")
        if study:
            rows.append(
                {
                    "model": model,
                    "series": "published study (one run)",
                    "parameters": study["parameters"],
                    "test_accuracy": study["test_accuracy"],
                    "low": study["test_accuracy"],
                    "high": study["test_accuracy"],
                }  # fmt: skip
            )
    return rows


def confusion_error_rows(confusions: dict[str, list[str]], class_names: list[str]) -> list[dict]:
    """Per model, every off-diagonal (actual, predicted) cell with its count summed over the seeds' CSVs.

    Args:
        confusions: model -> the text of each seed's `actual,predicted` CSV (evaluate's confusion plot).
    """
    rows = []
    for model, texts in confusions.items():
        counts = {(actual, predicted): 0 for actual in class_names for predicted in class_names if actual != predicted}
        for text in texts:
            for row in csv.DictReader(io.StringIO(text)):
                if row["actual"] != row["predicted"]:
                    counts[(row["actual"], row["predicted"])] += 1
        rows.extend(
            {"model": model, "actual": actual, "predicted": predicted, "count": count}
            for (actual, predicted), count in counts.items()
        )
    return rows


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # No Software/date metadata, so the same inputs give the same bytes.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def sample_predictions_png(images: np.ndarray, samples: dict[str, list[list[dict]]]) -> bytes:
    """One row per sample test image: the image, then each model's label and probability per seed.

    Args:
        images: float (N, 28, 28[, 1]) test images.
        samples: model -> per seed, evaluate's sample predictions (the same indices in the same order).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(samples)
    first = samples[models[0]][0]
    figure, axes = plt.subplots(
        len(first), len(models) + 1, figsize=(1.9 * (len(models) + 1), 1.9 * len(first)), squeeze=False
    )
    for row, sample in enumerate(first):
        axes[row][0].imshow(images[sample["index"]].squeeze(), cmap="gray_r")
        axes[row][0].set_title(f"test image {sample['index']}\nlabel {sample['label']}", fontsize=9)
        for column, model in enumerate(models, start=1):
            answers = [seed_samples[row] for seed_samples in samples[model]]
            lines = [f"{answer['predicted']}  {answer['probability']:.3f}" for answer in answers]
            wrong = any(answer["predicted"] != answer["label"] for answer in answers)
            axes[row][column].text(
                0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=11, family="monospace",
                color="#c0392b" if wrong else "black", transform=axes[row][column].transAxes,
            )  # fmt: skip
            if row == 0:
                axes[row][column].set_title(f"{model}\n(one line per seed)", fontsize=9)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("The study's sample test images: each model's predicted label and probability (red: a miss)")
    figure.tight_layout()
    return _png(figure)


def confident_errors_png(images: np.ndarray, errors: dict[str, list[dict]], count: int = ERRORS_PER_MODEL) -> bytes:
    """One row per model: its `count` most confidently wrong test images over all seeds.

    Args:
        errors: model -> evaluate's confident errors of every seed, each with a "seed" added.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(errors), count, figsize=(1.45 * count, 1.75 * len(errors)), squeeze=False)
    for row, (model, model_errors) in enumerate(errors.items()):
        # One picture per image: the seeds that got it wrong are listed under its highest probability.
        by_image: dict[int, dict] = {}
        for error in sorted(model_errors, key=lambda error: (-error["probability"], error["seed"])):
            kept = by_image.setdefault(error["index"], {**error, "seeds": []})
            kept["seeds"].append(error["seed"])
        chosen = sorted(by_image.values(), key=lambda error: (-error["probability"], error["index"]))[:count]
        for column in range(count):
            axis = axes[row][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(model, fontsize=9)
            if column >= len(chosen):
                axis.set_frame_on(False)
                continue
            error = chosen[column]
            axis.imshow(images[error["index"]].squeeze(), cmap="gray_r")
            axis.set_title(
                f"{error['label']} -> {error['predicted']} {error['probability']:.2f}\n"
                f"#{error['index']} seed{'s' * (len(error['seeds']) > 1)} {','.join(map(str, sorted(error['seeds'])))}",
                fontsize=7,
            )
    figure.suptitle("Most confidently wrong test images per model (true -> predicted, probability)")
    figure.tight_layout()
    return _png(figure)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise DataError(f"{path}: not found; expected evaluate's output from `dvc repro evaluate@...`") from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-metrics-dir", type=Path, required=True, help="DVCLive's <model>/seed-<seed>/plots")
    parser.add_argument("--comparison", type=Path, required=True, help="compare's comparison.json")
    parser.add_argument("--predictions-dir", type=Path, required=True, help="evaluate's <model>/seed-<seed>.json")
    parser.add_argument("--confusion-dir", type=Path, required=True, help="evaluate's <model>/seed-<seed>.csv")
    parser.add_argument("--test", type=Path, required=True, help="the prepared test.npz (images for the grids)")
    parser.add_argument("--output-dir", type=Path, required=True)
    arguments = parser.parse_args()
    all_params = params.load_params()
    models = params.select(all_params, "models")
    seeds = params.seed_list(params.select(all_params, "train.seeds"))
    runs = {model: [Path(model) / f"seed-{seed}" for seed in seeds] for model in models}
    test_set = artifacts.load_npz(arguments.test, ("x", "class_names"))
    predictions = {
        model: [artifacts.read_json(arguments.predictions_dir / f"{run}.json") for run in model_runs]
        for model, model_runs in runs.items()
    }
    samples = {model: [run["samples"] for run in model_predictions] for model, model_predictions in predictions.items()}
    if not samples[models[0]][0]:
        raise DataError(f"{arguments.predictions_dir}: no sample predictions; expected evaluate.sample_indices set")
    errors = {
        model: [
            {**error, "seed": seed}
            for seed, run in zip(seeds, model_predictions, strict=True)
            for error in run["confident_errors"]
        ]
        for model, model_predictions in predictions.items()
    }
    confusions = {model: [read_text(arguments.confusion_dir / f"{run}.csv") for run in model_runs]
                  for model, model_runs in runs.items()}  # fmt: skip

    # Everything is computed before anything is written, so bad input leaves no partial report.
    outputs: dict[str, str | bytes] = {}
    for metric in ("accuracy", "loss"):
        curves = {
            model: [
                read_tsv(arguments.train_metrics_dir / run / "plots/metrics/eval" / f"{metric}.tsv", metric)
                for run in model_runs
            ]  # fmt: skip
            for model, model_runs in runs.items()
        }
        outputs[f"validation_{metric}.csv"] = to_csv(curve_rows(curves))
    outputs["accuracy_vs_parameters.csv"] = to_csv(accuracy_parameter_rows(artifacts.read_json(arguments.comparison)))
    class_names = test_set["class_names"].tolist()
    outputs["confusion_errors.csv"] = to_csv(confusion_error_rows(confusions, class_names))
    outputs["sample_predictions.png"] = sample_predictions_png(test_set["x"], samples)
    outputs["confident_errors.png"] = confident_errors_png(test_set["x"], errors)
    for name, content in outputs.items():
        if isinstance(content, bytes):
            artifacts.write_bytes_atomic(arguments.output_dir / name, content)
        else:
            artifacts.write_text_atomic(arguments.output_dir / name, content)
    print(f"report: {len(models)} models x {len(seeds)} seeds -> {arguments.output_dir}/: {', '.join(outputs)}")


if __name__ == "__main__":
    cli.run("report", main)
