"""Stage `compare`: every model over its seeds, side by side, with a verdict for every pair.

Per model: the mean, standard deviation, minimum and maximum over seeds of the train, validation
and test loss and accuracy, a 95% confidence interval of the mean test accuracy (Student's t),
the parameter count, and the study's published figures with whether its one run falls inside
our 95% prediction interval for one run. Per pair of models: the difference in mean test accuracy
with its 95% interval, Welch's p and the equivalence (TOST) p, both Holm-corrected across all
pairs, and the verdict: different, equivalent within compare.equivalence_margin, or undecided
with the seeds that would likely decide it (stages/statistics.py).

Why Welch and not a paired test: seed k of two architectures shares nothing that makes the runs
alike (the weights differ in shape, so the same seed draws different initial values), so the
runs are independent samples, and Welch's test does not assume the two spreads are equal.

Writes `comparison.json` (everything), `comparison.md` (the study's table with mean ± sd in every
cell, then the pairwise table) and `test_accuracy.json` (one narrow row per model: the mean and,
alongside, the sd; and the verdict counts), so that `dvc exp show` and `dvc metrics diff` stay
readable and show an experiment's effect on the comparison in one line.
"""

import argparse
import itertools
from pathlib import Path

from stages import artifacts, cli, params, statistics
from stages.statistics import mean_sd_cell, summarize

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
    if "global_pool" in types:
        words.append("global average pool")
    for layer in spec["layers"]:
        if layer["type"] == "augment":
            moves = [f"rotation {layer['rotation']:g}°" if layer["rotation"] else "",
                     f"shift {layer['shift']:g}" if layer["shift"] else "",
                     f"zoom {layer['zoom']:g}" if layer["zoom"] else ""]  # fmt: skip
            words.insert(0, f"augment ({', '.join(move for move in moves if move)})")
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
    interval = statistics.mean_interval(summary["test_accuracy_values"])
    summary["test_accuracy_interval"] = list(interval) if interval else None
    prediction = statistics.prediction_interval(summary["test_accuracy_values"])
    summary["test_accuracy_prediction_interval"] = list(prediction) if prediction else None
    if study:
        summary["study"] = study
        # One published run against where one of our runs would fall (None: too few seeds or no spread).
        summary["study_test_accuracy_in_prediction_interval"] = (
            prediction[0] <= study["test_accuracy"] <= prediction[1] if prediction else None
        )
    return summary


def pairwise(models: dict[str, dict], margin: float) -> list[dict]:
    """Every pair of models, in the order of `models`: the statistics' verdict and its words."""
    samples = {name: summary["test_accuracy_values"] for name, summary in models.items()}
    pairs = statistics.compare_pairs(samples, list(itertools.combinations(models, 2)), margin)
    for pair in pairs:
        pair["verdict_words"] = statistics.verdict_words(pair, margin)
    return pairs


def _p_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _study_cell(summary: dict) -> str:
    inside = summary["study_test_accuracy_in_prediction_interval"]
    if inside is None:
        return "no prediction interval (fewer than two seeds, or no spread)"
    low, high = summary["test_accuracy_prediction_interval"]
    return f"{'inside' if inside else 'outside'} our 95% prediction interval, {low:.4f} to {high:.4f}"


def markdown_table(models: dict[str, dict], pairs: list[dict], margin: float) -> str:
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
            lines.append(
                "| study | | | 1 | "
                + " | ".join(f"{summary['study'][column]:.4f}" for column in METRIC_COLUMNS)
                + f" | {_study_cell(summary)} | {summary['study']['parameters']:,} |"
            )
    text = "\n".join(lines) + "\n"
    if pairs:
        counts = statistics.count_verdicts(pairs)
        text += (
            "\nPairs of models, test accuracy: difference of the means (first minus second) with its 95% "
            "interval; Welch's t-test (different) and two one-sided tests (equivalent within "
            f"±{margin:.4f}), each Holm-corrected across all pairs. Verdicts: {counts['different']} different, "
            f"{counts['equivalent']} equivalent, {counts['undecided']} undecided.\n\n"
            "| first | second | difference | 95% CI | p (Welch, Holm) | p (equivalence, Holm) | verdict |\n"
            "|---|---|---:|---|---:|---:|---|\n"
        )
        text += (
            "\n".join(
                f"| {pair['first']} | {pair['second']} | {pair['difference']:+.4f} | "
                + ("" if pair["interval"] is None else f"{pair['interval'][0]:+.4f} to {pair['interval'][1]:+.4f}")
                + f" | {_p_cell(pair['p_holm'])} | {_p_cell(pair['p_equivalence_holm'])} | {pair['verdict_words']} |"
                for pair in pairs
            )
            + "\n"
        )
    return text


def narrow_summary(models: dict[str, dict], pairs: list[dict]) -> dict:
    """test_accuracy.json: the mean per model and, alongside, the sd (left out for a single seed); the verdict
    counts over the pairs."""
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
    summary["pairs"] = statistics.count_verdicts(pairs)
    return summary


def equivalence_margin(value) -> float:
    """compare.equivalence_margin: a difference in test accuracy, above 0 and below 1."""
    margin = params.typed("compare.equivalence_margin", value, (int, float), minimum=0, maximum=1, exclusive=True)
    return float(margin)


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
    margin = equivalence_margin(params.select(all_params, "compare.equivalence_margin"))
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
    pairs = pairwise(models, margin)
    artifacts.write_text_atomic(arguments.output_markdown, markdown_table(models, pairs, margin))
    artifacts.write_json(
        arguments.output_json,
        {
            "seeds": seeds,
            "confidence": statistics.CONFIDENCE,
            "significance": statistics.SIGNIFICANCE,
            "equivalence_margin": margin,
            "tests": "Welch's t-test (different), TOST with Welch's variances (equivalent), each Holm-corrected "
            "across the pairs; seeds to decide: 80% power at 0.05 / pairs",
            "models": models,
            "pairs": pairs,
        },
    )
    artifacts.write_json(arguments.output_summary, narrow_summary(models, pairs))
    best = max(models, key=lambda name: models[name]["metrics"]["test_accuracy"]["mean"])
    counts = statistics.count_verdicts(pairs)
    print(
        f"compare: {len(models)} models x {len(seeds)} seeds -> {arguments.output_markdown}; best mean test "
        f"accuracy: {best} {models[best]['metrics']['test_accuracy']['mean']:.4f}; of {len(pairs)} pairs "
        f"{counts['different']} different, {counts['equivalent']} equivalent, {counts['undecided']} undecided"
    )


if __name__ == "__main__":
    cli.run("compare", main)
