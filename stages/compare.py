"""Stage `compare`: every model side by side, against the study's published figures.

Writes `comparison.json` (our numbers, the study's and the differences, per model), a Markdown
table laid out like the study's conclusion, with the study's row and the difference under ours,
and `test_accuracy.json`, one number per model under short, unique names, so that `dvc exp show`
can show the models side by side in narrow columns (`test_accuracy.arch`, ...).
"""

import argparse
from pathlib import Path

from stages import artifacts, cli, params

METRIC_COLUMNS = ("train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy", "test_accuracy")


def load_study_results(path: Path) -> dict[str, dict]:
    """The study's published figures by model name; a model the study did not train has none."""
    import yaml

    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def describe(spec: dict) -> str:
    """The architecture in the study's words, e.g. '3 conv, 3 maxpool' or '3 conv, 1 maxpool, dropout 0.5'.

    Args:
        spec: the architecture as the training stage recorded it (spec.json's "architecture").
    """
    types = [layer["type"] for layer in spec["layers"]]
    words = [f"{types.count('conv')} conv", f"{types.count('pool')} maxpool"]
    rates = sorted({layer["rate"] for layer in spec["layers"] if layer["type"] == "dropout"})
    if rates:
        words.append("dropout " + "/".join(f"{rate:g}" for rate in rates))
    if "batchnorm" in types:
        words.append(f"{types.count('batchnorm')} batchnorm")
    return ", ".join(words)


def kernel_label(spec: dict) -> str:
    """The conv kernels in words, e.g. '3x3' or '2x2, 5x5 in 2 of 7 convs'."""
    kernels = [layer["kernel"] for layer in spec["layers"] if layer["type"] == "conv"]
    label = f"{spec['kernel']}x{spec['kernel']}"
    for other in sorted(set(kernels) - {spec["kernel"]}):
        label += f", {other}x{other} in {kernels.count(other)} of {len(kernels)} convs"
    return label


def model_row(spec: dict, train_metrics: dict, evaluate_metrics: dict, study: dict | None) -> dict:
    """One model's numbers, flat, with the study's figures and the differences where the study has them."""
    row = {
        "architecture": describe(spec), "kernel": kernel_label(spec), "parameters": train_metrics["parameters"],
        "train_loss": train_metrics["train"]["loss"], "val_loss": train_metrics["eval"]["loss"],
        "test_loss": evaluate_metrics["test"]["loss"], "train_accuracy": train_metrics["train"]["accuracy"],
        "val_accuracy": train_metrics["eval"]["accuracy"], "test_accuracy": evaluate_metrics["test"]["accuracy"],
    }
    if study:
        row["study"] = study
        row["difference"] = {column: round(row[column] - study[column], 6) for column in METRIC_COLUMNS}
    return row


def markdown_table(rows: dict[str, dict]) -> str:
    """The comparison as a Markdown table: ours, then the study's row and the difference."""
    header = ("| model | architecture | kernel | train loss | val loss | test loss | train acc | val acc | "
              "test acc | params |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for name, row in rows.items():
        lines.append(f"| **{name}** | {row['architecture']} | {row['kernel']} | "
                     + " | ".join(f"{row[column]:.4f}" for column in METRIC_COLUMNS) + f" | {row['parameters']:,} |")
        if "study" in row:
            lines.append("| study | | | " + " | ".join(f"{row['study'][column]:.4f}" for column in METRIC_COLUMNS)
                         + f" | {row['study']['parameters']:,} |")
            lines.append("| difference | | | " + " | ".join(f"{row['difference'][column]:+.4f}"
                                                           for column in METRIC_COLUMNS) + " | |")
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="holds <name>/spec.json")
    parser.add_argument("--train-metrics-dir", type=Path, required=True, help="holds <name>/metrics.json")
    parser.add_argument("--evaluate-metrics-dir", type=Path, required=True, help="holds <name>.json")
    parser.add_argument("--study-results", type=Path, required=True, help="the study's published figures (YAML)")
    parser.add_argument("--output-json", type=Path, required=True)
    parser.add_argument("--output-markdown", type=Path, required=True)
    parser.add_argument("--output-summary", type=Path, required=True, help="test accuracy per model, for exp show")
    arguments = parser.parse_args()
    models = params.select(params.load_params(), "models")
    study_results = load_study_results(arguments.study_results)
    rows = {name: model_row(artifacts.read_json(arguments.models_dir / name / "spec.json")["architecture"],
                            artifacts.read_json(arguments.train_metrics_dir / name / "metrics.json"),
                            artifacts.read_json(arguments.evaluate_metrics_dir / f"{name}.json"),
                            study_results.get(name))
            for name in models}
    artifacts.write_text_atomic(arguments.output_markdown, markdown_table(rows))
    artifacts.write_json(arguments.output_json, rows)
    artifacts.write_json(arguments.output_summary,
                         {"test_accuracy": {name: row["test_accuracy"] for name, row in rows.items()}})
    best = max(rows, key=lambda name: rows[name]["test_accuracy"])
    print(f"compare: {len(rows)} models -> {arguments.output_markdown}; best test accuracy: {best} "
          f"{rows[best]['test_accuracy']:.4f}")


if __name__ == "__main__":
    cli.run("compare", main)
