"""Stage `compare`: every model side by side, against the study's published figures.

Writes `comparison.json` (our numbers, the study's and the differences, per model), a Markdown
table laid out like the study's conclusion, with the study's row and the difference under ours,
and `test_accuracy.json`, one number per model under short, unique names, so that `dvc exp show`
can show the models side by side in narrow columns (`test_accuracy.arch`, ...).
"""

import argparse
from pathlib import Path

from stages import architecture, artifacts, cli, params

METRIC_COLUMNS = ("train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy", "test_accuracy")
# The study's conclusion table, for the models that reproduce it.
STUDY_RESULTS = {
    "conv3_pool": {"train_loss": 0.0298, "val_loss": 0.0490, "test_loss": 0.0468, "train_accuracy": 0.9902,
                   "val_accuracy": 0.9858, "test_accuracy": 0.9863, "parameters": 87914},
    "conv5_pool": {"train_loss": 0.0135, "val_loss": 0.0430, "test_loss": 0.0278, "train_accuracy": 0.9958,
                   "val_accuracy": 0.9901, "test_accuracy": 0.9921, "parameters": 650962},
    "conv7_pool": {"train_loss": 0.0270, "val_loss": 0.0394, "test_loss": 0.0327, "train_accuracy": 0.9908,
                   "val_accuracy": 0.9882, "test_accuracy": 0.9893, "parameters": 778574},
    "conv3_dropout": {"train_loss": 0.0321, "val_loss": 0.0386, "test_loss": 0.0323, "train_accuracy": 0.9899,
                      "val_accuracy": 0.9897, "test_accuracy": 0.9901, "parameters": 1562474},
}


def describe(spec: architecture.ArchitectureSpec) -> str:
    """The architecture in the study's words, e.g. '3 conv, 3 maxpool' or '3 conv, 1 maxpool, dropout 0.5'."""
    types = [layer.type for layer in spec.layers]
    words = [f"{types.count('conv')} conv", f"{types.count('pool')} maxpool"]
    rates = sorted({layer.rate for layer in spec.layers if layer.type == "dropout"})
    if rates:
        words.append("dropout " + "/".join(f"{rate:g}" for rate in rates))
    return ", ".join(words)


def model_row(spec: architecture.ArchitectureSpec, train_metrics: dict, evaluate_metrics: dict) -> dict:
    """One model's numbers, flat, with the study's figures and the differences where the study has them."""
    row = {
        "architecture": describe(spec), "kernel": spec.kernel_label(), "parameters": train_metrics["parameters"],
        "train_loss": train_metrics["train"]["loss"], "val_loss": train_metrics["eval"]["loss"],
        "test_loss": evaluate_metrics["test"]["loss"], "train_accuracy": train_metrics["train"]["accuracy"],
        "val_accuracy": train_metrics["eval"]["accuracy"], "test_accuracy": evaluate_metrics["test"]["accuracy"],
    }
    study = STUDY_RESULTS.get(spec.name)
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
    parser.add_argument("--models", nargs="+", required=True, help="name=params-key, e.g. arch=arch")
    parser.add_argument("--train-metrics-dir", type=Path, required=True, help="holds <name>/metrics.json")
    parser.add_argument("--evaluate-metrics-dir", type=Path, required=True, help="holds <name>.json")
    parser.add_argument("--output-json", type=Path, required=True)
    parser.add_argument("--output-markdown", type=Path, required=True)
    parser.add_argument("--output-summary", type=Path, required=True, help="test accuracy per model, for exp show")
    arguments = parser.parse_args()
    all_params = params.load_params()
    rows = {}
    for pair in arguments.models:
        name, _, key = pair.partition("=")
        spec = architecture.parse_architecture(name, params.select(all_params, key))
        rows[name] = model_row(spec, artifacts.read_json(arguments.train_metrics_dir / name / "metrics.json"),
                               artifacts.read_json(arguments.evaluate_metrics_dir / f"{name}.json"))
    artifacts.write_text_atomic(arguments.output_markdown, markdown_table(rows))
    artifacts.write_json(arguments.output_json, rows)
    artifacts.write_json(arguments.output_summary,
                         {"test_accuracy": {name: row["test_accuracy"] for name, row in rows.items()}})
    best = max(rows, key=lambda name: rows[name]["test_accuracy"])
    print(f"compare: {len(rows)} models -> {arguments.output_markdown}; best test accuracy: {best} "
          f"{rows[best]['test_accuracy']:.4f}")


if __name__ == "__main__":
    cli.run("compare", main)
