"""Stage `compare`: every model over its seeds, side by side, with which differences are real.

Per model: the mean, standard deviation, minimum and maximum over seeds of the train, validation
and test loss and accuracy, a 95% confidence interval of the mean test accuracy (Student's t),
the parameter count, and the study's published figures with whether they fall inside our range.
Per pair of models: the difference in mean test accuracy with its 95% interval and a p-value from
Welch's t-test, Holm-corrected across all pairs, and a verdict in words.

Why Welch and not a paired test: seed k of two architectures shares nothing that makes the runs
alike (the weights differ in shape, so the same seed draws different initial values), so the
runs are independent samples, and Welch's test does not assume the two spreads are equal.

Writes `comparison.json` (everything), `comparison.md` (the study's table with mean ± sd in every
cell, then the pairwise table) and `test_accuracy.json` (one narrow row per model: the mean and,
alongside, the sd), so that `dvc exp show` and `dvc metrics diff` stay readable.
"""

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy import stats

from stages import artifacts, cli, params

METRIC_COLUMNS = ("train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy", "test_accuracy")
CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


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


def run_metrics(train_metrics: dict, evaluate_metrics: dict) -> dict[str, float]:
    """One training run's six numbers, from DVCLive's metrics.json and the evaluate stage's JSON."""
    return {
        "train_loss": train_metrics["train"]["loss"],
        "val_loss": train_metrics["eval"]["loss"],
        "test_loss": evaluate_metrics["test"]["loss"],
        "train_accuracy": train_metrics["train"]["accuracy"],
        "val_accuracy": train_metrics["eval"]["accuracy"],
        "test_accuracy": evaluate_metrics["test"]["accuracy"],
    }


def summarize(values: list[float]) -> dict:
    """Count, mean, sample standard deviation (None for one value), minimum and maximum."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": len(array),
        "mean": float(array.mean()),
        "sd": float(array.std(ddof=1)) if len(array) > 1 else None,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The `confidence` interval of the mean (Student's t); None for fewer than two values."""
    if len(values) < 2:
        return None
    mean, error = float(np.mean(values)), float(stats.sem(values))
    if error == 0:
        return (mean, mean)
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=error)
    return (float(low), float(high))


def welch(first: list[float], second: list[float], confidence: float = CONFIDENCE) -> dict:
    """Welch's t-test of mean(first) - mean(second): the difference, its interval and the two-sided p-value.

    Two samples without any spread make the statistic 0/0; then equal means give p = 1 and an
    interval of zero width, and unequal means p = 0.
    """
    difference = float(np.mean(first) - np.mean(second))
    if np.var(first) == 0 and np.var(second) == 0:
        return {
            "difference": difference,
            "interval": (difference, difference),
            "p_value": 1.0 if difference == 0 else 0.0,
        }
    result = stats.ttest_ind(first, second, equal_var=False)
    interval = result.confidence_interval(confidence)
    return {
        "difference": difference,
        "interval": (float(interval.low), float(interval.high)),
        "p_value": float(result.pvalue),
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of `p_values` for testing them all (scipy has none).

    The k-th smallest of m p-values is multiplied by (m - k + 1), made non-decreasing in that
    order and capped at 1; the results are returned in the input's order.
    """
    count = len(p_values)
    adjusted = [0.0] * count
    running = 0.0
    for rank, index in enumerate(sorted(range(count), key=lambda position: p_values[position])):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def verdict(first: str, second: str, difference: float, adjusted_p: float, seeds: int) -> str:
    """The pair's comparison in words, e.g. 'conv5_pool > conv3_pool (p = 0.003)'."""
    if adjusted_p >= SIGNIFICANCE:
        return f"not distinguishable with {seeds} seeds (p = {adjusted_p:.3g})"
    better, worse = (first, second) if difference > 0 else (second, first)
    return f"{better} > {worse} (p = {adjusted_p:.3g})"


def model_summary(spec: dict, runs: list[dict], parameters: int, study: dict | None) -> dict:
    """One model over its seeds: every metric summarized, the test accuracy interval and the study's figures."""
    summary = {
        "architecture": describe(spec),
        "kernel": kernel_label(spec),
        "parameters": parameters,
        "seeds": len(runs),
        "metrics": {column: summarize([run[column] for run in runs]) for column in METRIC_COLUMNS},
        "test_accuracy_values": [run["test_accuracy"] for run in runs],
    }
    interval = mean_interval(summary["test_accuracy_values"])
    summary["test_accuracy_interval"] = list(interval) if interval else None
    if study:
        accuracy = summary["metrics"]["test_accuracy"]
        summary["study"] = study
        summary["study_test_accuracy_in_range"] = accuracy["min"] <= study["test_accuracy"] <= accuracy["max"]
        summary["study_test_accuracy_in_interval"] = (
            interval[0] <= study["test_accuracy"] <= interval[1] if interval else None
        )
    return summary


def pairwise(models: dict[str, dict]) -> list[dict]:
    """Every pair of models: difference in mean test accuracy, interval, Welch p, Holm-adjusted p, verdict."""
    names = [name for name, summary in models.items() if summary["seeds"] >= 2]
    pairs = []
    for first, second in itertools.combinations(names, 2):
        test = welch(models[first]["test_accuracy_values"], models[second]["test_accuracy_values"])
        pairs.append(
            {
                "first": first,
                "second": second,
                "difference": test["difference"],
                "interval": list(test["interval"]),
                "p_value": test["p_value"],
            }
        )
    for pair, adjusted in zip(pairs, holm([pair["p_value"] for pair in pairs]), strict=True):
        seeds = min(models[pair["first"]]["seeds"], models[pair["second"]]["seeds"])
        pair["p_holm"] = adjusted
        pair["verdict"] = verdict(pair["first"], pair["second"], pair["difference"], adjusted, seeds)
    return pairs


def mean_sd_cell(summary: dict, digits: int = 4) -> str:
    return f"{summary['mean']:.{digits}f}" + ("" if summary["sd"] is None else f" ± {summary['sd']:.{digits}f}")


def markdown_table(models: dict[str, dict], pairs: list[dict]) -> str:
    """The study's table with mean ± sd over seeds in every cell and the study's row under ours, then the pairs."""
    lines = [
        "| model | architecture | kernel | seeds | train loss | val loss | test loss | train acc | val acc | "
        "test acc | 95% CI test acc | params |",
        "|---|---|---|---:|" + "---:|" * 8,
    ]
    for name, summary in models.items():
        interval = summary["test_accuracy_interval"]
        lines.append(
            f"| **{name}** | {summary['architecture']} | {summary['kernel']} | {summary['seeds']} | "
            + " | ".join(mean_sd_cell(summary["metrics"][column]) for column in METRIC_COLUMNS)
            + f" | {'' if interval is None else f'{interval[0]:.4f} to {interval[1]:.4f}'}"
            + f" | {summary['parameters']:,} |"
        )
        if "study" in summary:
            inside = "inside" if summary["study_test_accuracy_in_range"] else "outside"
            lines.append(
                "| study | | | 1 | "
                + " | ".join(f"{summary['study'][column]:.4f}" for column in METRIC_COLUMNS)
                + f" | {inside} our range | {summary['study']['parameters']:,} |"
            )
    text = "\n".join(lines) + "\n"
    if pairs:
        text += (
            "\nPairs of models, test accuracy: difference of the means (first minus second) with its 95% "
            "interval; Welch's t-test, p-values Holm-corrected across all pairs.\n\n"
            "| first | second | difference | 95% CI | p | p (Holm) | verdict |\n|---|---|---:|---|---:|---:|---|\n"
        )
        text += (
            "\n".join(
                f"| {pair['first']} | {pair['second']} | {pair['difference']:+.4f} | "
                f"{pair['interval'][0]:+.4f} to {pair['interval'][1]:+.4f} | {pair['p_value']:.3g} | "
                f"{pair['p_holm']:.3g} | {pair['verdict']} |"
                for pair in pairs
            )
            + "\n"
        )
    return text


def narrow_summary(models: dict[str, dict]) -> dict:
    """test_accuracy.json: the mean per model and, alongside, the sd (left out for a single seed)."""
    summary = {
        "test_accuracy": {name: round(model["metrics"]["test_accuracy"]["mean"], 6) for name, model in models.items()}
    }
    spreads = {
        name: round(model["metrics"]["test_accuracy"]["sd"], 6)
        for name, model in models.items()
        if model["metrics"]["test_accuracy"]["sd"] is not None
    }
    if spreads:
        summary["test_accuracy_sd"] = spreads
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="holds <name>/seed-<seed>/spec.json")
    parser.add_argument("--train-metrics-dir", type=Path, required=True, help="holds <name>/seed-<seed>/metrics.json")
    parser.add_argument("--evaluate-metrics-dir", type=Path, required=True, help="holds <name>/seed-<seed>.json")
    parser.add_argument("--study-results", type=Path, required=True, help="the study's published figures (YAML)")
    parser.add_argument("--output-json", type=Path, required=True)
    parser.add_argument("--output-markdown", type=Path, required=True)
    parser.add_argument("--output-summary", type=Path, required=True, help="test accuracy per model, for exp show")
    arguments = parser.parse_args()
    all_params = params.load_params()
    names = params.select(all_params, "models")
    seeds = params.seed_list(params.select(all_params, "train.seeds"))
    study_results = load_study_results(arguments.study_results)
    models = {}
    for name in names:
        runs = [
            run_metrics(
                artifacts.read_json(arguments.train_metrics_dir / name / f"seed-{seed}" / "metrics.json"),
                artifacts.read_json(arguments.evaluate_metrics_dir / name / f"seed-{seed}.json"),
            )
            for seed in seeds
        ]
        spec = artifacts.read_json(arguments.models_dir / name / f"seed-{seeds[0]}" / "spec.json")
        models[name] = model_summary(spec["architecture"], runs, spec["parameters"], study_results.get(name))
    pairs = pairwise(models)
    artifacts.write_text_atomic(arguments.output_markdown, markdown_table(models, pairs))
    artifacts.write_json(
        arguments.output_json,
        {
            "seeds": seeds,
            "confidence": CONFIDENCE,
            "test": "Welch's t-test, Holm-corrected",
            "models": models,
            "pairs": pairs,
        },
    )
    artifacts.write_json(arguments.output_summary, narrow_summary(models))
    best = max(models, key=lambda name: models[name]["metrics"]["test_accuracy"]["mean"])
    real = [pair["verdict"] for pair in pairs if ">" in pair["verdict"]]
    print(
        f"compare: {len(models)} models x {len(seeds)} seeds -> {arguments.output_markdown}; best mean test "
        f"accuracy: {best} {models[best]['metrics']['test_accuracy']['mean']:.4f}; "
        f"{len(real)} of {len(pairs)} pairs differ significantly"
    )


if __name__ == "__main__":
    cli.run("compare", main)
